package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/alert"
	"github.com/lastmile-qoe/lastmile/internal/app"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scenario"
	"github.com/lastmile-qoe/lastmile/media/scenarios"
	"github.com/lastmile-qoe/lastmile/media/stack"
	"github.com/lastmile-qoe/lastmile/media/topology"
)

// autoPorts makes every listener of a topology take a free port, so a
// scenario can run next to anything else on the machine.
func autoPorts(t *topology.Topology) {
	t.SchedulerListen, t.SchedulerAdmin, t.DNSListen, t.DNSHTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	t.Ingest.Listen, t.Ingest.HTTP = "127.0.0.1:0", "127.0.0.1:0"
	t.Origin.RTMP, t.Origin.HTTP, t.Origin.Admin = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	for ci := range t.Scheduler.CDNs {
		for ei := range t.Scheduler.CDNs[ci].Edges {
			t.Scheduler.CDNs[ci].Edges[ei].Port = 0
		}
	}
}

// runScenario plays a scenario on a new stack reporting to collectorURL; it
// prints progress to out and returns the labels.
func runScenario(ctx context.Context, sc *scenario.Scenario, collectorURL, appKey, labelsPath string,
	out io.Writer, logger log.Logger, ready func(*stack.Stack, []string, []string)) (scenario.Labels, report.Stats, error) {
	top := sc.Topology
	autoPorts(&top)
	top.Collector.URL, top.Collector.AppKey = collectorURL, appKey
	sc.Topology = top
	rep := report.New(report.Config{URL: collectorURL, AppKey: appKey, Name: "media", Logger: logger})
	st, err := stack.Start(ctx, top, rep, logger)
	if err != nil {
		rep.Close(context.Background())
		return scenario.Labels{}, report.Stats{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = st.WaitLive(wctx)
	cancel()
	if err != nil {
		st.Close(context.Background())
		rep.Close(context.Background())
		return scenario.Labels{}, report.Stats{}, err
	}
	if ready != nil {
		aff, unaff := scenario.Examples(sc, st, st.Audience())
		ready(st, aff, unaff)
	}
	lastSent, lastAt := int64(0), time.Now()
	labels, err := scenario.Run(ctx, sc, st, labelsPath, func(p scenario.Progress) {
		if p.Elapsed.Round(time.Second)%(5*time.Second) != 0 {
			return
		}
		s := rep.Stats()
		rate := float64(int64(s.Sent)-lastSent) / time.Since(lastAt).Seconds()
		lastSent, lastAt = int64(s.Sent), time.Now()
		next := "none left"
		if p.NextFault != "" {
			next = fmt.Sprintf("%s in %s", p.NextFault, (p.NextAt - p.Elapsed).Round(time.Second))
		}
		fmt.Fprintf(out, "[%s / %s] viewers %d playing, %d started · events/s %.0f · next fault: %s\n",
			fmtDur(p.Elapsed), fmtDur(sc.Duration), p.Playing, p.Started, rate, next)
	}, logger)
	st.Close(context.Background())
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if cerr := rep.Close(cctx); cerr != nil {
		level.Warn(logger).Log("msg", "some logs were not delivered", "err", cerr)
	}
	return labels, rep.Stats(), err
}

func fmtDur(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

// scenarioSetup loads a scenario and makes the logger of a scenario command.
func scenarioSetup(name, logLevel, role string, stderr io.Writer) (*scenario.Scenario, log.Logger, error) {
	sc, err := loadScenario(name)
	if err != nil {
		return nil, nil, err
	}
	lvl, err := parseLevel(logLevel)
	if err != nil {
		return nil, nil, err
	}
	logger := level.NewFilter(log.NewLogfmtLogger(log.NewSyncWriter(stderr)), lvl)
	return sc, log.With(logger, "ts", log.TimestampFormat(time.Now, "2006-01-02T15:04:05.000Z07:00"), "role", role), nil
}

func loadScenario(name string) (*scenario.Scenario, error) {
	b, err := scenarios.Read(name)
	if err != nil {
		return nil, err
	}
	sc, err := scenario.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", name, err)
	}
	return sc, nil
}

const demoUsage = `lastmile demo — the pipeline, a streaming stack and a scenario with real faults, in one command

Usage:
  lastmile demo [--scenario NAME|FILE] [--data DIR] [--listen ADDR] [--alertmanager URL] [--webhook URL]

It starts lastmile (as 'lastmile run', alert rules included, or reuses one already
answering on --listen), the streaming stack of the scenario on free ports, plays the
scenario's audience and faults, shows progress, and prints where to look. Alerts go to
the --alertmanager and --webhook receivers given, and 'lastmile alerts' lists them.
Ctrl-C stops everything cleanly.

Built-in scenarios: %s
`

func demoMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, demoUsage, strings.Join(scenarios.Names(), ", "))
		fs.PrintDefaults()
	}
	scen := fs.String("scenario", "demo", "built-in scenario `NAME` or a scenario FILE")
	dataDir := fs.String("data", "data", "`DIR` of the pipeline's state (as lastmile run)")
	listen := fs.String("listen", "127.0.0.1:8080", "HTTP address of the pipeline")
	labels := fs.String("labels", "", "labels `FILE` (ground truth, JSON); default DATA/labels-<scenario>-<time>.json")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	var alerts app.AlertOptions
	alertsOn := alertFlags(fs, "demo", &alerts)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *alertsOn && alerts.Rules != "" {
		if _, err := alert.LoadRules(alerts.Rules); err != nil {
			fmt.Fprintf(stderr, "lastmile demo: invalid alert rules:\n%v\n", err)
			return 2
		}
	}
	sc, logger, err := scenarioSetup(*scen, *logLevel, "demo", stderr)
	if err != nil {
		fmt.Fprintln(stderr, "lastmile demo:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t0 := time.Now()

	// The pipeline: reuse a running one, else start our own.
	pipeline := "http://" + *listen
	pipeDone := make(chan error, 1)
	if resp, err := http.Get(pipeline + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		fmt.Fprintf(stdout, "using the lastmile already running at %s\n", pipeline)
		if len(alerts.Alertmanagers)+len(alerts.Webhooks) > 0 || alerts.Rules != "" {
			fmt.Fprintln(stdout, "  its own alert role evaluates and delivers alerts: --rules, --alertmanager and --webhook apply to a demo that starts its pipeline")
		}
		close(pipeDone)
	} else {
		ready := make(chan app.Addrs, 1)
		o := app.Options{DataDir: *dataDir, Kafka: "embedded", KafkaListen: "127.0.0.1:0", Store: "embedded", Listen: *listen,
			RetentionDays: 30, Partitions: 4, QueryToken: os.Getenv("LASTMILE_QUERY_TOKEN"),
			Collector: true, Processor: true, Query: true, Alert: *alertsOn, Alerts: alerts, Ready: func(a app.Addrs) { ready <- a }}
		pctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { pipeDone <- app.Run(pctx, o, log.With(logger, "part", "pipeline")) }()
		select {
		case a := <-ready:
			pipeline = "http://" + a.HTTP
			fmt.Fprintf(stdout, "lastmile is up at %s (data in %s) after %s\n", pipeline, *dataDir, time.Since(t0).Round(100*time.Millisecond))
		case err := <-pipeDone:
			fmt.Fprintln(stderr, "lastmile demo: the pipeline did not start:", err)
			return 1
		case <-ctx.Done():
			return 1
		}
		defer func() {
			cancel()
			<-pipeDone
		}()
	}
	// Device and user ids carry the run's id: the same seed plays the same
	// audience, but a trace must not show an earlier run's sessions.
	sc.Topology.Players.RunID = strconv.FormatInt(time.Now().UnixMilli(), 36)
	lp := *labels
	if lp == "" {
		os.MkdirAll(*dataDir, 0o755)
		lp = filepath.Join(*dataDir, "labels-"+sc.Name+"-"+time.Now().UTC().Format("20060102T150405")+".json")
	}
	fmt.Fprintf(stdout, "scenario %s: %s\n  %s, %d players (run %s), %d rooms, %d edges; ground truth in %s\n",
		sc.Name, sc.Description, sc.Duration, sc.Topology.Players.Count, sc.Topology.Players.RunID, len(sc.Topology.Rooms), len(sc.Topology.Edges()), lp)
	for _, f := range sc.Faults {
		fmt.Fprintf(stdout, "  fault at %s for %s: %s %s %v\n", f.At, f.For, f.Scope, f.Kind, f.Dims(&sc.Topology))
	}
	token := filepath.Join(*dataDir, "query-token")
	_, rs, err := runScenario(ctx, sc, pipeline, app.DevKey, lp, stdout, logger, func(st *stack.Stack, aff, unaff []string) {
		fmt.Fprintf(stdout, "streaming after %s: scheduler %s, ingest rtmp://%s/live\n", time.Since(t0).Round(100*time.Millisecond), st.SchedURL, st.IngestAddr)
		fmt.Fprintf(stdout, "where to look (read API token in %s):\n", token)
		look := demoLook{Addr: pipeline, DataDir: *dataDir, Since: sc.Duration + 10*time.Minute, Faults: sc.Faults, Affected: aff, Unaffected: unaff, Alerts: *alertsOn}
		for _, c := range look.commands() {
			fmt.Fprintf(stdout, "  %s\n", c)
		}
		if d := append(aff, unaff...); len(d) > 0 {
			fmt.Fprintf(stdout, "  curl -fsS -H \"Authorization: Bearer $(cat %s)\" %s\n", shellQuote(token),
				shellQuote(pipeline+"/api/v1/trace?device_id="+url.QueryEscape(d[0])))
		}
	})
	if err != nil {
		fmt.Fprintln(stderr, "lastmile demo:", err)
		return 1
	}
	verb := "done"
	if ctx.Err() != nil {
		verb = "stopped (Ctrl-C)"
	}
	fmt.Fprintf(stdout, "scenario %s %s: %d events sent, %d dropped, %d rejected; labels in %s\n", sc.Name, verb, rs.Sent, rs.Dropped, rs.Rejected, lp)
	return 0
}
