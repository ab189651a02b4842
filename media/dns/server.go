// Package dns is the stack's own resolver: a tiny authoritative DNS server
// over UDP that answers A (and AAAA) queries for the CDN edge names, so that a
// player's DNS phase of first-frame time is a real lookup, and can be made
// slow or fail on purpose (SetFault) to reproduce DNS incidents.
//
// Usage:
//
//	s := &dns.Server{Records: map[string][]net.IP{
//		"edge-a-north-1.cdn-a.lastmile.test": {net.IPv4(127, 0, 0, 1)},
//	}}
//	addr, err := s.Start("127.0.0.1:0")
//	r := dns.Resolver(addr.String())
//	ips, err := r.LookupIPAddr(ctx, "edge-a-north-1.cdn-a.lastmile.test")
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Close.
var ErrServerClosed = errors.New("dns: server closed")

// maxInFlight bounds concurrent queries (delayed ones hold a slot); past it
// queries are dropped, as an overloaded server would.
const maxInFlight = 4096

// Fault makes queries for names under Suffix misbehave.
type Fault struct {
	// Suffix selects names equal to it or ending in "."+Suffix,
	// case-insensitively; "" selects every name.
	Suffix string
	// Delay holds the answer back (a slow resolver).
	Delay time.Duration
	// Fail answers SERVFAIL (after Delay).
	Fail bool
	// Drop sends no answer at all: the client times out.
	Drop bool
}

// Stats counts queries by outcome since the server was created.
type Stats struct {
	Queries   uint64 // packets received
	Answered  uint64 // NOERROR with at least one address
	NoData    uint64 // NOERROR without an address (the name has none of that type)
	NXDomain  uint64 // unknown names
	ServFail  uint64 // injected failures
	Dropped   uint64 // no answer: injected drops, overload
	Malformed uint64 // unreadable packets (answered FORMERR when the header was readable)
	Refused   uint64 // questions of a class other than IN
	Delayed   uint64 // answers held back by a fault
}

// Server is an authoritative DNS server for a fixed set of names. Set Records
// before serving; change them at run time with SetRecord. The zero value
// answers NXDOMAIN to everything.
type Server struct {
	// Records maps names (plain or FQDN with a trailing dot, any case) to
	// their addresses. IPv4 addresses answer A queries, IPv6 ones AAAA.
	Records map[string][]net.IP
	Logger  log.Logger

	once    sync.Once
	mu      sync.RWMutex
	records map[string][]net.IP
	faults  map[string]Fault
	conns   map[net.PacketConn]struct{}
	closed  bool
	done    chan struct{}
	slots   chan struct{}
	wg      sync.WaitGroup

	queries, answered, nodata, nxdomain, servfail, dropped, malformed, refused, delayed atomic.Uint64

	metric *prometheus.CounterVec
}

func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

func (s *Server) init() {
	s.once.Do(func() {
		s.records = make(map[string][]net.IP, len(s.Records))
		for n, ips := range s.Records {
			s.records[normalize(n)] = append([]net.IP(nil), ips...)
		}
		s.faults = map[string]Fault{}
		s.conns = map[net.PacketConn]struct{}{}
		s.done = make(chan struct{})
		s.slots = make(chan struct{}, maxInFlight)
		if s.Logger == nil {
			s.Logger = log.NewNopLogger()
		}
		s.metric = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_dns_queries_total",
			Help: "Queries to the stack's DNS server, by result: noerror, nodata, nxdomain, servfail, dropped, malformed, refused.",
		}, []string{"result"})
	})
}

// SetRecord sets (or, with no ips, removes) the addresses of name.
func (s *Server) SetRecord(name string, ips ...net.IP) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ips) == 0 {
		delete(s.records, normalize(name))
		return
	}
	s.records[normalize(name)] = append([]net.IP(nil), ips...)
}

// SetFault adds f, replacing any fault with the same Suffix. When several
// faults match a name, the one with the longest suffix applies.
func (s *Server) SetFault(f Fault) {
	s.init()
	f.Suffix = normalize(f.Suffix)
	s.mu.Lock()
	s.faults[f.Suffix] = f
	s.mu.Unlock()
	level.Info(s.Logger).Log("msg", "dns fault set", "suffix", f.Suffix, "delay", f.Delay, "fail", f.Fail, "drop", f.Drop)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.init()
	s.mu.Lock()
	clear(s.faults)
	s.mu.Unlock()
	level.Info(s.Logger).Log("msg", "dns faults cleared")
}

