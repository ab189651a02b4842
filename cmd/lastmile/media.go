package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lastmile-qoe/lastmile/media/dns"
	"github.com/lastmile-qoe/lastmile/media/edge"
	"github.com/lastmile-qoe/lastmile/media/ingest"
	"github.com/lastmile-qoe/lastmile/media/origin"
	"github.com/lastmile-qoe/lastmile/media/player"
	"github.com/lastmile-qoe/lastmile/media/publisher"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
	"github.com/lastmile-qoe/lastmile/media/stack"
	"github.com/lastmile-qoe/lastmile/media/topology"
)

const mediaUsage = `lastmile media — the instrumented streaming stack

Usage:
  lastmile media <role> [flags]

Roles (each reads its part of one topology file, --config; without it the built-in default):
  up          the whole topology in one process: DNS, scheduler, ingest, origin, edges, publishers
  scheduler   stream scheduling: GET /v1/schedule, GET /v1/push
  dns         the stack's DNS server (edge host names)
  ingest      RTMP publish server, relays to the origin
  origin      holds streams, runs the transcode ladder, serves HTTP-FLV to edges
  edge        one CDN edge node (--node), HTTP-FLV and HLS
  publish     the built-in broadcaster: push one room over RTMP

Every role posts its logs to the collector of the topology (collector.url, collector.app_key)
and serves /metrics and /healthz on an admin address of its own (--admin; loopback by default),
never on the port viewers, broadcasters or edges use.

The scheduler, ingest and edges need the signing secret (scheduler.secret or $LASTMILE_MEDIA_SECRET),
the scheduler and publish the push token (scheduler.push_token or $LASTMILE_MEDIA_PUSH_TOKEN);
they refuse to start without. 'up' draws both at random when unset and prints the push token.
`

func mediaMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, mediaUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	role, rest := args[0], args[1:]
	if role == "scenario" {
		return mediaScenarioMain(rest, stdout, stderr)
	}
	fs := flag.NewFlagSet("lastmile media "+role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "topology `FILE` (YAML, see docs/media.md); default: the built-in topology")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	collector := fs.String("collector", "", "collector base `URL` (overrides collector.url)")
	node := fs.String("node", "", "edge: the node to run (one of the topology's edges)")
	room := fs.String("room", "", "publish, play: the room (default: the topology's first room)")
	pushURL := fs.String("url", "", "publish: push to this rtmp:// URL instead of asking the scheduler")
	schedURL := fs.String("scheduler", "", "publish, play: scheduler base `URL` (default: from the topology)")
	duration := fs.Duration("duration", 0, "publish, up: stop after this long (0: until Ctrl-C)")
	var mf mediaFlags
	fs.StringVar(&mf.device, "device", "cli-device", "play: device_id")
	fs.StringVar(&mf.region, "region", "north", "play: the viewer's region")
	fs.StringVar(&mf.isp, "isp", "isp-a", "play: the viewer's ISP")
	fs.StringVar(&mf.appVersion, "app-version", "5.2.0", "play: the viewer's app version")
	fs.StringVar(&mf.rendition, "rendition", "", "play: rendition (default source)")
	fs.StringVar(&mf.format, "format", "flv", "play: flv or hls")
	fs.DurationVar(&mf.watch, "watch", 30*time.Second, "play: how long to watch after the first frame")
	fs.StringVar(&mf.admin, "admin", "", "`ADDR` of the role's /metrics and /healthz (default: the topology's scheduler_admin, ingest.http, origin.admin, dns_http; edge and publish: 127.0.0.1:0)")
	switch role {
	case "up", "scheduler", "dns", "ingest", "origin", "edge", "publish", "play":
	default:
		fmt.Fprintf(stderr, "lastmile media: unknown role %q\n\n%s", role, mediaUsage)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	top, err := topology.Load(*config)
	if err != nil {
		fmt.Fprintln(stderr, "lastmile media:", err)
		return 2
	}
	if *collector != "" {
		top.Collector.URL = *collector
	}
	// The secrets: from the file or the environment, never built in. Only
	// `up`, whose signers and verifiers share one process, draws its own.
	var need []string
	switch role {
	case "scheduler":
		need = []string{topology.NeedSecret, topology.NeedPushToken}
	case "ingest", "edge":
		need = []string{topology.NeedSecret}
	case "publish":
		if *pushURL == "" {
			need = []string{topology.NeedPushToken}
		}
	}
	if _, err := top.Secrets(os.Getenv, false, need...); err != nil {
		fmt.Fprintf(stderr, "lastmile media %s: %v\n", role, err)
		return 2
	}
	lvl, err := parseLevel(*logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "lastmile media:", err)
		return 2
	}
	logger := level.NewFilter(log.NewLogfmtLogger(log.NewSyncWriter(stderr)), lvl)
	logger = log.With(logger, "ts", log.TimestampFormat(time.Now, "2006-01-02T15:04:05.000Z07:00"), "role", "media-"+role)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	reg := prometheus.NewRegistry()
	rep := report.New(report.Config{URL: top.Collector.URL, AppKey: top.Collector.AppKey, Name: role, Logger: logger})
	reg.MustRegister(rep.Collectors()...)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rep.Close(cctx); err != nil {
			level.Warn(logger).Log("msg", "some logs were not delivered", "err", err)
		}
		st := rep.Stats()
		level.Info(logger).Log("msg", "logs delivered", "sent", st.Sent, "dropped", st.Dropped, "rejected", st.Rejected)
	}()

	if err := runMediaRole(ctx, role, top, rep, reg, logger, stdout, withFlags(mf, *node, *room, *pushURL, *schedURL)); err != nil {
		level.Error(logger).Log("msg", "exiting", "err", err)
		return 1
	}
	return 0
}

