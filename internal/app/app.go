// Package app wires lastmile's roles (collector, processor, query) to their
// dependencies — Kafka (embedded or a cluster) and the store (embedded chDB or
// a ClickHouse server) — and runs them until a signal, then shuts down in
// order: stop taking requests, flush, commit, close.
package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lastmile-qoe/lastmile/alert"
	"github.com/lastmile-qoe/lastmile/collector"
	"github.com/lastmile-qoe/lastmile/internal/broker"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/processor"
	"github.com/lastmile-qoe/lastmile/processor/consolidator"
	"github.com/lastmile-qoe/lastmile/query"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Options configure a process. Which roles run is chosen by the subcommand.
type Options struct {
	DataDir string
	// Kafka is "embedded" or a comma-separated bootstrap list.
	Kafka string
	// KafkaListen is the embedded broker's address.
	KafkaListen string
	// Store is "embedded" or a clickhouse:// DSN.
	Store  string
	Listen string
	// MetricsListen serves /metrics, /healthz and (with Pprof) profiling,
	// apart from the public Listen that players post to; "" serves none.
	MetricsListen string
	// Pprof serves /debug/pprof/ on MetricsListen to holders of AdminToken.
	Pprof bool
	// AdminToken is the bearer token of profiling; "" reads or creates
	// DATA/admin-token.
	AdminToken    string
	KeysFile      string
	SamplingFile  string
	RetentionDays int
	Partitions    int
	QueryToken    string
	// SQL bounds the read API's SQL window (zero fields: DefaultSQLLimits).
	SQL           store.ReadOptions
	BatchRows     int
	FlushInterval time.Duration
	// DedupWindow and DedupMaxIDs: how long, and how many, event ids the
	// processor remembers to drop client retries (0: defaults).
	DedupWindow  time.Duration
	DedupMaxIDs  int
	MaxBodyBytes int64
	MaxEvents    int
	// CORSOrigins: page origins allowed to call the collector (empty: any).
	CORSOrigins []string
	// Admission limits of the collector (0: its defaults).
	MaxInflightBytes, MaxInflightBytesPerApp int64
	// ConsolidateMaxBytes: the processor merges each closed day of the
	// events table up to this size into one part (0: never).
	ConsolidateMaxBytes int64
	// ShutdownGrace: after a signal, how long the HTTP listener stays open
	// answering 503 (posts) and /healthz 503 before it closes.
	ShutdownGrace time.Duration

	Collector, Processor, Query bool
	// Alert runs the alert evaluator (docs/alerts.md) with Alerts.
	Alert  bool
	Alerts AlertOptions
	// Ready, when set, is called with the listen addresses once serving.
	Ready func(Addrs)
}

// Addrs are where a running process listens.
type Addrs struct {
	HTTP  string
	Kafka string
	Store string
	// Metrics is the metrics listener ("" when off); AdminToken is the
	// file of profiling's token when it was generated there.
	Metrics, AdminTokenFile string
}

// KeysConfig is the app keys file:
//
//	keys:
//	  3f9c...: my-app
type KeysConfig struct {
	Keys map[string]string `yaml:"keys"`
}

// DevKey is the key `lastmile run` accepts when no keys file is given, so a
// newcomer can post an event at once. It is printed at start.
const (
	DevKey   = "dev-key"
	DevAppID = "demo"
)

func loadKeys(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("app keys: %w", err)
	}
	keys, err := parseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("app keys %s: %w", path, err)
	}
	return keys, nil
}

