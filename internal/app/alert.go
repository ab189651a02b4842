package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/alert"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/localize"
)

// AlertOptions configure the alert role.
type AlertOptions struct {
	// Rules is a rules file; "" uses the built-in rules.
	Rules string
	// Alertmanagers and Webhooks are receiver URLs (each may be a comma
	// list).
	Alertmanagers, Webhooks []string
	// Plan overrides alert.DefaultPlan's step and resend when set (tests).
	Plan alert.Plan
}

// alertDrainGrace is how long a stopping alert role keeps delivering what
// it has queued.
const alertDrainGrace = 10 * time.Second

// startAlert runs the alert evaluator and its delivery workers on st until
// the returned stop is called.
func startAlert(ctx context.Context, o AlertOptions, st store.Store, reg prometheus.Registerer, logger log.Logger) (stop func(), err error) {
	logger = log.With(logger, "component", "alert")
	rules := alert.DefaultRules()
	src := alert.DefaultRulesFile
	if o.Rules != "" {
		if rules, err = alert.LoadRules(o.Rules); err != nil {
			return nil, err
		}
		src = o.Rules
	}
	plan := alert.DefaultPlan
	if o.Plan.Step > 0 {
		plan.Step = o.Plan.Step
	}
	if o.Plan.Resend > 0 {
		plan.Resend = o.Plan.Resend
	}
	// A firing alert's scope is the localizer's verdict from the server
	// logs (issue 18), decided once as it fires.
	plan.Explain = alert.Localizer(st, localize.DefaultScopePlan)
	rs, err := alert.Receivers(o.Alertmanagers, o.Webhooks, alert.DefaultDispatchPlan.Timeout)
	if err != nil {
		return nil, err
	}
	dp := alert.DefaultDispatchPlan
	dp.ValidFor = 4 * plan.Resend
	disp := alert.NewDispatcher(dp, rs, st, logger)
	ev := alert.NewEvaluator(plan, rules, st, disp, logger)
	if err := ev.Load(ctx); err != nil {
		return nil, fmt.Errorf("alert state: %w", err)
	}
	// Webhook notices lost in a kill: those of the alerts active in the
	// last few repeat periods that the delivery log lacks.
	if n, err := disp.Redeliver(ctx, st, time.Now().Add(-dp.ValidFor)); err != nil {
		return nil, fmt.Errorf("alert state: %w", err)
	} else if n > 0 {
		level.Info(logger).Log("msg", "webhook notices undelivered before the restart queued again", "notices", n)
	}
	registerAlertMetrics(reg, ev, disp)
	var names []string
	for _, r := range rs {
		names = append(names, r.Name())
	}
	level.Info(logger).Log("msg", "alert evaluator started", "rules", len(rules), "from", src, "step", plan.Step, "granularity", plan.Granularity, "receivers", strings.Join(names, ","))
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	disp.Start(context.Background())
	go func() { ev.Run(actx); close(done) }()
	return func() { cancel(); <-done; disp.Stop(alertDrainGrace) }, nil
}

func registerAlertMetrics(reg prometheus.Registerer, ev *alert.Evaluator, disp *alert.Dispatcher) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lastmile_alert_evaluations_total", Help: "Alert rule evaluations (one per step)."},
			func() float64 { e, _, _ := ev.Counts(); return float64(e) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lastmile_alert_rule_errors_total", Help: "Rule evaluations that failed (store errors)."},
			func() float64 { _, e, _ := ev.Counts(); return float64(e) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lastmile_alerts_firing", Help: "Alerts firing now."},
			func() float64 { _, _, f := ev.Counts(); return float64(f) }),
	)
	for i, s := range disp.Stats() {
		i, l := i, prometheus.Labels{"receiver": s.Receiver}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lastmile_alert_notices_sent_total", Help: "Notices a receiver accepted.", ConstLabels: l},
				func() float64 { return float64(disp.Stats()[i].Sent) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lastmile_alert_notices_dropped_total", Help: "Notices dropped from a receiver's full queue.", ConstLabels: l},
				func() float64 { return float64(disp.Stats()[i].Dropped) }),
		)
	}
}
