// Command lastmile is the one binary of lastmile: every role, one subcommand
// each, and `run` for all of them in one process on embedded defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/alert"
	"github.com/lastmile-qoe/lastmile/internal/app"
	"github.com/lastmile-qoe/lastmile/processor"
)

// version is set by the Makefile (-ldflags "-X main.version=...").
var version = "dev"

const usage = `lastmile — QoE analytics for live and on-demand video streaming

Usage:
  lastmile <command> [flags]

Commands:
  run         every role in one process on embedded defaults (Kafka + chDB under ./data)
  collector   the HTTP ingest service: POST /v1/events → Kafka
  processor   Kafka → clean, dedup, batch → ClickHouse
  query       the read API only: trace search, QoE metrics, SQL, alerts (no Kafka needed)
  alert       the alert evaluator: rules over the store, delivery to Alertmanager and webhooks
  alerts      list firing and resolved alerts from the query API
  trace       print one device's, user's or session's timeline from the query API
  metrics     print a QoE metric as a table from the query API
  media       the instrumented streaming stack: lastmile media up | ingest | origin | edge | scenario | ...
  demo        the pipeline, a streaming stack and a scenario with real faults, in one command
  localize    incidents of a window from the query API (--since 30m), or the root cause in a leaf table (--csv)
  version     print the version

Run 'lastmile <command> -h' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "lastmile", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run", "collector", "processor", "query", "alert":
		return serve(cmd, rest, stdout, stderr)
	case "trace":
		return traceMain(rest, stdout, stderr)
	case "metrics":
		return metricsMain(rest, stdout, stderr)
	case "alerts":
		return alertsMain(rest, stdout, stderr)
	case "media":
		return mediaMain(rest, stdout, stderr)
	case "demo":
		return demoMain(rest, stdout, stderr)
	case "localize":
		return localizeMain(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "lastmile: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += " " + bi.GoVersion
	}
	return v
}

func serve(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o app.Options
	var logLevel string
	fs.StringVar(&o.DataDir, "data", "data", "`DIR` for all state: embedded Kafka log, chDB database, query token")
	fs.StringVar(&o.Kafka, "kafka", "embedded", "`ADDRS`: embedded, or a Kafka cluster's bootstrap list host:9092,host2:9092")
	fs.StringVar(&o.KafkaListen, "kafka-listen", "127.0.0.1:9092", "address of the embedded Kafka broker (port 0: pick one and remember it)")
	fs.StringVar(&o.Store, "store", "embedded", "`STORE`: embedded (chDB under --data), or a ClickHouse server clickhouse://user:pass@host:9000/db")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "public HTTP address: /v1/events, /v1/config, /api/v1/..., /healthz")
	fs.StringVar(&o.MetricsListen, "metrics-listen", "127.0.0.1:9464", "`ADDR` of /metrics, /healthz and (with --pprof) /debug/pprof/, apart from --listen; each role on one host needs its own; \"\" for none")
	fs.BoolVar(&o.Pprof, "pprof", false, "serve /debug/pprof/ on --metrics-listen to holders of the admin token")
	fs.StringVar(&o.AdminToken, "admin-token", os.Getenv("LASTMILE_ADMIN_TOKEN"), "bearer token of /debug/pprof/ (default: $LASTMILE_ADMIN_TOKEN, else a random one in DATA/admin-token)")
	fs.StringVar(&o.KeysFile, "keys", "", "app keys `FILE` (YAML: keys: {KEY: APP_ID}); without it only the development key dev-key is accepted")
	fs.StringVar(&o.SamplingFile, "sampling", "", "sampling config `FILE` (YAML: seed, default_rate, rates per log_type); default keeps everything")
	fs.IntVar(&o.RetentionDays, "retention-days", 30, "how long events are kept in Kafka and ClickHouse")
	fs.IntVar(&o.Partitions, "partitions", 1, "partitions of each topic lastmile creates (raise it to spread topics over several processor replicas)")
	fs.StringVar(&o.QueryToken, "query-token", os.Getenv("LASTMILE_QUERY_TOKEN"), "bearer token of the read API (default: $LASTMILE_QUERY_TOKEN, else a random one in DATA/query-token)")
	fs.IntVar(&o.BatchRows, "batch-rows", 0, "processor: most rows per insert (default 100000)")
	fs.DurationVar(&o.FlushInterval, "flush-interval", 0, "processor: longest a row waits for its batch (default 500ms)")
	fs.DurationVar(&o.DedupWindow, "dedup-window", processor.DefaultDedupWindow, "processor: how long an event_id is remembered, across restarts, to drop a client's retry")
	fs.IntVar(&o.DedupMaxIDs, "dedup-max-ids", processor.DefaultDedupMaxIDs, "processor: most event ids remembered (~17 bytes each); past it the oldest are forgotten before --dedup-window, counted and logged")
	fs.Int64Var(&o.MaxBodyBytes, "max-body-bytes", 0, "collector: largest request body, compressed or inflated (default 8 MiB)")
	fs.IntVar(&o.MaxEvents, "max-batch-events", 0, "collector: most events in one request (default 10000)")
	fs.Func("cors-origins", "collector: comma-separated page `ORIGINS` (https://app.example.com) allowed to post events and CMCD reports from a browser (default: any)", func(v string) error {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.CORSOrigins = append(o.CORSOrigins, s)
			}
		}
		return nil
	})
	fs.Int64Var(&o.MaxInflightBytes, "max-inflight-bytes", 0, "collector: request body `BYTES` (as sent plus inflated) held at once by all requests; beyond it posts get 429 with Retry-After (default 128 MiB)")
	fs.Int64Var(&o.MaxInflightBytesPerApp, "max-inflight-bytes-per-app", 0, "collector: the same for one app key (default half of --max-inflight-bytes)")
	fs.Int64Var(&o.ConsolidateMaxBytes, "consolidate-max-bytes", 8<<30, "processor: merge each closed day of events (and of trace_context) up to this many `BYTES` on disk into one part, for faster trace lookups (0: never)")
	fs.DurationVar(&o.ShutdownGrace, "shutdown-grace", 3*time.Second, "on SIGTERM, keep the HTTP port open this long answering 503 with Retry-After (and /healthz 503) before closing it")
	fs.DurationVar(&o.SQL.MaxExecutionTime, "sql-timeout", app.DefaultSQLLimits.MaxExecutionTime, "query: longest a /api/v1/sql statement runs before the engine stops it")
	fs.Int64Var(&o.SQL.MaxResultRows, "sql-max-rows", app.DefaultSQLLimits.MaxResultRows, "query: most rows a /api/v1/sql answer may have (more is an error: add a LIMIT)")
	alerts := alertFlags(fs, cmd, &o.Alerts)
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lastmile %s: unexpected arguments %q\n", cmd, fs.Args())
		return 2
	}
	switch cmd {
	case "run":
		o.Collector, o.Processor, o.Query, o.Alert = true, true, true, *alerts
	case "alert":
		o.Alert = true
	case "collector":
		o.Collector = true
	case "processor":
		o.Processor = true
	case "query":
		o.Query = true
	}

	if o.Alert && o.Alerts.Rules != "" {
		// Refused before anything starts, every problem on its own line.
		if _, err := alert.LoadRules(o.Alerts.Rules); err != nil {
			fmt.Fprintf(stderr, "lastmile %s: invalid alert rules:\n%v\n", cmd, err)
			return 2
		}
	}

	logger := log.NewLogfmtLogger(log.NewSyncWriter(stderr))
	lvl, err := parseLevel(logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "lastmile:", err)
		return 2
	}
	logger = level.NewFilter(logger, lvl)
	logger = log.With(logger, "ts", log.TimestampFormat(time.Now, "2006-01-02T15:04:05.000Z07:00"), "role", cmd)

	o.Ready = func(a app.Addrs) {
		fmt.Fprintf(stdout, "lastmile %s is up\n", cmd)
		fmt.Fprintf(stdout, "  http:  http://%s   (POST /v1/events, GET /api/v1/trace, GET /api/v1/metrics, GET /healthz)\n", a.HTTP)
		if a.Metrics != "" {
			fmt.Fprintf(stdout, "  metrics: http://%s/metrics\n", a.Metrics)
		}
		if o.Pprof {
			tok := "the --admin-token"
			if a.AdminTokenFile != "" {
				tok = "the token in " + a.AdminTokenFile
			}
			fmt.Fprintf(stdout, "  pprof: http://%s/debug/pprof/   (Authorization: Bearer with %s)\n", a.Metrics, tok)
		}
		if a.Kafka != "" {
			fmt.Fprintf(stdout, "  kafka: %s\n", a.Kafka)
		}
		if a.Store != "" {
			fmt.Fprintf(stdout, "  store: %s\n", a.Store)
		}
		if o.Collector && o.KeysFile == "" {
			fmt.Fprintf(stdout, "  try:   curl -H 'X-Lastmile-Key: %s' -d '{\"log_type\":\"heartbeat\",\"ts\":%d,\"device_id\":\"d1\",\"session_id\":\"s1\"}' http://%s/v1/events\n",
				app.DevKey, time.Now().UnixMilli(), a.HTTP)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, o, logger); err != nil {
		level.Error(logger).Log("msg", "exiting", "err", err)
		return 1
	}
	return 0
}

func parseLevel(s string) (level.Option, error) {
	switch strings.ToLower(s) {
	case "debug":
		return level.AllowDebug(), nil
	case "info":
		return level.AllowInfo(), nil
	case "warn":
		return level.AllowWarn(), nil
	case "error":
		return level.AllowError(), nil
	}
	return nil, fmt.Errorf("unknown --log-level %q (debug, info, warn, error)", s)
}