// Run starts the chosen roles and blocks until ctx is cancelled, then shuts
// down cleanly.
func Run(ctx context.Context, o Options, logger log.Logger) error {
	if o.DataDir == "" {
		o.DataDir = "data"
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if o.RetentionDays <= 0 {
		o.RetentionDays = 30
	}
	if o.Partitions <= 0 {
		// One partition per topic: the producer writes one batch at a
		// time per partition, so on one machine fewer, larger batches
		// carry more (measured: 4 partitions sustained 93-94k events/s,
		// 1 partition 110k; docs/operations.md).
		o.Partitions = 1
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var closers closeStack
	defer closers.closeAll(logger)
	var addrs Addrs

	// Kafka, for the roles that use it.
	var bootstrap []string
	needKafka := o.Collector || o.Processor // the query role reads the store only
	switch {
	case !needKafka:
	case o.Kafka == "" || o.Kafka == "embedded":
		b, err := broker.StartEmbedded(broker.EmbeddedConfig{
			DataDir:    filepath.Join(o.DataDir, "kafka"),
			Addr:       o.KafkaListen,
			Retention:  time.Duration(o.RetentionDays) * 24 * time.Hour,
			Partitions: o.Partitions,
		}, logger)
		if err != nil {
			return fmt.Errorf("embedded kafka: %w", err)
		}
		closers.push("broker", b.Close)
		bootstrap = []string{b.Addr()}
	default:
		for _, s := range strings.Split(o.Kafka, ",") {
			if s = strings.TrimSpace(s); s != "" {
				bootstrap = append(bootstrap, s)
			}
		}
	}
	addrs.Kafka = strings.Join(bootstrap, ",")
	var producer *kafkaio.Producer
	var err error
	if needKafka {
		var specs []broker.TopicSpec
		for _, t := range append(schemas.Topics(), collector.CMCDReportsTopic) {
			specs = append(specs, broker.TopicSpec{Name: t, Partitions: o.Partitions})
		}
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := broker.EnsureTopics(tctx, bootstrap, specs)
		cancel()
		if err != nil {
			return fmt.Errorf("kafka at %s: %w", addrs.Kafka, err)
		}
		if producer, err = kafkaio.NewProducer(bootstrap, kafkaio.ProducerConfig{}); err != nil {
			return err
		}
	}

	// Store (needed by the processor and the query role).
	var st store.Store
	if o.Processor || o.Query || o.Alert {
		st, addrs.Store, err = openStore(ctx, o)
		if err != nil {
			return err
		}
		closers.push("store", st.Close)
		applied, err := schemas.Migrate(ctx, st, o.RetentionDays)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			level.Info(logger).Log("msg", "schema migrated", "applied", strings.Join(applied, ","))
		}
	}
	if producer != nil {
		closers.push("producer", producer.Close)
	}
	if o.Alert {
		stop, err := startAlert(ctx, o.Alerts, st, reg, logger)
		if err != nil {
			return err
		}
		closers.push("alert evaluator", func() error { stop(); return nil })
	}

	var draining atomic.Bool
	healthz := func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	// The public port (players, SDKs, dashboards) serves no metrics and no
	// profiles: those go to a listener of their own, loopback by default.
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz) // load balancers probe the public port
	var metricsSrv *http.Server
	if o.MetricsListen != "" {
		amux := http.NewServeMux()
		amux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		amux.HandleFunc("/healthz", healthz)
		if o.Pprof {
			token := o.AdminToken
			if token == "" {
				addrs.AdminTokenFile = filepath.Join(o.DataDir, "admin-token")
				if token, err = query.LoadOrCreateToken(addrs.AdminTokenFile); err != nil {
					return fmt.Errorf("admin token: %w", err)
				}
			}
			// Profiling, as Prometheus and Loki expose it, but only when
			// asked for and to the operator: a profile is CPU spent and a
			// view of the process's insides.
			amux.Handle("/debug/pprof/", adminOnly(token, pprofMux()))
		}
		ln, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w (give each role on one host its own --metrics-listen, or \"\" for none)", o.MetricsListen, err)
		}
		addrs.Metrics = ln.Addr().String()
		metricsSrv = &http.Server{Handler: recoverer(amux, logger), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		go metricsSrv.Serve(ln)
		closers.push("metrics listener", metricsSrv.Close)
	} else if o.Pprof {
		return errors.New("--pprof needs --metrics-listen: profiling is served there only")
	}

	var coll *collector.Collector
	if o.Collector {
		keys := map[string]string{DevKey: DevAppID}
		if o.KeysFile != "" {
			if keys, err = loadKeys(o.KeysFile); err != nil {
				return err
			}
		} else {
			level.Warn(logger).Log("msg", "no --keys file: accepting the development key only", "key", DevKey, "app_id", DevAppID)
		}
		sc := sampling.DefaultConfig()
		if o.SamplingFile != "" {
			if sc, err = sampling.Load(o.SamplingFile); err != nil {
				return err
			}
		}
		coll = collector.New(collector.Config{AppKeys: keys, MaxBodyBytes: o.MaxBodyBytes, MaxEvents: o.MaxEvents,
			MaxRecordBytes: producer.MaxRecordBytes(), AllowedOrigins: o.CORSOrigins,
			Admission: collector.Admission{MaxInflightBytes: o.MaxInflightBytes, MaxInflightBytesPerApp: o.MaxInflightBytesPerApp}},
			sampling.New(sc), producer, collector.NewMetrics(reg), log.With(logger, "component", "collector"))
		h := coll.Handler()
		mux.Handle("/v1/", h)
		closers.push("cmcd pairing", startPairer(coll, bootstrap, logger))
	}
	if o.Query {
		token := o.QueryToken
		if token == "" {
			token, err = query.LoadOrCreateToken(filepath.Join(o.DataDir, "query-token"))
			if err != nil {
				return err
			}
		}
		// Reads run on connections of their own, so no query holds ingest
		// back; the SQL window's are strict (readonly=1 and limits).
		api, err := store.OpenReader(ctx, st, store.ReadOptions{Conns: 4})
		if err != nil {
			return err
		}
		closers.push("api reader", api.Close)
		sqlr, err := store.OpenReader(ctx, st, sqlLimits(o.SQL))
		if err != nil {
			return err
		}
		closers.push("sql reader", sqlr.Close)
		mux.Handle("/api/v1/", query.New(api, token, log.With(logger, "component", "query"), query.WithSQLStore(sqlr),
			query.WithRoute("/api/v1/alerts", alert.Handler(api))).Handler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			fmt.Fprintln(w, "lastmile: "+publicRoutes)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "{\"error\":%q}\n", fmt.Sprintf("no route %s %s; routes: %s", r.Method, r.URL.Path, publicRoutes))
	})

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.Listen, err)
	}
	addrs.HTTP = ln.Addr().String()
	srv := &http.Server{
		Handler:           recoverer(mux, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()

	// Processor.
	pctx, pcancel := context.WithCancel(context.Background())
	var pdone chan error // nil (never ready) without a processor
	var consDone chan struct{}
	if o.Processor {
		pdone = make(chan error, 1)
		pm := processor.NewMetrics(reg)
		proc := processor.New(processor.Config{
			Brokers: bootstrap, BatchRows: o.BatchRows, FlushInterval: o.FlushInterval,
			DedupWindow: o.DedupWindow, DedupMaxIDs: o.DedupMaxIDs,
			Retention: time.Duration(o.RetentionDays) * 24 * time.Hour,
		}, st, producer, pm, log.With(logger, "component", "processor"))
		go func() { pdone <- proc.Run(pctx) }()
		go watchLag(pctx, bootstrap, proc, pm, logger)
		embedded := o.Store == "" || o.Store == "embedded"
		cons := consolidator.New(consolidator.Config{MaxBytes: o.ConsolidateMaxBytes, StopMerges: embedded}, st,
			consolidator.NewMetrics(reg), log.With(logger, "component", "consolidator"))
		consDone = make(chan struct{})
		go func() { cons.Run(pctx); close(consDone) }()
	}

	level.Info(logger).Log("msg", "lastmile is serving", "http", "http://"+addrs.HTTP, "metrics", addrs.Metrics, "pprof", o.Pprof, "kafka", addrs.Kafka, "store", addrs.Store)
	if o.Ready != nil {
		o.Ready(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-srvErr:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-pdone:
		if err != nil {
			runErr = fmt.Errorf("processor: %w", err)
		}
		pdone <- err
	}

	level.Info(logger).Log("msg", "shutting down: no new requests, flushing, committing")
	draining.Store(true)
	if coll != nil {
		coll.Drain()
	}
	if runErr == nil && o.ShutdownGrace > 0 && (o.Collector || o.Query) {
		// New clients get 503 + Retry-After, not connection refused, while
		// a load balancer sees /healthz fail and moves them on.
		srv.SetKeepAlivesEnabled(false)
		level.Info(logger).Log("msg", "draining: answering 503 until the listener closes", "grace", o.ShutdownGrace)
		time.Sleep(o.ShutdownGrace)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	pcancel()
	if pdone != nil {
		if err := <-pdone; err != nil && runErr == nil {
			runErr = fmt.Errorf("processor: %w", err)
		}
		<-consDone // a closed day's merge under way is stopped (embedded) or left to the server
	}
	level.Info(logger).Log("msg", "stopped cleanly")
	return runErr
}

// DefaultSQLLimits bound the read API's SQL window; docs/security.md.
var DefaultSQLLimits = store.ReadOptions{
	Conns:            2,
	Strict:           true,
	MaxExecutionTime: 30 * time.Second,
	MaxResultRows:    100_000,
	MaxResultBytes:   64 << 20,
	MaxMemoryUsage:   2 << 30,
}

// sqlLimits fills o's zero fields from DefaultSQLLimits; the window is
// always strict.
func sqlLimits(o store.ReadOptions) store.ReadOptions {
	d := DefaultSQLLimits
	if o.Conns > 0 {
		d.Conns = o.Conns
	}
	if o.MaxExecutionTime > 0 {
		d.MaxExecutionTime = o.MaxExecutionTime
	}
	if o.MaxResultRows > 0 {
		d.MaxResultRows = o.MaxResultRows
	}
	if o.MaxResultBytes > 0 {
		d.MaxResultBytes = o.MaxResultBytes
	}
	if o.MaxMemoryUsage > 0 {
		d.MaxMemoryUsage = o.MaxMemoryUsage
	}
	return d
}

// publicRoutes lists what the public port serves, for its 404s.
const publicRoutes = "POST /v1/events, GET /v1/config, GET /api/v1/trace, GET /api/v1/metrics, GET /api/v1/sql, GET /api/v1/alerts, GET /healthz " +
	"(/metrics and /debug/pprof/ are on --metrics-listen)"

// pprofMux serves the runtime profiles. cmdline is left out: it would hand
// out the flags, tokens included.
func pprofMux() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

// adminOnly lets through requests bearing token.
func adminOnly(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lastmile admin"`)
			http.Error(w, "missing or wrong bearer token: send Authorization: Bearer TOKEN (see --admin-token, or DATA/admin-token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func openStore(ctx context.Context, o Options) (store.Store, string, error) {
	if o.Store == "" || o.Store == "embedded" {
		dir, err := filepath.Abs(filepath.Join(o.DataDir, "chdb"))
		if err != nil {
			return nil, "", err
		}
		st, err := store.OpenEmbedded("", dir)
		if err != nil {
			return nil, "", fmt.Errorf("embedded store: %w", err)
		}
		return st, "chdb:" + dir, nil
	}
	st, err := store.OpenClickHouse(ctx, o.Store)
	if err != nil {
		return nil, "", fmt.Errorf("clickhouse store: %w", err)
	}
	return st, o.Store, nil
}

func watchLag(ctx context.Context, bootstrap []string, p *processor.Processor, m *processor.Metrics, logger log.Logger) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lag, err := broker.Lag(lctx, bootstrap, p.Group(), p.Topics())
		cancel()
		if err != nil {
			level.Debug(logger).Log("msg", "lag check failed", "err", err)
			continue
		}
		for topic, n := range lag {
			m.Lag.WithLabelValues(topic).Set(float64(n))
		}
	}
}

// recoverer turns a panic in a handler into a 500 and a log line: a malformed
// request never takes the process down.
func recoverer(h http.Handler, logger log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				level.Error(logger).Log("msg", "handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
				http.Error(w, `{"error":"internal error"}`, http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

type closeStack struct {
	names []string
	fns   []func() error
}

func (c *closeStack) push(name string, fn func() error) {
	c.names = append(c.names, name)
	c.fns = append(c.fns, fn)
}

func (c *closeStack) closeAll(logger log.Logger) {
	for i := len(c.fns) - 1; i >= 0; i-- {
		if err := c.fns[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			level.Warn(logger).Log("msg", "close failed", "part", c.names[i], "err", err)
		}
	}
}

// startPairer runs the collector's CMCD pairing stage (collector/cmcdpair.go)
// until the returned stop, which waits for it: it leaves its consumer group
// before the embedded broker closes.
func startPairer(coll *collector.Collector, bootstrap []string, logger log.Logger) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := coll.NewPairer(collector.PairPlan{Brokers: bootstrap}).Run(ctx); err != nil {
			level.Error(logger).Log("msg", "CMCD pairing stopped", "err", err)
		}
	}()
	return func() error { cancel(); <-done; return nil }
}