type mediaFlags struct {
	node, room, pushURL, schedURL                      string
	device, region, isp, appVersion, rendition, format string
	watch                                              time.Duration
	admin                                              string
}

// adminAddr is --admin when given, else the role's default.
func (f mediaFlags) adminAddr(def string) string {
	if f.admin != "" {
		return f.admin
	}
	return def
}

// adminMux serves /metrics and /healthz of a role.
func adminMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}

// healthMux serves /healthz only: the public ports' load-balancer probe.
func healthMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}

// serveAdmin serves mux on addr until ctx ends.
func serveAdmin(ctx context.Context, addr string, mux *http.ServeMux) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return ln.Addr(), nil
}

func runMediaRole(ctx context.Context, role string, top topology.Topology, rep *report.Client, reg *prometheus.Registry,
	logger log.Logger, stdout io.Writer, f mediaFlags) error {
	switch role {
	case "up":
		st, err := stack.Start(ctx, top, rep, logger)
		if err != nil {
			return err
		}
		defer st.Close(context.Background())
		st.Reg.MustRegister(rep.Collectors()...)
		if slices.Contains(st.Generated, topology.NeedPushToken) {
			// Outside broadcasters (ffmpeg, OBS) need it to ask /v1/push.
			fmt.Fprintf(stdout, "  push token for this run (set scheduler.push_token or $%s to choose it): %s\n", topology.EnvPushToken, st.Top.Scheduler.PushToken)
		}
		fmt.Fprintf(stdout, "lastmile media is up: %d rooms, %d edges\n  scheduler: %s   (GET /v1/schedule, /v1/push with the push token, /healthz)\n  admin:     %s/metrics\n  ingest:    rtmp://%s/live\n  origin:    http://%s/live/<stream>.flv\n  dns:       %s (udp)\n  logs to:   %s\n",
			len(top.Rooms), len(st.Edges), st.SchedURL, st.AdminURL, st.IngestAddr, st.OriginHTTP, st.DNSAddr, top.Collector.URL)
		if top.Players.Count > 0 {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := st.WaitLive(wctx)
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  audience:  %d players arriving over %s, watching %s each\n", top.Players.Count, top.Players.Ramp, top.Players.Watch)
			var mu sync.Mutex
			done, failed := 0, 0
			go st.RunAudience(ctx, func(v stack.Viewer, r player.Result) {
				mu.Lock()
				defer mu.Unlock()
				done++
				if !r.FirstFrame {
					failed++
				}
				if done == top.Players.Count {
					fmt.Fprintf(stdout, "  audience done: %d plays, %d without a first frame\n", done, failed)
				}
			})
		}
		<-ctx.Done()
		return nil
	case "play":
		sched := f.schedURL
		if sched == "" {
			sched = "http://" + top.SchedulerListen
		}
		room := f.room
		if room == "" && len(top.Rooms) > 0 {
			room = top.Rooms[0].Name
		}
		res := player.Play(ctx, player.Config{SchedulerURL: sched, Room: room, DeviceID: f.device, Region: f.region,
			ISP: f.isp, AppVersion: f.appVersion, Rendition: f.rendition, Format: f.format,
			Resolver: dns.Resolver(top.DNSListen), Reporter: rep, Duration: f.watch, HeartbeatEvery: 10 * time.Second})
		fmt.Fprintf(stdout, "session %s: first frame %v", res.SessionID, res.FirstFrame)
		if res.FirstFrame {
			fmt.Fprintf(stdout, " in %d ms (dns %d, connect %d, first packet %d, video %d, decode %d, render %d)",
				res.FirstFrameMs["total"], res.FirstFrameMs["dns"], res.FirstFrameMs["tcp_connect"], res.FirstFrameMs["tcp_first_packet"],
				res.FirstFrameMs["video_first_packet"], res.FirstFrameMs["first_decode"], res.FirstFrameMs["first_render"])
		}
		fmt.Fprintf(stdout, "; edge %s (%s); stalls %d (%d ms); stop code %d %s\n", res.Node, res.CDN, res.Stalls, res.StallMs, res.Code, res.Reason)
		if res.Code != 0 {
			return fmt.Errorf("play ended with code %d: %s", res.Code, res.Reason)
		}
		return nil
	case "scheduler":
		svc, err := scheduler.New(top.Scheduler, logger)
		if err != nil {
			return err
		}
		reg.MustRegister(svc.Collectors()...)
		mux := healthMux()
		mux.Handle("/v1/", svc.Handler())
		addr, err := serveAdmin(ctx, top.SchedulerListen, mux)
		if err != nil {
			return fmt.Errorf("scheduler: %w", err)
		}
		admin, err := serveAdmin(ctx, f.adminAddr(top.SchedulerAdmin), adminMux(reg))
		if err != nil {
			return fmt.Errorf("scheduler admin: %w", err)
		}
		fmt.Fprintf(stdout, "lastmile media scheduler is up: http://%s (GET /v1/schedule, /v1/push with the push token), admin http://%s\n", addr, admin)
	case "dns":
		srv := &dns.Server{Records: map[string][]net.IP{}, Logger: logger}
		for _, e := range top.Edges() {
			srv.SetRecord(e.Host, net.ParseIP(top.EdgeIP))
		}
		reg.MustRegister(srv.Collectors()...)
		addr, err := srv.Start(top.DNSListen)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		defer srv.Close()
		admin, err := serveAdmin(ctx, f.adminAddr(top.DNSHTTP), adminMux(reg))
		if err != nil {
			return fmt.Errorf("dns admin: %w", err)
		}
		fmt.Fprintf(stdout, "lastmile media dns is up: %s (udp), %d edge hosts, admin http://%s\n", addr, len(top.Edges()), admin)
	case "ingest":
		srv := ingest.New(ingest.Config{Listen: top.Ingest.Listen, Node: top.Ingest.Node, Region: top.Ingest.Region,
			Secret: top.Scheduler.Secret, MaxSignTTL: top.Scheduler.MaxSignTTL, Origin: "rtmp://" + top.Origin.RTMP}, rep, logger)
		reg.MustRegister(srv.Collectors()...)
		addr, err := srv.Start()
		if err != nil {
			return err
		}
		defer srv.Close(context.Background())
		admin, err := serveAdmin(ctx, f.adminAddr(top.Ingest.HTTP), adminMux(reg))
		if err != nil {
			return fmt.Errorf("ingest admin: %w", err)
		}
		fmt.Fprintf(stdout, "lastmile media ingest is up: rtmp://%s/live, admin http://%s\n", addr, admin)
	case "origin":
		srv := origin.New(origin.Config{RTMPListen: top.Origin.RTMP, HTTPListen: top.Origin.HTTP, Node: top.Origin.Node,
			Region: top.Origin.Region, Renditions: top.Scheduler.Renditions, Transcode: top.Origin.Transcode}, rep, logger)
		reg.MustRegister(srv.Collectors()...)
		r, h, err := srv.Start(healthMux())
		if err != nil {
			return err
		}
		defer srv.Close(context.Background())
		admin, err := serveAdmin(ctx, f.adminAddr(top.Origin.Admin), adminMux(reg))
		if err != nil {
			return fmt.Errorf("origin admin: %w", err)
		}
		fmt.Fprintf(stdout, "lastmile media origin is up: rtmp://%s, http://%s, admin http://%s\n", r, h, admin)
	case "edge":
		var node *topology.EdgeNode
		for _, e := range top.Edges() {
			if e.Node == f.node {
				node = &e
			}
		}
		if node == nil {
			return fmt.Errorf("edge: --node %q is not an edge of the topology", f.node)
		}
		cfg := edge.Config{Listen: net.JoinHostPort(top.EdgeIP, fmt.Sprint(node.Port)), Node: node.Node, Region: node.Region, CDN: node.CDN,
			Secret: top.Scheduler.Secret, MaxSignTTL: top.Scheduler.MaxSignTTL, Origin: "http://" + top.Origin.HTTP, QuickStart: top.Edge.For(node.Node).QuickStart,
			CORSOrigins: top.Edge.CORSOrigins}
		cfg.Stream.CacheGOPs, cfg.Stream.QueueBytes = top.Edge.For(node.Node).CacheGOPs, top.Edge.QueueBytes
		srv := edge.New(cfg, rep, logger)
		reg.MustRegister(srv.Collectors()...)
		addr, err := srv.Start(healthMux())
		if err != nil {
			return err
		}
		defer srv.Close(context.Background())
		admin, err := serveAdmin(ctx, f.adminAddr("127.0.0.1:0"), adminMux(reg))
		if err != nil {
			return fmt.Errorf("edge admin: %w", err)
		}
		fmt.Fprintf(stdout, "lastmile media edge %s is up: http://%s/live/<stream>.flv, admin http://%s\n", node.Node, addr, admin)
	case "publish":
		room := f.room
		if room == "" && len(top.Rooms) > 0 {
			room = top.Rooms[0].Name
		}
		bitrate := 2000
		for _, r := range top.Rooms {
			if r.Name == room {
				bitrate = r.BitrateKbps
			}
		}
		sched := f.schedURL
		if sched == "" {
			sched = "http://" + top.SchedulerListen
		}
		admin, err := serveAdmin(ctx, f.adminAddr("127.0.0.1:0"), adminMux(reg))
		if err != nil {
			return fmt.Errorf("publish admin: %w", err)
		}
		fmt.Fprintf(stdout, "lastmile media publish is up: room %s at %d kbit/s, admin http://%s\n", room, bitrate, admin)
		p := publisher.New(publisher.Config{SchedulerURL: sched, PushToken: top.Scheduler.PushToken, Room: room, PushURL: f.pushURL, BitrateKbps: bitrate}, rep, logger)
		if code := p.Run(ctx); code != publisher.CodeOK {
			return fmt.Errorf("push ended with code %d", code)
		}
		return nil
	}
	<-ctx.Done()
	return nil
}

