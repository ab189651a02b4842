package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sink is a fake collector that records every event it takes, in arrival
// order. respond decides each request's answer; nil accepts everything.
type sink struct {
	mu       sync.Mutex
	events   []map[string]any
	requests []time.Time
	headers  []http.Header
	respond  func(n int, events []map[string]any, w http.ResponseWriter) bool // true: handled (not recorded)
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rd = gz
	}
	var evs []map[string]any
	sc := bufio.NewScanner(rd)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			http.Error(w, "bad line: "+err.Error(), 400)
			return
		}
		evs = append(evs, ev)
	}
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, time.Now())
	s.headers = append(s.headers, r.Header.Clone())
	respond := s.respond
	s.mu.Unlock()
	if respond != nil && respond(n, evs, w) {
		return
	}
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.mu.Unlock()
	fmt.Fprintf(w, `{"accepted":%d,"sampled_out":0,"rejected":[],"request_id":"r%d"}`, len(evs), n)
}

func (s *sink) seqs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, len(s.events))
	for i, ev := range s.events {
		out[i] = int(ev["seq"].(float64))
	}
	return out
}

func (s *sink) nreq() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func newSink(t *testing.T, respond func(int, []map[string]any, http.ResponseWriter) bool) (*sink, *httptest.Server) {
	s := &sink{respond: respond}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantSeqs(t *testing.T, got []int, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("collector got %d events, want %d: %v", len(got), n, got)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("event %d has seq %d: order lost or duplicates: %v", i, v, got)
		}
	}
}

func counter(t *testing.T, c *Client, name, outcome string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if outcome == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// The collector answers 503 first (with Retry-After, then without): the
// client waits as told, retries, and delivers every event once, in order,
// including events logged while it was retrying.
func TestRetryOn503KeepsOrderAndLosesNothing(t *testing.T) {
	firstSeen := make(chan struct{})
	var once sync.Once
	s, srv := newSink(t, func(n int, _ []map[string]any, w http.ResponseWriter) bool {
		once.Do(func() { close(firstSeen) })
		switch n {
		case 0:
			w.Header().Set("Retry-After", "1")
		case 1:
		default:
			return false
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"event bus unavailable, nothing was stored: retry later"}`)
		return true
	})
	c := New(Config{URL: srv.URL, AppKey: "k1", MaxBatch: 10, FlushInterval: 10 * time.Millisecond})
	for i := 0; i < 15; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	<-firstSeen
	for i := 15; i < 35; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	if err := c.Flush(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, s.seqs(), 35)
	st := c.Stats()
	if st.Sent != 35 || st.Dropped != 0 || st.Retries != 2 || st.Queued != 0 || !strings.Contains(st.LastError, "503") {
		t.Errorf("stats %+v", st)
	}
	s.mu.Lock()
	gap := s.requests[1].Sub(s.requests[0])
	hdr := s.headers[0]
	s.mu.Unlock()
	if gap < time.Second {
		t.Errorf("retried %v after a Retry-After: 1 answer", gap)
	}
	if hdr.Get("X-Lastmile-Key") != "k1" {
		t.Errorf("app key header %q", hdr.Get("X-Lastmile-Key"))
	}
	if got := counter(t, c, "lastmile_report_retries_total", ""); got != 2 {
		t.Errorf("retries metric %v", got)
	}
	if got := counter(t, c, "lastmile_report_events_total", "sent"); got != 35 {
		t.Errorf("sent metric %v", got)
	}
	if err := c.Close(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// Connections cut before an answer are network errors: retried, not lost.
func TestNetworkErrorsAreRetried(t *testing.T) {
	s, srv := newSink(t, func(n int, _ []map[string]any, w http.ResponseWriter) bool {
		if n >= 3 {
			return false
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	c := New(Config{URL: srv.URL, AppKey: "k1", Gzip: true})
	for i := 0; i < 7; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	if err := c.Close(ctxT(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, s.seqs(), 7)
	if st := c.Stats(); st.Retries != 3 || st.Sent != 7 {
		t.Errorf("stats %+v", st)
	}
}

// While the collector is stuck, the buffer fills and new events are dropped
// and counted; what was buffered still goes once the collector answers.
func TestBufferFullDropsNewEvents(t *testing.T) {
	release := make(chan struct{})
	s, srv := newSink(t, func(int, []map[string]any, http.ResponseWriter) bool {
		<-release
		return false
	})
	c := New(Config{URL: srv.URL, AppKey: "k1", MaxBatch: 5, MaxBuffered: 10, FlushInterval: 5 * time.Millisecond})
	for i := 0; i < 25; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	st := c.Stats()
	if st.Dropped != 15 || st.Queued != 10 || !strings.Contains(st.LastError, "buffer full") {
		t.Errorf("stats while stuck %+v", st)
	}
	close(release)
	if err := c.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, s.seqs(), 10)
	if got := counter(t, c, "lastmile_report_events_total", "dropped"); got != 15 {
		t.Errorf("dropped metric %v", got)
	}
}

// A 200 with per-event rejections: the rest count as sent, the rejected are
// counted and not retried.
func TestPerEventRejectionsCounted(t *testing.T) {
	s, srv := newSink(t, func(n int, evs []map[string]any, w http.ResponseWriter) bool {
		fmt.Fprintf(w, `{"accepted":%d,"sampled_out":1,"rejected":[
		  {"index":1,"code":"out_of_range","field":"dns_ms","reason":"dns_ms -5 ms is out of range [0, 3.6e+06]"},
		  {"index":3,"code":"unknown_log_type","field":"log_type","reason":"unknown log_type \"play_strat\""}],"request_id":"x"}`, len(evs)-3)
		return true
	})
	c := New(Config{URL: srv.URL, AppKey: "k1"})
	for i := 0; i < 6; i++ {
		c.Log(Event{"log_type": "first_frame", "seq": i})
	}
	if err := c.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Rejected != 2 || st.Sent != 4 || st.SampledOut != 1 || st.Dropped != 0 || st.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(st.LastError, "out_of_range") || !strings.Contains(st.LastError, "dns_ms") {
		t.Errorf("last error does not carry the first reason: %q", st.LastError)
	}
	if got := counter(t, c, "lastmile_report_events_total", "rejected"); got != 2 {
		t.Errorf("rejected metric %v", got)
	}
	if n := s.nreq(); n != 1 {
		t.Errorf("%d requests; rejected events must not be retried", n)
	}
}

// 401 (bad key) is final: the batch is dropped, counted, and the error says why.
func TestUnauthorizedDropsBatch(t *testing.T) {
	s, srv := newSink(t, func(n int, _ []map[string]any, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"unknown app key","request_id":"x"}`)
		return true
	})
	c := New(Config{URL: srv.URL, AppKey: "wrong"})
	for i := 0; i < 4; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	if err := c.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Dropped != 4 || st.Sent != 0 || st.Retries != 0 || !strings.Contains(st.LastError, "unknown app key") {
		t.Errorf("stats %+v", st)
	}
	if n := s.nreq(); n != 1 {
		t.Errorf("%d requests for a 401", n)
	}
}

