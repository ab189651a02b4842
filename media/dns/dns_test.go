package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

const edge = "edge-a-north-1.cdn-a.lastmile.test"

func startServer(t *testing.T) (*Server, *net.Resolver) {
	t.Helper()
	s := &Server{Records: map[string][]net.IP{
		edge:                                  {net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2")},
		"Edge-B-South-1.cdn-b.lastmile.test.": {net.ParseIP("10.0.1.1")},
		"dual.lastmile.test":                  {net.ParseIP("10.0.2.1"), net.ParseIP("fd00::1")},
	}}
	addr, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, Resolver(addr.String())
}

func lookup(t *testing.T, r *net.Resolver, name string, timeout time.Duration) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := r.LookupIPAddr(ctx, name)
	var out []string
	for _, a := range addrs {
		out = append(out, a.IP.String())
	}
	slices.Sort(out)
	return out, err
}

func TestLookup(t *testing.T) {
	s, r := startServer(t)
	tests := []struct {
		name string
		want []string // nil: not found
	}{
		{edge, []string{"10.0.0.1", "10.0.0.2"}},
		{strings.ToUpper(edge), []string{"10.0.0.1", "10.0.0.2"}},
		{edge + ".", []string{"10.0.0.1", "10.0.0.2"}},
		{"edge-b-south-1.cdn-b.lastmile.test", []string{"10.0.1.1"}},
		{"dual.lastmile.test", []string{"10.0.2.1", "fd00::1"}},
		{"nosuch.cdn-a.lastmile.test", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lookup(t, r, tt.name, 5*time.Second)
			if tt.want == nil {
				var de *net.DNSError
				if !errors.As(err, &de) || !de.IsNotFound {
					t.Fatalf("lookup %s = %v, %v; want a not-found error", tt.name, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("lookup %s = %v, %v; want %v", tt.name, got, err, tt.want)
			}
		})
	}
	if st := s.Stats(); st.Answered == 0 || st.NXDomain == 0 || st.Queries == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSetRecordAtRuntime(t *testing.T) {
	s, r := startServer(t)
	s.SetRecord("new.lastmile.test", net.ParseIP("10.9.9.9"))
	if got, err := lookup(t, r, "new.lastmile.test", 5*time.Second); err != nil || !slices.Equal(got, []string{"10.9.9.9"}) {
		t.Fatalf("added record: %v %v", got, err)
	}
	s.SetRecord(edge)
	if _, err := lookup(t, r, edge, 5*time.Second); err == nil {
		t.Fatal("removed record still resolves")
	}
}

func TestFaultDelay(t *testing.T) {
	s, r := startServer(t)
	const delay = 150 * time.Millisecond
	s.SetFault(Fault{Suffix: "cdn-a.lastmile.test", Delay: delay})
	start := time.Now()
	got, err := lookup(t, r, edge, 5*time.Second)
	if err != nil || len(got) != 2 {
		t.Fatalf("delayed lookup: %v %v", got, err)
	}
	if el := time.Since(start); el < delay {
		t.Errorf("lookup took %v with a %v delay", el, delay)
	}
	if s.Stats().Delayed == 0 {
		t.Error("no delayed query counted")
	}
	s.ClearFaults()
	if _, err := lookup(t, r, edge, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestFaultFail(t *testing.T) {
	s, r := startServer(t)
	s.SetFault(Fault{Suffix: "lastmile.test", Fail: true})
	_, err := lookup(t, r, edge, 5*time.Second)
	var de *net.DNSError
	if !errors.As(err, &de) || de.IsNotFound {
		t.Fatalf("lookup under SERVFAIL: %v; want a DNS error other than not found", err)
	}
	if s.Stats().ServFail == 0 {
		t.Error("no SERVFAIL counted")
	}
	// A more specific fault wins: this name is slow but answers.
	s.SetFault(Fault{Suffix: "cdn-b.lastmile.test", Delay: time.Millisecond})
	if _, err := lookup(t, r, "edge-b-south-1.cdn-b.lastmile.test", 5*time.Second); err != nil {
		t.Fatalf("longest-suffix fault: %v", err)
	}
}

func TestFaultDrop(t *testing.T) {
	s, r := startServer(t)
	s.SetFault(Fault{Drop: true}) // every name
	_, err := lookup(t, r, edge, 300*time.Millisecond)
	if err == nil {
		t.Fatal("lookup answered while every query is dropped")
	}
	if s.Stats().Dropped == 0 {
		t.Error("no drop counted")
	}
}

func TestCloseStopsServe(t *testing.T) {
	s := &Server{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(pc) }()
	s.SetFault(Fault{Delay: time.Hour}) // a query in progress must not block Close
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(query(1, "x.test", typeA))
	for s.Stats().Delayed == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if err := s.Serve(pc); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// query builds a standard query for name.
func query(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, classIN)
}

// The wire answers a client would check: rcode, answer count, id echoed.
func TestRespondWire(t *testing.T) {
	s := &Server{Records: map[string][]net.IP{"a.test": {net.ParseIP("10.0.0.1")}, "six.test": {net.ParseIP("fd00::1")}}}
	s.init()
	many := make([]net.IP, 100)
	for i := range many {
		many[i] = net.IPv4(10, 1, 0, byte(i))
	}
	s.SetRecord("many.test", many...)
	withTail := append(query(7, "a.test", typeA), 0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0) // EDNS0 OPT
	withTail[11] = 1                                                                  // ARCOUNT
	notQuery := query(7, "a.test", typeA)
	notQuery[2] |= 0x80
	iquery := query(7, "a.test", typeA)
	iquery[2] |= 1 << 3
	pointer := append(query(7, "", typeA)[:12], 0xC0, 0x0C, 0, 1, 0, 1)
	chaos := query(7, "a.test", typeA)
	chaos[len(chaos)-1] = 3
	tests := []struct {
		name    string
		pkt     []byte
		noReply bool
		rcode   int
		answers int
	}{
		{"A", query(7, "a.test", typeA), false, rcodeSuccess, 1},
		{"A mixed case", query(7, "A.TeSt", typeA), false, rcodeSuccess, 1},
		{"AAAA of v4-only name", query(7, "a.test", typeAAAA), false, rcodeSuccess, 0},
		{"AAAA", query(7, "six.test", typeAAAA), false, rcodeSuccess, 1},
		{"ANY", query(7, "a.test", typeANY), false, rcodeSuccess, 1},
		{"MX", query(7, "a.test", 15), false, rcodeSuccess, 0},
		{"unknown", query(7, "b.test", typeA), false, rcodeNXDomain, 0},
		{"EDNS0 additional record ignored", withTail, false, rcodeSuccess, 1},
		{"answers cut to 512 bytes", query(7, "many.test", typeA), false, rcodeSuccess, 30},
		{"class CHAOS", chaos, false, rcodeRefused, 0},
		{"empty", nil, true, 0, 0},
		{"short header", []byte{0, 7, 1}, true, 0, 0},
		{"a response", notQuery, true, 0, 0},
		{"inverse query", iquery, false, rcodeNotImp, 0},
		{"no question", query(7, "a.test", typeA)[:12], false, rcodeFormErr, 0},
		{"name cut", query(7, "a.test", typeA)[:15], false, rcodeFormErr, 0},
		{"type cut", query(7, "a.test", typeA)[:21], false, rcodeFormErr, 0},
		{"compression pointer", pointer, false, rcodeFormErr, 0},
		{"label too long", append(query(7, "", typeA)[:12], 64), false, rcodeFormErr, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.respond(tt.pkt, nil)
			if tt.noReply {
				if resp != nil {
					t.Fatalf("answered %x", resp)
				}
				return
			}
			if len(resp) < 12 || len(resp) > maxUDP {
				t.Fatalf("answer of %d bytes", len(resp))
			}
			h, _ := parseHeader(resp)
			if h.id != 7 || !h.resp || h.flags&flagAA == 0 || int(h.flags&0xF) != tt.rcode || int(h.ancount) != tt.answers {
				t.Errorf("answer id %d flags %#04x an %d; want rcode %d and %d answers", h.id, h.flags, h.ancount, tt.rcode, tt.answers)
			}
		})
	}
}

func TestFaultMatching(t *testing.T) {
	s := &Server{}
	s.SetFault(Fault{Suffix: "CDN-A.lastmile.test.", Delay: 1})
	s.SetFault(Fault{Suffix: "north-1.cdn-a.lastmile.test", Delay: 2})
	tests := []struct {
		name string
		want time.Duration // 0: no fault
	}{
		{"cdn-a.lastmile.test", 1},
		{"edge.cdn-a.lastmile.test", 1},
		{"edge.north-1.cdn-a.lastmile.test", 2},
		{"xcdn-a.lastmile.test", 0},
		{"cdn-b.lastmile.test", 0},
	}
	for _, tt := range tests {
		f, ok := s.fault(tt.name)
		if ok != (tt.want != 0) || f.Delay != tt.want {
			t.Errorf("fault(%s) = %+v %v, want delay %v", tt.name, f, ok, tt.want)
		}
	}
	s.SetFault(Fault{Delay: 3})
	if f, _ := s.fault("other.test"); f.Delay != 3 {
		t.Errorf("catch-all fault not applied: %+v", f)
	}
	s.ClearFaults()
	if _, ok := s.fault("edge.cdn-a.lastmile.test"); ok {
		t.Error("fault left after ClearFaults")
	}
}

// Whatever arrives, the server does not panic, and any answer it makes is a
// well-formed header that fits in a UDP message.
func FuzzRespond(f *testing.F) {
	f.Add(query(1, edge, typeA))
	f.Add(query(2, "a.test", typeAAAA))
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63})
	s := &Server{Records: map[string][]net.IP{"a.test": {net.ParseIP("10.0.0.1"), net.ParseIP("fd00::1")}, edge: {net.ParseIP("10.0.0.2")}}}
	s.init()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, q, err := parseQuery(pkt)
		if err == nil && (len(q.name) > maxNameLen || len(q.raw) < 5) {
			t.Fatalf("parsed question %+v", q)
		}
		resp := s.respond(pkt, nil)
		if resp == nil {
			return
		}
		h, err := parseHeader(resp)
		if err != nil || !h.resp || len(resp) > maxUDP {
			t.Fatalf("bad answer %x: %v", resp, err)
		}
	})
}