func withFlags(mf mediaFlags, node, room, pushURL, schedURL string) mediaFlags {
	mf.node, mf.room, mf.pushURL, mf.schedURL = node, room, pushURL, schedURL
	return mf
}

func mediaScenarioMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile media scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenario", "baseline", "built-in scenario `NAME` or a scenario FILE")
	collector := fs.String("collector", "http://127.0.0.1:8080", "collector base `URL`")
	key := fs.String("app-key", "dev-key", "collector app key")
	labels := fs.String("labels", "labels.json", "labels `FILE` to write (the ground truth, JSON)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	dry := fs.Bool("dry-faults", false, "label the faults but inject none (to check that a detector notices their absence)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	sc, logger, err := scenarioSetup(*scen, *logLevel, "media-scenario", stderr)
	if err != nil {
		fmt.Fprintln(stderr, "lastmile media scenario:", err)
		return 2
	}
	sc.DryFaults = *dry
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "scenario %s: %s (%s)\n", sc.Name, sc.Description, sc.Duration)
	_, rs, err := runScenario(ctx, sc, strings.TrimRight(*collector, "/"), *key, *labels, stdout, logger, func(st *stack.Stack, _, _ []string) {
		fmt.Fprintf(stdout, "streaming: scheduler %s\n", st.SchedURL)
	})
	if err != nil {
		fmt.Fprintln(stderr, "lastmile media scenario:", err)
		return 1
	}
	verb := "done"
	if ctx.Err() != nil {
		verb = "stopped (Ctrl-C)"
	}
	fmt.Fprintf(stdout, "scenario %s %s: %d events sent, %d dropped, %d rejected; labels in %s\n", sc.Name, verb, rs.Sent, rs.Dropped, rs.Rejected, *labels)
	return 0
}
