// Package stack starts a whole media topology in one process: the DNS
// server, the scheduler, ingest, origin, every edge, the built-in
// publishers and (with RunAudience) the players. `lastmile media up` is a
// thin command around it, and tests use it to stream for real.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lastmile-qoe/lastmile/media/dns"
	"github.com/lastmile-qoe/lastmile/media/edge"
	"github.com/lastmile-qoe/lastmile/media/ingest"
	"github.com/lastmile-qoe/lastmile/media/origin"
	"github.com/lastmile-qoe/lastmile/media/publisher"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
	"github.com/lastmile-qoe/lastmile/media/topology"
)

// Reporter takes every component's log events.
type Reporter interface{ Log(report.Event) }

// Stack is a running topology.
type Stack struct {
	Top topology.Topology
	// Generated names the secrets Start drew at random (topology.Secrets).
	Generated []string
	Rep       Reporter
	logger    log.Logger
	Reg       *prometheus.Registry

	DNS     *dns.Server
	DNSAddr net.Addr
	// ISPDNS are the resolvers of each ISP of the audience (players of an
	// ISP resolve through its own), so DNS faults can hit one ISP.
	ISPDNS     map[string]*dns.Server
	ispDNSAddr map[string]string
	Scheduler  *scheduler.Service
	SchedURL   string
	// AdminURL serves the stack's /metrics and /healthz (SchedulerAdmin).
	AdminURL   string
	Ingest     *ingest.Server
	IngestAddr net.Addr
	Origin     *origin.Server
	OriginHTTP net.Addr
	Edges      map[string]*edge.Server // by node
	Publishers map[string]*publisher.Publisher

	schedSrv *http.Server
	adminSrv *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Start brings up every server of top and starts the publishers. Ports of
// 0 in top are picked by the system; the Addr fields say which. rep gets
// every log event. An empty signing secret or push token is drawn at random
// (Generated says which; Top holds them): every signer and verifier of the
// stack is in this process.
func Start(ctx context.Context, top topology.Topology, rep Reporter, logger log.Logger) (st *Stack, err error) {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	gen, err := top.Secrets(func(string) string { return "" }, true)
	if err != nil {
		return nil, err
	}
	if len(gen) > 0 {
		level.Info(logger).Log("msg", "random for this run, as none was configured", "generated", strings.Join(gen, ","))
	}
	s := &Stack{Top: top, Rep: rep, logger: logger, Reg: prometheus.NewRegistry(), Generated: gen,
		Edges: map[string]*edge.Server{}, Publishers: map[string]*publisher.Publisher{}}
	defer func() {
		if err != nil {
			s.Close(context.Background())
		}
	}()
	reg := func(cs ...prometheus.Collector) {
		for _, c := range cs {
			s.Reg.MustRegister(c)
		}
	}

	// The edge nodes; they start once the origin's address is known, and
	// their ports go into the scheduler's config and DNS.
	s.DNS = &dns.Server{Records: map[string][]net.IP{}, Logger: logger}
	edgeIP := net.ParseIP(top.EdgeIP)
	for ci := range top.Scheduler.CDNs {
		c := &top.Scheduler.CDNs[ci]
		for ei := range c.Edges {
			e := &c.Edges[ei]
			s.Edges[e.Node] = nil
		}
	}

	// Origin.
	s.Origin = origin.New(origin.Config{RTMPListen: top.Origin.RTMP, HTTPListen: top.Origin.HTTP, Node: top.Origin.Node,
		Region: top.Origin.Region, Renditions: top.Scheduler.Renditions, Transcode: top.Origin.Transcode}, rep, log.With(logger, "role", "origin"))
	mux := http.NewServeMux()
	rtmpAddr, httpAddr, err := s.Origin.Start(mux)
	if err != nil {
		return nil, err
	}
	s.OriginHTTP = httpAddr
	reg(s.Origin.Collectors()...)

	// Ingest relays to the origin.
	s.Ingest = ingest.New(ingest.Config{Listen: top.Ingest.Listen, Node: top.Ingest.Node, Region: top.Ingest.Region,
		Secret: top.Scheduler.Secret, MaxSignTTL: top.Scheduler.MaxSignTTL, Origin: "rtmp://" + rtmpAddr.String()}, rep, log.With(logger, "role", "ingest"))
	if s.IngestAddr, err = s.Ingest.Start(); err != nil {
		return nil, err
	}
	reg(s.Ingest.Collectors()...)
	if strings.HasPrefix(top.Scheduler.IngestURL, "rtmp://") {
		// The scheduler hands out the address ingest really got.
		app := top.Scheduler.IngestURL[strings.LastIndexByte(top.Scheduler.IngestURL, '/'):]
		s.Top.Scheduler.IngestURL = "rtmp://" + s.IngestAddr.String() + app
	}

	for node := range s.Edges {
		e := edgeByNode(&s.Top, node)
		cfg := edge.Config{Listen: net.JoinHostPort(top.EdgeIP, fmt.Sprint(e.Port)), Node: node, Region: e.Region, CDN: e.CDN,
			Secret: top.Scheduler.Secret, MaxSignTTL: top.Scheduler.MaxSignTTL, Origin: "http://" + httpAddr.String(), QuickStart: top.Edge.For(e.Node).QuickStart,
			CORSOrigins: top.Edge.CORSOrigins}
		cfg.Stream.CacheGOPs, cfg.Stream.QueueBytes = top.Edge.For(e.Node).CacheGOPs, top.Edge.QueueBytes
		srv := edge.New(cfg, rep, log.With(logger, "role", "edge", "node", node))
		s.Edges[node] = srv
		addr, err := srv.Start(nil)
		if err != nil {
			return nil, err
		}
		reg(srv.Collectors()...)
		port := addr.(*net.TCPAddr).Port
		setEdgePort(&s.Top, node, port)
		s.DNS.SetRecord(e.Host, edgeIP)
	}
	if s.DNSAddr, err = s.DNS.Start(top.DNSListen); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	s.ISPDNS, s.ispDNSAddr = map[string]*dns.Server{}, map[string]string{}
	for _, isp := range top.Players.ISPs {
		d := &dns.Server{Records: map[string][]net.IP{}, Logger: logger}
		for _, e := range s.Top.Edges() {
			d.SetRecord(e.Host, edgeIP)
		}
		addr, err := d.Start("127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dns of %s: %w", isp, err)
		}
		s.ISPDNS[isp], s.ispDNSAddr[isp] = d, addr.String()
	}
	reg(s.DNS.Collectors()...)

	// Scheduler, with the real ports.
	if s.Scheduler, err = scheduler.New(s.Top.Scheduler, log.With(logger, "role", "scheduler")); err != nil {
		return nil, err
	}
	reg(s.Scheduler.Collectors()...)
	healthz := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }
	smux := http.NewServeMux()
	smux.Handle("/v1/", s.Scheduler.Handler())
	smux.HandleFunc("/healthz", healthz)
	ln, err := net.Listen("tcp", top.SchedulerListen)
	if err != nil {
		return nil, fmt.Errorf("scheduler: listen %s: %w", top.SchedulerListen, err)
	}
	s.SchedURL = "http://" + ln.Addr().String()
	s.schedSrv = &http.Server{Handler: smux, ReadHeaderTimeout: 10 * time.Second}
	go s.schedSrv.Serve(ln)
	// The stack's metrics on a listener of their own (loopback by default),
	// not on the port viewers and broadcasters ask.
	amux := http.NewServeMux()
	amux.Handle("/metrics", promhttp.HandlerFor(s.Reg, promhttp.HandlerOpts{}))
	amux.HandleFunc("/healthz", healthz)
	aln, err := net.Listen("tcp", top.SchedulerAdmin)
	if err != nil {
		return nil, fmt.Errorf("scheduler admin: listen %s: %w", top.SchedulerAdmin, err)
	}
	s.AdminURL = "http://" + aln.Addr().String()
	s.adminSrv = &http.Server{Handler: amux, ReadHeaderTimeout: 10 * time.Second}
	go s.adminSrv.Serve(aln)

	// Publishers.
	pctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, room := range top.Rooms {
		p := publisher.New(publisher.Config{SchedulerURL: s.SchedURL, PushToken: top.Scheduler.PushToken, Room: room.Name, BitrateKbps: room.BitrateKbps,
			Region: top.Ingest.Region, AppVersion: "broadcaster-1.0", OS: "linux", Network: "ethernet"}, rep,
			log.With(logger, "role", "publisher", "room", room.Name))
		s.Publishers[room.Name] = p
		s.wg.Go(func() {
			for pctx.Err() == nil {
				p.Run(pctx)
				select { // a dropped push comes back, as a broadcaster's app would
				case <-pctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
		})
	}
	level.Info(logger).Log("msg", "media stack up", "scheduler", s.SchedURL, "ingest", s.IngestAddr, "origin", httpAddr,
		"dns", s.DNSAddr, "edges", len(s.Edges), "rooms", len(top.Rooms))
	return s, nil
}

// WaitLive waits until every room is live on the origin.
func (s *Stack) WaitLive(ctx context.Context) error {
	for {
		live := map[string]bool{}
		for _, n := range s.Origin.Streams() {
			live[n] = true
		}
		all := true
		for _, r := range s.Top.Rooms {
			all = all && live[r.Name]
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rooms not live on the origin: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops publishers and servers.
func (s *Stack) Close(ctx context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	var errs []error
	for _, e := range s.Edges {
		if e != nil {
			errs = append(errs, e.Close(ctx))
		}
	}
	if s.Ingest != nil {
		errs = append(errs, s.Ingest.Close(ctx))
	}
	if s.Origin != nil {
		errs = append(errs, s.Origin.Close(ctx))
	}
	if s.schedSrv != nil {
		errs = append(errs, s.schedSrv.Shutdown(ctx))
	}
	if s.adminSrv != nil {
		errs = append(errs, s.adminSrv.Shutdown(ctx))
	}
	if s.DNS != nil {
		s.DNS.Close()
	}
	for _, d := range s.ISPDNS {
		d.Close()
	}
	return errors.Join(errs...)
}

// ResolverAddr is the DNS server players of isp use.
func (s *Stack) ResolverAddr(isp string) string {
	if a, ok := s.ispDNSAddr[isp]; ok {
		return a
	}
	return s.DNSAddr.String()
}

func edgeByNode(t *topology.Topology, node string) topology.EdgeNode {
	for _, e := range t.Edges() {
		if e.Node == node {
			return e
		}
	}
	return topology.EdgeNode{}
}

func setEdgePort(t *topology.Topology, node string, port int) {
	for ci := range t.Scheduler.CDNs {
		for ei := range t.Scheduler.CDNs[ci].Edges {
			if e := &t.Scheduler.CDNs[ci].Edges[ei]; e.Node == node {
				e.Port = port
			}
		}
	}
}