// fault returns the fault for name, if any.
func (s *Server) fault(name string) (Fault, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	best, found := Fault{}, false
	for suf, f := range s.faults {
		if suf != "" && name != suf && !strings.HasSuffix(name, "."+suf) {
			continue
		}
		if !found || len(suf) > len(best.Suffix) {
			best, found = f, true
		}
	}
	return best, found
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Queries: s.queries.Load(), Answered: s.answered.Load(), NoData: s.nodata.Load(),
		NXDomain: s.nxdomain.Load(), ServFail: s.servfail.Load(), Dropped: s.dropped.Load(),
		Malformed: s.malformed.Load(), Refused: s.refused.Load(), Delayed: s.delayed.Load(),
	}
}

// Collectors returns the server's Prometheus metrics.
func (s *Server) Collectors() []prometheus.Collector {
	s.init()
	return []prometheus.Collector{s.metric}
}

func (s *Server) count(c *atomic.Uint64, result string) {
	c.Add(1)
	s.metric.WithLabelValues(result).Inc()
}

// Start listens on the UDP address addr ("127.0.0.1:0" picks a port) and
// serves in the background until Close. It returns the address bound.
func (s *Server) Start(addr string) (net.Addr, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dns: listen %s: %w", addr, err)
	}
	if err := s.register(pc); err != nil {
		return nil, err
	}
	go func() {
		if err := s.serve(pc); err != nil && !errors.Is(err, ErrServerClosed) {
			level.Error(s.Logger).Log("msg", "dns server stopped", "addr", pc.LocalAddr(), "err", err)
		}
	}()
	return pc.LocalAddr(), nil
}

// ListenAndServe listens on the UDP address addr and serves until Close.
func (s *Server) ListenAndServe(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("dns: listen %s: %w", addr, err)
	}
	return s.Serve(pc)
}

// Serve answers queries arriving on pc until Close, which also closes pc.
// It always returns a non-nil error: ErrServerClosed after Close.
func (s *Server) Serve(pc net.PacketConn) error {
	if err := s.register(pc); err != nil {
		return err
	}
	return s.serve(pc)
}

func (s *Server) register(pc net.PacketConn) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		pc.Close()
		return ErrServerClosed
	}
	s.conns[pc] = struct{}{}
	return nil
}

func (s *Server) serve(pc net.PacketConn) error {
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dns: read %s: %w", pc.LocalAddr(), err)
		}
		s.queries.Add(1)
		select {
		case s.slots <- struct{}{}:
		default:
			s.count(&s.dropped, "dropped")
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer func() { <-s.slots; s.wg.Done() }()
			s.handle(pc, pkt, addr)
		}()
	}
}

// handle answers one packet. Each query runs on its own goroutine so that a
// delayed name does not hold up the others.
func (s *Server) handle(pc net.PacketConn, pkt []byte, addr net.Addr) {
	resp := s.respond(pkt, addr)
	if resp != nil {
		_, _ = pc.WriteTo(resp, addr) // UDP: a lost answer is the client's timeout
	}
}

// respond returns the answer to pkt, or nil for no answer.
func (s *Server) respond(pkt []byte, addr net.Addr) []byte {
	h, q, err := parseQuery(pkt)
	if err != nil {
		s.count(&s.malformed, "malformed")
		level.Debug(s.Logger).Log("msg", "malformed dns packet", "client", addr, "len", len(pkt), "err", err)
		switch {
		case errors.Is(err, errShort), errors.Is(err, errResponse):
			return nil // never answer a response: that is how loops start
		case errors.Is(err, errOpcode):
			return buildResponse(h, question{}, rcodeNotImp, nil)
		default:
			return buildResponse(h, question{}, rcodeFormErr, nil)
		}
	}
	if f, ok := s.fault(q.name); ok {
		if f.Delay > 0 {
			s.delayed.Add(1)
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return nil
			}
		}
		if f.Drop {
			s.count(&s.dropped, "dropped")
			return nil
		}
		if f.Fail {
			s.count(&s.servfail, "servfail")
			return buildResponse(h, q, rcodeServFail, nil)
		}
	}
	if q.class != classIN && q.class != classANY {
		s.count(&s.refused, "refused")
		return buildResponse(h, q, rcodeRefused, nil)
	}
	s.mu.RLock()
	ips, known := s.records[q.name]
	s.mu.RUnlock()
	if !known {
		s.count(&s.nxdomain, "nxdomain")
		return buildResponse(h, q, rcodeNXDomain, nil)
	}
	resp := buildResponse(h, q, rcodeSuccess, ips)
	if resp[6] == 0 && resp[7] == 0 {
		s.count(&s.nodata, "nodata")
	} else {
		s.count(&s.answered, "noerror")
	}
	return resp
}

// Close stops every Serve, closes their connections and waits for queries
// in progress (delayed ones are abandoned unanswered).
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var first error
	for pc := range s.conns {
		if err := pc.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return first
}

// Resolver returns a pure-Go resolver that sends every query to the DNS
// server at addr (host:port) over UDP, whatever /etc/resolv.conf says. Names
// in /etc/hosts (localhost) are still answered from there.
func Resolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}
