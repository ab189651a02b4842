package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// fakeProducer answers each Produce with fn, after the gate opens.
type fakeProducer struct {
	gate chan struct{}
	fn   func(msgs []kafka.Message) error
	mu   sync.Mutex
	got  [][]kafka.Message
}

func (f *fakeProducer) Produce(ctx context.Context, msgs []kafka.Message) error {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	f.got = append(f.got, msgs)
	f.mu.Unlock()
	if f.fn != nil {
		return f.fn(msgs)
	}
	return nil
}

func newTestCollector(t *testing.T, cfg Config, p Producer) (*Collector, *httptest.Server) {
	t.Helper()
	if cfg.AppKeys == nil {
		cfg.AppKeys = map[string]string{"k1": "app1", "k2": "app2"}
	}
	c := New(cfg, sampling.New(sampling.DefaultConfig()), p, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return c, srv
}

func events(n int, pad int) string {
	var b strings.Builder
	ts := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"log_type":"heartbeat","ts":%d,"device_id":"d%d","session_id":"s","event_id":"e%d","pad":"%s"}`+"\n", ts, i, i, strings.Repeat("p", pad))
	}
	return b.String()
}

type answer struct {
	status     int
	retryAfter string
	body       map[string]any
}

func postTo(t *testing.T, srv *httptest.Server, key string, body io.Reader, length int64) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/events", body)
	req.ContentLength = length
	req.Header.Set("X-Lastmile-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a.body); err != nil {
		t.Fatalf("answer %d %q: %v", resp.StatusCode, b, err)
	}
	return a
}

// While one app's request holds the plan, the next request of that app is
// answered 429 from its Content-Length, and another app's is admitted until
// the global limit; once the first is answered the charge is returned.
func TestAdmissionRefusesBeforeReading(t *testing.T) {
	gate := make(chan struct{})
	fp := &fakeProducer{gate: gate}
	c, srv := newTestCollector(t, Config{Admission: Admission{MaxInflightBytes: 300 << 10, MaxInflightBytesPerApp: 250 << 10}}, fp)

	big := events(100, 1200) // ~150 KB
	first := make(chan answer, 1)
	go func() { first <- postTo(t, srv, "k1", strings.NewReader(big), int64(len(big))) }()
	waitUntil(t, func() bool { return c.adm.global.Load() >= int64(len(big)) })

	// Same app: over its 250 KiB, decided from Content-Length.
	a := postTo(t, srv, "k1", strings.NewReader(big), int64(len(big)))
	if a.status != 429 || a.retryAfter != "1" || a.body["limit"] != limitInflightPerApp {
		t.Fatalf("second post of app1: %+v", a)
	}
	// Another app: admitted while the global limit has room (64 KiB floor)...
	small := events(1, 10)
	done := make(chan answer, 1)
	go func() { done <- postTo(t, srv, "k2", strings.NewReader(small), int64(len(small))) }()
	waitUntil(t, func() bool { return c.adm.global.Load() >= int64(len(big))+DefaultMinRequestBytes })
	// ...but not past it.
	a = postTo(t, srv, "k2", strings.NewReader(big), int64(len(big)))
	if a.status != 429 || a.body["limit"] != limitInflight {
		t.Fatalf("big post of app2 over the global limit: %+v", a)
	}
	close(gate)
	if a := <-first; a.status != 200 {
		t.Fatalf("first post: %+v", a)
	}
	if a := <-done; a.status != 200 {
		t.Fatalf("small post of app2: %+v", a)
	}
	if g := c.adm.global.Load(); g != 0 {
		t.Errorf("%d bytes still charged after every answer", g)
	}
	if v := testutil.ToFloat64(c.metrics.Refused.WithLabelValues(limitInflightPerApp)); v != 1 {
		t.Errorf("refused{per app} = %v", v)
	}
	if v := testutil.ToFloat64(c.metrics.InflightBytes); v != 0 {
		t.Errorf("inflight gauge = %v", v)
	}
}

// A chunked body (no Content-Length) or a gzip body is charged as it is read,
// and refused once it outgrows the plan.
func TestAdmissionChargesChunkedBodiesAsRead(t *testing.T) {
	c, srv := newTestCollector(t, Config{Admission: Admission{MaxInflightBytes: 2 << 20, ReadStepBytes: 256 << 10}}, &fakeProducer{})
	big := events(3000, 500) // ~1.7 MB: over the 1 MiB per-app limit
	a := postTo(t, srv, "k1", io.MultiReader(strings.NewReader(big)), -1)
	if a.status != 429 || a.body["limit"] != limitInflightPerApp {
		t.Fatalf("chunked body over the per-app limit: %+v", a)
	}
	small := events(200, 500)
	if a := postTo(t, srv, "k1", io.MultiReader(strings.NewReader(small)), -1); a.status != 200 || a.body["accepted"] != 200.0 {
		t.Fatalf("chunked body within the plan: %+v", a)
	}
	if g := c.adm.global.Load(); g != 0 {
		t.Errorf("%d bytes still charged", g)
	}
}

// A failed produce answers with what was stored: record by record when the
// writer answered, "unknown" when the wait was given up.
func TestProduceFailureSaysWhatWasStored(t *testing.T) {
	body := events(4, 0) + "{bad\n"
	cause := errors.New("partition leader gone")
	cases := []struct {
		name   string
		fn     func([]kafka.Message) error
		stored string
		events []any
	}{
		{"partial", func(msgs []kafka.Message) error {
			we := make(kafka.WriteErrors, len(msgs))
			we[1], we[3] = cause, cause // events 1 and 3 failed; the reject (last) was stored
			return &kafkaio.ProduceError{Errors: we}
		}, "some", []any{0.0, 2.0}},
		{"none", func(msgs []kafka.Message) error { return kafka.MessageTooLargeError{} }, "none", nil},
		{"unknown", func(msgs []kafka.Message) error { return fmt.Errorf("produce: %w", context.DeadlineExceeded) }, "unknown", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := newTestCollector(t, Config{}, &fakeProducer{fn: tc.fn})
			a := postTo(t, srv, "k1", strings.NewReader(body), int64(len(body)))
			if a.status != 503 || a.retryAfter == "" || a.body["stored"] != tc.stored {
				t.Fatalf("%+v, want 503 stored %q", a, tc.stored)
			}
			got, _ := a.body["stored_events"].([]any)
			if fmt.Sprint(got) != fmt.Sprint(tc.events) {
				t.Errorf("stored_events %v, want %v", got, tc.events)
			}
		})
	}
}

// An event bigger than a record may be is rejected alone, and its reject
// record (bounded ids included) fits.
func TestTooLargeEventRejectedAlone(t *testing.T) {
	fp := &fakeProducer{}
	_, srv := newTestCollector(t, Config{MaxRecordBytes: 10_000}, fp)
	ts := time.Now().UnixMilli()
	body := events(2, 0) +
		fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"big","session_id":"s","x":"%s"}`+"\n", ts, strings.Repeat("x", 20_000)) +
		fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"%s","session_id":"s","ts2":1}`+"\n", ts, strings.Repeat("d", 50_000))
	a := postTo(t, srv, "k1", strings.NewReader(body), int64(len(body)))
	rej, _ := a.body["rejected"].([]any)
	if a.status != 200 || a.body["accepted"] != 2.0 || len(rej) != 2 {
		t.Fatalf("%+v", a)
	}
	if r := rej[0].(map[string]any); r["index"] != 2.0 || r["code"] != schemas.ReasonTooLarge {
		t.Errorf("rejected %v, want index 2 %s", r, schemas.ReasonTooLarge)
	}
	for _, m := range fp.got[0] {
		if n := len(m.Key) + len(m.Value); n > 10_000 {
			t.Errorf("a %s record of %d bytes was produced", m.Topic, n)
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5 s")
}

// FuzzReadCharged: a body read in charged steps arrives whole when the plan
// has room, is refused only when it has not, and the charge always covers
// what is held.
func FuzzReadCharged(f *testing.F) {
	f.Add([]byte(`{"log_type":"heartbeat"}`), uint16(1), uint16(0), uint32(1<<20), uint8(3))
	f.Add(bytes.Repeat([]byte("x"), 5000), uint16(7), uint16(100), uint32(4096), uint8(1))
	f.Add([]byte{}, uint16(0), uint16(0), uint32(0), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, step, base uint16, limit uint32, chunk uint8) {
		plan := Admission{MaxInflightBytes: int64(limit), MaxInflightBytesPerApp: int64(limit),
			MinRequestBytes: 1, ReadStepBytes: int64(step) + 1}.withDefaults()
		a := newAdmitter(plan, map[string]string{"k": "app"}, NewMetrics(prometheus.NewRegistry()))
		ch, refused := a.admit("app", int64(base)+1)
		if ch == nil {
			if int64(base)+1 <= plan.MaxInflightBytesPerApp {
				t.Fatalf("refused %d bytes under a limit of %d (%s)", base+1, plan.MaxInflightBytesPerApp, refused)
			}
			return
		}
		var dst bytes.Buffer
		src := &chunkReader{b: body, n: int(chunk) + 1}
		limit2, err := readCharged(&dst, src, int64(base), ch)
		if err != nil {
			t.Fatal(err)
		}
		if ch.n < int64(base)+int64(dst.Len()) {
			t.Fatalf("charged %d for %d held", ch.n, int64(base)+int64(dst.Len()))
		}
		if limit2 == "" && !bytes.Equal(dst.Bytes(), body) {
			t.Fatalf("read %d of %d bytes", dst.Len(), len(body))
		}
		if limit2 != "" && int64(base)+int64(len(body)) <= plan.MaxInflightBytesPerApp-plan.ReadStepBytes {
			t.Fatalf("refused a %d-byte body (base %d) under a limit of %d", len(body), base, plan.MaxInflightBytesPerApp)
		}
		ch.release()
		if a.global.Load() != 0 || a.perApp["app"].Load() != 0 {
			t.Fatalf("left charged: %d global, %d app", a.global.Load(), a.perApp["app"].Load())
		}
	})
}

// chunkReader returns at most n bytes a read.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}
