package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Event ids of the overload tests are "ev-<req*overloadIDSpan+i>", so the
// stored rows of each request can be counted by request.
const overloadIDSpan = 100_000

// tooLarge is the documented reason code of an event over the message size
// limit (docs/collector.md), as clients see it.
const tooLarge = "too_large"

// overloadBody returns an NDJSON body of request req: events of every log
// type until it reaches about size bytes (at most maxEvents events).
func overloadBody(req, size, maxEvents int, ts int64) ([]byte, int) {
	var body []byte
	n := 0
	for ; n < maxEvents && len(body) < size; n++ {
		lt := &schemas.Catalog[n%len(schemas.Catalog)]
		body = genEvent(body, lt, int64(req*overloadIDSpan+n), (req*7+n)%997, ts+int64(n%1000))
		body = append(body, '\n')
	}
	return body, n
}

// overloadAnswer is what one poster got for one request.
type overloadAnswer struct {
	req, events int
	status      int
	retryAfter  string
	body        struct {
		Accepted     int    `json:"accepted"`
		SampledOut   int    `json:"sampled_out"`
		Error        string `json:"error"`
		Stored       string `json:"stored"`
		StoredEvents []int  `json:"stored_events"`
	}
	err error
}

// storedByRequest counts the stored rows (and distinct ids) of each request
// of the overload tests.
func storedByRequest(t *testing.T, p *proc) map[int][2]int64 {
	t.Helper()
	rows, err := p.sql(fmt.Sprintf("SELECT intDiv(toInt64(substring(event_id, 4)), %d) AS req, count() AS n, uniqExact(event_id) AS u FROM events WHERE event_id LIKE 'ev-%%' GROUP BY req", overloadIDSpan))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][2]int64{}
	for _, r := range rows {
		out[int(toInt(t, r["req"]))] = [2]int64{toInt(t, r["n"]), toInt(t, r["u"])}
	}
	return out
}

// waitStoredStable waits until at least want rows are stored and the count
// has not changed for quiet; it returns the rows per request.
func waitStoredStable(t *testing.T, p *proc, want int64, quiet, timeout time.Duration) map[int][2]int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last int64 = -1
	var since time.Time
	for {
		by := storedByRequest(t, p)
		var total int64
		for _, v := range by {
			total += v[0]
		}
		if total != last {
			last, since = total, time.Now()
		}
		if total >= want && time.Since(since) >= quiet {
			return by
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d rows stored, want at least %d and then no change for %s", timeout, total, want, quiet)
		}
		time.Sleep(time.Second)
	}
}

func rssMiB(pid int) int64 { return procStatusKiB(pid, "VmRSS:") / 1024 }