// 413: the same events go again in smaller batches, in order.
func TestTooLargeSplitsBatch(t *testing.T) {
	s, srv := newSink(t, func(n int, evs []map[string]any, w http.ResponseWriter) bool {
		if len(evs) > 3 {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, `{"error":"batch too large","limit":"max_batch_events"}`)
			return true
		}
		return false
	})
	c := New(Config{URL: srv.URL, AppKey: "k1", MaxBatch: 10})
	for i := 0; i < 10; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	if err := c.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, s.seqs(), 10)
	if st := c.Stats(); st.Sent != 10 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Close posts what is buffered without waiting for the flush interval.
func TestCloseFlushes(t *testing.T) {
	s, srv := newSink(t, nil)
	c := New(Config{URL: srv.URL, AppKey: "k1", FlushInterval: time.Hour})
	for i := 0; i < 3; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	if err := c.Close(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, s.seqs(), 3)
	c.Log(Event{"log_type": "heartbeat", "seq": 3})
	if st := c.Stats(); st.Dropped != 1 || st.Sent != 3 {
		t.Errorf("event after Close: stats %+v", st)
	}
}

// Close against a dead collector gives up when its context ends, and says
// how many events were lost.
func TestCloseBoundedByContext(t *testing.T) {
	_, srv := newSink(t, func(int, []map[string]any, http.ResponseWriter) bool { return false })
	url := srv.URL
	srv.Close() // connection refused from now on
	c := New(Config{URL: url, AppKey: "k1", FlushInterval: time.Hour})
	for i := 0; i < 5; i++ {
		c.Log(Event{"log_type": "heartbeat", "seq": i})
	}
	start := time.Now()
	err := c.Close(ctxT(t, 300*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "5 events not delivered") {
		t.Fatalf("Close error %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Close took %v", time.Since(start))
	}
	if st := c.Stats(); st.Dropped != 5 || st.Queued != 0 || st.Retries == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEncodeAddsIDAndTimeWithoutTouchingEvent(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	tests := []struct {
		name   string
		ev     Event
		wantID string // "" means generated
		wantTS float64
	}{
		{"empty", Event{}, "", 1_700_000_000_123},
		{"fills both", Event{"log_type": "stall", "duration_ms": 5}, "", 1_700_000_000_123},
		{"keeps caller's", Event{"log_type": "stall", "event_id": "mine", "ts": 42}, "mine", 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.ev)
			b, err := encode(tt.ev, now)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %s", b)
			}
			if len(tt.ev) != before {
				t.Errorf("caller's event modified: %v", tt.ev)
			}
			id, _ := got["event_id"].(string)
			if tt.wantID != "" && id != tt.wantID || tt.wantID == "" && len(id) != 32 {
				t.Errorf("event_id %q in %s", id, b)
			}
			if got["ts"] != tt.wantTS {
				t.Errorf("ts %v in %s", got["ts"], b)
			}
			if len(got) != before+boolInt(tt.ev["event_id"] == nil)+boolInt(tt.ev["ts"] == nil) {
				t.Errorf("fields lost or added: %s", b)
			}
		})
	}
	a, _ := encode(Event{}, now)
	b, _ := encode(Event{}, now)
	if bytes.Equal(a, b) {
		t.Errorf("two events got the same id: %s", a)
	}
	if _, err := encode(Event{"bad": make(chan int)}, now); err == nil {
		t.Error("a channel value encoded")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second},
		{now.Add(-3 * time.Second).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
