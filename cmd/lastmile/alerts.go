package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/alert"
	"github.com/lastmile-qoe/lastmile/internal/app"
)

// alertFlags adds the alert role's flags to run, demo and alert; for run
// and demo, the returned bool turns the role off.
func alertFlags(fs *flag.FlagSet, cmd string, o *app.AlertOptions) *bool {
	on := new(bool)
	if cmd != "run" && cmd != "demo" && cmd != "alert" {
		return on
	}
	if cmd != "alert" {
		fs.BoolVar(on, "alerts", true, "run the alert evaluator (--rules, or the built-in rules); --alerts=false turns it off")
	}
	fs.StringVar(&o.Rules, "rules", "", "alert rules `FILE` (YAML, docs/alerts.md); default: the built-in rules")
	fs.Func("alertmanager", "Alertmanager base `URL` to post alerts to (POST /api/v2/alerts); repeatable or a comma list", func(s string) error {
		o.Alertmanagers = append(o.Alertmanagers, s)
		return nil
	})
	fs.Func("webhook", "`URL` that gets each alert's firing and resolved notices as JSON; repeatable or a comma list", func(s string) error {
		o.Webhooks = append(o.Webhooks, s)
		return nil
	})
	fs.DurationVar(&o.Plan.Step, "alert-step", alert.DefaultPlan.Step, "time between alert evaluations")
	fs.DurationVar(&o.Plan.Resend, "alert-resend", alert.DefaultPlan.Resend, "how often firing alerts are posted to Alertmanager again")
	return on
}

// alertsMain is `lastmile alerts`: the alerts of a window from the query
// API, with their labels, figures and delivery status.
func alertsMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile alerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: lastmile alerts [flags]

Lists the alerts active at some time in a window (default the last 24 h),
newest first: state, start, end, rule, labels, the figures it fired on, and
how each receiver took it. docs/alerts.md describes the rules.

Examples:
  lastmile alerts --state firing
  lastmile alerts --since 7d --state resolved

Flags:
`)
		fs.PrintDefaults()
	}
	state := fs.String("state", "", "firing or resolved (default both)")
	since := fs.String("since", "", "window ending now (or at --to): 30m, 2h, 7d (default 24h)")
	from := fs.String("from", "", "window start: RFC 3339, ms since the epoch, or now-2h")
	to := fs.String("to", "", "window end (default now)")
	api := addAPIFlags(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	q := url.Values{}
	if *since != "" {
		if *from != "" {
			fmt.Fprintln(stderr, "lastmile alerts: give --from or --since, not both")
			return 2
		}
		*from = "now-" + *since
	}
	for param, v := range map[string]string{"state": *state, "from": *from, "to": *to} {
		if v != "" {
			q.Set(param, v)
		}
	}
	var ans alert.AlertsAnswer
	if done, code := api.get("alerts", "/api/v1/alerts", q, stdout, stderr, "a list of alerts", &ans); done {
		return code
	}
	loc := api.loc()
	printAlerts(stdout, &ans, loc)
	return 0
}

// printAlerts writes one block per alert: a table line, then its summary,
// its trace command and its deliveries.
func printAlerts(w io.Writer, a *alert.AlertsAnswer, loc *time.Location) {
	fmt.Fprintf(w, "alerts %s → %s", a.From.In(loc).Format("2006-01-02 15:04"), a.To.In(loc).Format("2006-01-02 15:04 MST"))
	if a.State != "" {
		fmt.Fprintf(w, "  state %s", a.State)
	}
	fmt.Fprintln(w)
	if len(a.Alerts) == 0 {
		fmt.Fprintln(w, "no alerts in the window")
		return
	}
	const layout = "01-02 15:04:05"
	var rows [][]string
	for _, al := range a.Alerts {
		end := "–"
		if al.EndsAt != nil {
			end = al.EndsAt.In(loc).Format(layout)
		}
		var dims []string
		for k, v := range al.Labels {
			if k != "alertname" && k != "severity" && k != "scope" {
				dims = append(dims, k+"="+v)
			}
		}
		slices.Sort(dims)
		rows = append(rows, []string{al.State, al.StartsAt.In(loc).Format(layout), end, al.Rule, al.Labels["scope"], al.Labels["severity"],
			strings.Join(dims, " "), strconv.FormatFloat(al.Value, 'f', 2, 64), strconv.FormatFloat(al.Expected, 'f', 2, 64), deliverySummary(al.Deliveries)})
	}
	printTable(w, []string{"state", "start", "end", "rule", "scope", "severity", "labels", "value", "expected", "delivered"}, rows, 7)
	for _, al := range a.Alerts {
		fmt.Fprintf(w, "\n%s %s\n  %s\n", al.Rule, al.Fingerprint, al.Annotations["summary"])
		for _, k := range []string{"verdict", "trace", "metrics"} {
			if v := al.Annotations[k]; v != "" {
				fmt.Fprintf(w, "  %s: %s\n", k, v)
			}
		}
		for _, d := range al.Deliveries {
			ok := "delivered"
			if !d.Delivered {
				ok = "NOT delivered"
			}
			fmt.Fprintf(w, "  %s → %s: %s after %d attempt(s), last %s %s\n", d.Event, d.Receiver, ok, d.Attempts, d.LastStatus, d.LastError)
		}
	}
}

// deliverySummary is "2/2": receivers that got every notice / receivers.
func deliverySummary(ds []alert.Delivery) string {
	if len(ds) == 0 {
		return "–"
	}
	good := map[string]bool{}
	for _, d := range ds {
		if _, seen := good[d.Receiver]; !seen {
			good[d.Receiver] = true
		}
		good[d.Receiver] = good[d.Receiver] && d.Delivered
	}
	n := 0
	for _, ok := range good {
		if ok {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(good))
}