// TestOverloadAdmission: 48 concurrent posters of ~5 MB bodies, more than the
// collector admits at once. Every answer is a 200 or a 429/503 with
// Retry-After; every event of a 200 is stored exactly once; no event of a
// 429 or 503 is stored unless the answer says so; the RSS of the collector
// stays under a bound during the burst and comes back near its idle level.
//
// The collector (with the embedded broker) runs in a process of its own and
// the processor, store and read API in another, so that the RSS measured is
// the collector's: the processor keeps per-event state (its event_id memory)
// that rightly grows with what was stored.
func TestOverloadAdmission(t *testing.T) {
	const (
		posters   = 48
		rounds    = 2
		bodyBytes = 5 << 20
		// Bounds on the RSS of the collector process (collector + embedded
		// broker) under the default admission plan (64 MiB of bodies in
		// flight per app): about ten times the plan over idle at the peak,
		// and back near idle after the burst (docs/collector.md).
		peakOverIdleMiB  = 640
		afterOverIdleMiB = 64
	)
	dir := t.TempDir()
	p := start(t, "collector", filepath.Join(dir, "collector"), "--kafka-listen", "127.0.0.1:0")
	pipe := start(t, "run", filepath.Join(dir, "pipeline"), "--kafka", p.Kafka)
	ts := time.Now().UnixMilli()

	// Warm up every path (first produce, first insert), then measure idle.
	warm, wn := overloadBody(0, 64<<10, 1000, ts)
	if r, err := p.post(warm, false, testKey); err != nil || r.Status != 200 || r.Accepted != wn {
		t.Fatalf("warm-up post: %v %+v", err, r)
	}
	waitStoredStable(t, pipe, int64(wn), 2*time.Second, 60*time.Second)
	time.Sleep(2 * time.Second)
	idle := rssMiB(p.pid())

	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: posters * 2, DisableCompression: true, IdleConnTimeout: time.Minute}}
	sampler := sampleProc(p.pid())
	go0 := make(chan struct{})
	var mu sync.Mutex
	var answers []*overloadAnswer
	var wg sync.WaitGroup
	began := time.Now()
	for w := 0; w < posters; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			<-go0
			for r := 0; r < rounds; r++ {
				a := &overloadAnswer{req: 1 + w*rounds + r}
				body, n := overloadBody(a.req, bodyBytes, 9_500, ts)
				a.events = n
				req, _ := http.NewRequest(http.MethodPost, "http://"+p.HTTP+"/v1/events", bytes.NewReader(body))
				req.Header.Set("X-Lastmile-Key", testKey)
				resp, err := hc.Do(req)
				if err != nil {
					a.err = err
				} else {
					a.status = resp.StatusCode
					a.retryAfter = resp.Header.Get("Retry-After")
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err := json.Unmarshal(b, &a.body); err != nil {
						a.err = fmt.Errorf("status %d, undecodable answer %q: %w", resp.StatusCode, b, err)
					}
				}
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}
		}(w)
	}
	close(go0)
	wg.Wait()
	took := time.Since(began)
	peak, hwm := sampler.finish()

	// Every answer is a 200, or a 429/503 with Retry-After.
	sort.Slice(answers, func(i, j int) bool { return answers[i].req < answers[j].req })
	count := map[int]int{}
	var want int64
	var sentEvents, sentRefused int
	for _, a := range answers {
		sentEvents += a.events
		if a.err != nil {
			t.Errorf("request %d: %v", a.req, a.err)
			continue
		}
		count[a.status]++
		switch a.status {
		case 200:
			if a.body.Accepted != a.events {
				t.Errorf("request %d: 200 with %d of %d accepted", a.req, a.body.Accepted, a.events)
			}
			want += int64(a.body.Accepted)
		case 429, 503:
			sentRefused += a.events
			if a.retryAfter == "" {
				t.Errorf("request %d: %d without Retry-After: %s", a.req, a.status, a.body.Error)
			}
			want += int64(len(a.body.StoredEvents))
		default:
			t.Errorf("request %d: status %d: %s", a.req, a.status, a.body.Error)
		}
	}
	t.Logf("%d requests of ~%d MB (%d events) from %d posters in %s: answers %v", len(answers), bodyBytes>>20, sentEvents, posters, took.Round(time.Millisecond), count)
	if count[429] == 0 {
		t.Errorf("no request was refused with 429: the collector admitted %d concurrent ~%d MB bodies", posters, bodyBytes>>20)
	}
	if count[200] == 0 {
		t.Errorf("no request was admitted")
	}

	// What is stored is exactly what the answers say.
	by := waitStoredStable(t, pipe, want, 5*time.Second, 100*time.Second)
	var lies, lieRows int
	for _, a := range answers {
		if a.err != nil {
			continue
		}
		got := by[a.req]
		if got[0] != got[1] {
			t.Errorf("request %d (%d): %d rows for %d distinct ids", a.req, a.status, got[0], got[1])
		}
		switch a.status {
		case 200:
			if got[1] != int64(a.events) {
				t.Errorf("request %d: 200, %d events sent, %d stored", a.req, a.events, got[1])
			}
		case 429, 503:
			if a.body.Stored == "unknown" {
				t.Errorf("request %d: %d with an unknown outcome (%s)", a.req, a.status, a.body.Error)
			} else if got[1] != int64(len(a.body.StoredEvents)) {
				lies++
				lieRows += int(got[1])
				if lies <= 5 {
					t.Errorf("request %d: %d %q (stored %q, %d events listed) yet %d of its events are stored",
						a.req, a.status, a.body.Error, a.body.Stored, len(a.body.StoredEvents), got[1])
				}
			}
		}
	}
	if lies > 0 {
		t.Errorf("%d refused requests had %d events stored that their answers did not own up to", lies, lieRows)
	}

	// Memory: bounded during the burst, and back near idle afterwards.
	after := rssMiB(p.pid())
	deadline := time.Now().Add(30 * time.Second)
	for after > idle+afterOverIdleMiB && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		after = rssMiB(p.pid())
	}
	t.Logf("RSS: idle before %d MiB, peak %d MiB (VmHWM %d MiB), idle after %d MiB (Go heap in use %.0f MiB, held idle %.0f MiB)", idle, peak, hwm, after,
		p.metric(t, "go_memstats_heap_inuse_bytes")/(1<<20), (p.metric(t, "go_memstats_heap_idle_bytes")-p.metric(t, "go_memstats_heap_released_bytes"))/(1<<20))
	if peak > idle+peakOverIdleMiB {
		t.Errorf("RSS peaked at %d MiB, more than %d MiB over idle (%d MiB)", peak, peakOverIdleMiB, idle)
	}
	if after > idle+afterOverIdleMiB {
		if f := os.Getenv("LASTMILE_OVERLOAD_HEAP"); f != "" { // where the memory is, for `go tool pprof`
			if resp, err := client.Get("http://" + p.HTTP + "/debug/pprof/heap"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				os.WriteFile(f, b, 0o644)
			}
		}
		t.Errorf("RSS is %d MiB 30 s after the burst, more than %d MiB over idle (%d MiB)", after, afterOverIdleMiB, idle)
	}
	if v := p.metric(t, "lastmile_collector_refused_total"); v < float64(count[429]) {
		t.Errorf("lastmile_collector_refused_total = %v, want at least the %d answers 429", v, count[429])
	}
	pipe.stop()
	p.stop()
}

// TestOversizedEventRejected: one event over the broker's message size limit
// is rejected alone, with its own code, and recorded in the rejected table;
// the other 99 events of its request are stored.
func TestOversizedEventRejected(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")
	ts := time.Now().UnixMilli()
	const big = 37
	const req = 900
	var body []byte
	for i := 0; i < 100; i++ {
		lt := &schemas.Catalog[i%len(schemas.Catalog)]
		ev := genEvent(nil, lt, int64(req*overloadIDSpan+i), i, ts)
		if i == big {
			// An unknown field is kept as sent: 2 MiB of it makes the record
			// twice the broker's message.max.bytes.
			ev = append(ev[:len(ev)-1], `,"blob":"`+strings.Repeat("x", 2<<20)+`"}`...)
		}
		body = append(append(body, ev...), '\n')
	}
	r, err := p.post(body, false, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.Accepted != 99 || len(r.Rejected) != 1 || r.Rejected[0].Index != big || r.Rejected[0].Code != tooLarge {
		t.Fatalf("answer %d %+v (%s), want 200 with 99 accepted and event %d rejected %s", r.Status, r, r.Error, big, tooLarge)
	}
	t.Logf("rejected: %s", r.Rejected[0].Msg)
	by := waitStoredStable(t, p, 99, 3*time.Second, 60*time.Second)
	if got := by[req]; got[0] != 99 || got[1] != 99 {
		t.Errorf("stored %d rows (%d ids) of the request, want 99", got[0], got[1])
	}
	if n := p.sqlInt(t, fmt.Sprintf("SELECT count() FROM events WHERE event_id = 'ev-%d'", req*overloadIDSpan+big)); n != 0 {
		t.Errorf("the oversized event is stored %d times", n)
	}
	var rows []map[string]any
	waitFor(t, 30*time.Second, "the oversized event in the rejected table", func() (bool, string) {
		rows, err = p.sql("SELECT code, event_index, request_id, length(raw) AS raw_len, device_id FROM rejected WHERE code = '" + tooLarge + "'")
		if err != nil {
			t.Fatal(err)
		}
		return len(rows) == 1, fmt.Sprint(rows)
	})
	row := rows[0]
	if toInt(t, row["event_index"]) != big || row["request_id"] != r.RequestID || row["device_id"] != "dev-"+strconv.Itoa(big) {
		t.Errorf("rejected row %v, want event_index %d, request_id %s, device_id dev-%d", row, big, r.RequestID, big)
	}
	if n := toInt(t, row["raw_len"]); n <= 0 || n > 17<<10 {
		t.Errorf("rejected raw is %d bytes, want it truncated to ~16 KiB", n)
	}
	p.stop()
}
