package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Edge cases of the collector's body handling (issue 16, item 10), each
// against the real binary: what the answer says must be what is stored.

// edgePost sends body to /v1/events with the given headers (the test key is
// added) and decodes the answer.
func edgePost(t *testing.T, p *proc, body []byte, hdr map[string]string) *postResult {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.HTTP+"/v1/events", bytes.NewReader(body))
	req.Header.Set("X-Lastmile-Key", testKey)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/events: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	r := &postResult{Status: resp.StatusCode}
	if err := json.Unmarshal(out, r); err != nil {
		t.Fatalf("status %d, undecodable answer %q: %v", resp.StatusCode, out, err)
	}
	return r
}

// hb is a valid heartbeat with a known event_id.
func hb(id string) string {
	return fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"edge-dev","session_id":"edge-s","event_id":%q}`,
		time.Now().UnixMilli(), id)
}

// rejects renders an answer's rejected list as "index:code,..." for comparison.
func rejects(r *postResult) string {
	var s []string
	for _, rj := range r.Rejected {
		s = append(s, strconv.Itoa(rj.Index)+":"+rj.Code)
	}
	return strings.Join(s, ",")
}

// waitStoredIDs waits until the heartbeat table holds want rows among ids, then
// checks that it holds exactly those (each once).
func waitStoredIDs(t *testing.T, p *proc, ids []string) {
	t.Helper()
	q := "SELECT count() FROM heartbeat WHERE app_id = '" + testAppID + "' AND event_id IN ('" + strings.Join(ids, "','") + "')"
	waitFor(t, 60*time.Second, "events stored", func() (bool, string) {
		n := p.sqlInt(t, q)
		return n >= int64(len(ids)), fmt.Sprintf("%d of %d", n, len(ids))
	})
	if n := p.sqlInt(t, q); n != int64(len(ids)) {
		t.Errorf("%d rows for %d event ids", n, len(ids))
	}
}

// TestCollectorNDJSONFirstLine: NDJSON whose first line is not an object, or
// not even JSON, keeps its good lines and rejects each bad one by its index,
// instead of being read as a broken JSON array and lost whole.
func TestCollectorNDJSONFirstLine(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	cases := []struct {
		name    string
		body    string
		ctype   string
		ids     []string // stored
		rejects string
	}{
		{"array first line", "[1]\n" + hb("nd-1") + "\n" + hb("nd-2") + "\n", "", []string{"nd-1", "nd-2"}, "0:not_object"},
		{"string first line", `"x"` + "\n" + hb("nd-3") + "\n", "", []string{"nd-3"}, "0:not_object"},
		{"number first line, garbage later", "123\n" + hb("nd-4") + "\ngarbage\n" + hb("nd-5"), "", []string{"nd-4", "nd-5"}, "0:not_object,2:invalid_json"},
		{"broken array first line", "[1,\n" + hb("nd-6") + "\n", "", []string{"nd-6"}, "0:invalid_json"},
		{"array and object on the first line", "[" + hb("nd-x") + "]\n" + hb("nd-7"), "", []string{"nd-7"}, "0:not_object"},
		{"declared NDJSON", "[" + hb("nd-y") + "]", "application/x-ndjson", nil, "0:not_object"},
		// JSON arrays are still arrays, on one line or pretty-printed.
		{"array", "[" + hb("nd-8") + "," + hb("nd-9") + "]", "", []string{"nd-8", "nd-9"}, ""},
		{"pretty array", "[\n  " + hb("nd-10") + ",\n  " + hb("nd-11") + "\n]\n", "application/json", []string{"nd-10", "nd-11"}, ""},
	}
	var all []string
	type rej struct {
		req string
		idx int
	}
	var wantRej []rej
	for _, c := range cases {
		hdr := map[string]string{}
		if c.ctype != "" {
			hdr["Content-Type"] = c.ctype
		}
		r := edgePost(t, p, []byte(c.body), hdr)
		if r.Status != 200 || r.Accepted != len(c.ids) || rejects(r) != c.rejects {
			t.Errorf("%s: got %d accepted=%d rejected=[%s] %s; want 200 accepted=%d rejected=[%s]",
				c.name, r.Status, r.Accepted, rejects(r), r.Error, len(c.ids), c.rejects)
			continue
		}
		all = append(all, c.ids...)
		for _, rj := range r.Rejected {
			wantRej = append(wantRej, rej{r.RequestID, rj.Index})
		}
	}
	// A single-line array with a syntax error is still unreadable: 400.
	if r := edgePost(t, p, []byte("["+hb("nd-z")+","), nil); r.Status != 400 {
		t.Errorf("broken one-line array: %d %+v, want 400", r.Status, r)
	}
	waitStoredIDs(t, p, all)
	for _, w := range wantRej {
		q := fmt.Sprintf("SELECT count() FROM rejected WHERE stage = 'collector' AND request_id = '%s' AND event_index = %d", w.req, w.idx)
		waitFor(t, 30*time.Second, "rejected row "+w.req, func() (bool, string) {
			n := p.sqlInt(t, q)
			return n == 1, strconv.FormatInt(n, 10)
		})
	}
	p.stop()
}

// TestCollectorIdenticalRejects: two identical malformed events of one
// request are two rows of the rejected table; a retry of the same request
// carries the same two event ids (so a reader can count it once).
func TestCollectorIdenticalRejects(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	bad := `{"log_type":"no_such_type","device_id":"twin-dev","ts":1}`
	body := []byte(bad + "\n" + hb("twin-good") + "\n" + bad + "\n")
	r := edgePost(t, p, body, nil)
	if r.Status != 200 || r.Accepted != 1 || rejects(r) != "0:unknown_log_type,2:unknown_log_type" {
		t.Fatalf("got %d accepted=%d rejected=[%s] %s", r.Status, r.Accepted, rejects(r), r.Error)
	}
	// FINAL applies the table's replacing merge now rather than whenever
	// it happens to run: rows sharing a key would collapse here.
	q := "SELECT count() FROM rejected FINAL WHERE device_id = 'twin-dev' AND request_id = '" + r.RequestID + "'"
	waitFor(t, 60*time.Second, "rejected rows", func() (bool, string) {
		n := p.sqlInt(t, "SELECT count() FROM rejected WHERE device_id = 'twin-dev'")
		return n >= 1, strconv.FormatInt(n, 10)
	})
	time.Sleep(time.Second) // both records are in one produce; let a split insert land
	if n := p.sqlInt(t, q); n != 2 {
		t.Errorf("rejected table (FINAL) has %d rows for the request's two malformed events, want 2", n)
	}
	if n := p.sqlInt(t, "SELECT uniqExact(event_index) FROM rejected FINAL WHERE device_id = 'twin-dev'"); n != 2 {
		t.Errorf("%d distinct indexes, want 2 (0 and 2)", n)
	}

	// The client retries the same bytes: a new request id, the same ids,
	// which the processor drops as already stored. A later malformed event
	// of the same device (same partition, after the retry's records) shows
	// when the retry has been processed.
	r2 := edgePost(t, p, body, nil)
	if r2.Status != 200 || rejects(r2) != "0:unknown_log_type,2:unknown_log_type" {
		t.Fatalf("retry: got %d rejected=[%s]", r2.Status, rejects(r2))
	}
	r3 := edgePost(t, p, []byte(`{"log_type":"no_such_type","device_id":"twin-dev","ts":2}`+"\n"), nil)
	waitFor(t, 60*time.Second, "the later request's rejected row", func() (bool, string) {
		n := p.sqlInt(t, "SELECT count() FROM rejected WHERE device_id = 'twin-dev' AND request_id = '"+r3.RequestID+"'")
		return n >= 1, strconv.FormatInt(n, 10)
	})
	if n := p.sqlInt(t, "SELECT count() FROM rejected WHERE device_id = 'twin-dev' AND request_id = '"+r2.RequestID+"'"); n != 0 {
		t.Errorf("the retry added %d rejected rows, want 0 (same event ids as the first request)", n)
	}
	if n := p.sqlInt(t, "SELECT count() FROM rejected WHERE device_id = 'twin-dev'"); n != 3 {
		t.Errorf("%d rejected rows for the device (no FINAL), want 3: two of the request, none of its retry, one of the later request", n)
	}
	waitStoredIDs(t, p, []string{"twin-good"})
	p.stop()
}

// TestCollectorContentEncoding: Content-Encoding is case-insensitive, x-gzip
// is gzip, whitespace is ignored, and a list of codings gets a clear 415.
func TestCollectorContentEncoding(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	var ids []string
	for i, enc := range []string{"GZIP", "Gzip", " gzip ", "x-gzip", "X-GZIP", "identity, gzip"} {
		id := "enc-" + strconv.Itoa(i)
		r := edgePost(t, p, gz(hb(id)), map[string]string{"Content-Encoding": enc})
		if r.Status != 200 || r.Accepted != 1 {
			t.Errorf("Content-Encoding %q: %d %+v, want 200 and 1 accepted", enc, r.Status, r)
			continue
		}
		ids = append(ids, id)
	}
	if r := edgePost(t, p, []byte(hb("enc-plain")), map[string]string{"Content-Encoding": "IDENTITY"}); r.Status != 200 || r.Accepted != 1 {
		t.Errorf("Content-Encoding IDENTITY: %d %+v", r.Status, r)
	} else {
		ids = append(ids, "enc-plain")
	}
	for _, enc := range []string{"gzip, gzip", "gzip,br"} {
		r := edgePost(t, p, gz(hb("enc-list")), map[string]string{"Content-Encoding": enc})
		if r.Status != 415 || !strings.Contains(r.Error, "one") {
			t.Errorf("Content-Encoding %q: %d %q, want 415 saying only one coding is taken", enc, r.Status, r.Error)
		}
	}
	if r := edgePost(t, p, gz(hb("enc-br")), map[string]string{"Content-Encoding": "BR"}); r.Status != 415 {
		t.Errorf("Content-Encoding BR: %d, want 415", r.Status)
	}
	waitStoredIDs(t, p, ids)
	p.stop()
}

// TestCollectorDuplicateKeyLastWins: when a key repeats the last copy wins, as
// docs/events.md says, even when an earlier copy is invalid; and an invalid
// last copy rejects the event even when an earlier one was valid.
func TestCollectorDuplicateKeyLastWins(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	ff := schemas.Lookup("first_frame")
	ts := time.Now().UnixMilli()
	event := func(n int64, dns string) string {
		v := cutField(string(genEvent(nil, ff, n, 1, ts)), "dns_ms")
		v = strings.Replace(v, `"event_id":"ev-`, `"event_id":"dup-`, 1)
		return strings.TrimSuffix(v, "}") + "," + dns + "}"
	}
	body := event(1, `"dns_ms":"abc","dns_ms":12`) + "\n" +
		event(2, `"dns_ms":-5,"dns_ms":7`) + "\n" +
		event(3, `"dns_ms":{"a":1},"dns_ms":null`) + "\n" +
		event(4, `"dns_ms":9,"dns_ms":"abc"`) + "\n"
	r := edgePost(t, p, []byte(body), nil)
	if r.Status != 200 || r.Accepted != 3 || rejects(r) != "3:wrong_type" {
		t.Fatalf("got %d accepted=%d rejected=[%s] %s; want accepted=3 rejected=[3:wrong_type]", r.Status, r.Accepted, rejects(r), r.Error)
	}
	q := "SELECT event_id, ifNull(toString(dns_ms), 'null') AS dns FROM first_frame WHERE event_id IN ('dup-1','dup-2','dup-3') ORDER BY event_id"
	var rows []map[string]any
	waitFor(t, 60*time.Second, "events stored", func() (bool, string) {
		var err error
		rows, err = p.sql(q)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows) >= 3, fmt.Sprint(rows)
	})
	got := fmt.Sprint(rows)
	if want := "[map[dns:12 event_id:dup-1] map[dns:7 event_id:dup-2] map[dns:null event_id:dup-3]]"; got != want {
		t.Errorf("stored %s, want %s", got, want)
	}
	p.stop()
}

// TestCollectorSIGTERMGrace: after SIGTERM the collector keeps its listener
// for a grace period and answers new connections 503 with Retry-After (and
// /healthz 503), so a load balancer moves clients on instead of them seeing
// connection refused; then it exits cleanly.
func TestCollectorSIGTERMGrace(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	if r := edgePost(t, p, []byte(hb("term-1")), nil); r.Status != 200 {
		t.Fatalf("before SIGTERM: %+v", r)
	}
	// A fresh connection per request, as a new client would open.
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var n503, nOther int
	var first, last time.Time
	var endErr error
	healthz := 0
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 100_000 && time.Now().Before(deadline); i++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.HTTP+"/v1/events", strings.NewReader(hb("term-x")))
		req.Header.Set("X-Lastmile-Key", testKey)
		resp, err := fresh.Do(req)
		if err != nil {
			endErr = err
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 503:
			if ra := resp.Header.Get("Retry-After"); ra == "" {
				t.Errorf("503 without Retry-After: %s", b)
			}
			if n503 == 0 {
				first = time.Now()
				if h, err := fresh.Get("http://" + p.HTTP + "/healthz"); err == nil {
					healthz = h.StatusCode
					h.Body.Close()
				}
			}
			last = time.Now()
			n503++
		case n503 > 0:
			t.Errorf("after a 503, a new request got %d %s", resp.StatusCode, b)
			nOther++
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(endErr, syscall.ECONNREFUSED) {
		t.Logf("posting ended with %v", endErr)
	}
	t.Logf("%d answers 503 over %s, then %v", n503, last.Sub(first), endErr)
	// The default grace is a few seconds: new clients were answered, not
	// refused, for a good part of it.
	if n503 < 5 || last.Sub(first) < time.Second {
		t.Errorf("during shutdown, %d new connections got 503 over %s before %v; want them answered 503 for the grace period",
			n503, last.Sub(first), endErr)
	}
	if healthz != 503 {
		t.Errorf("/healthz during the grace answered %d, want 503", healthz)
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("not exited 60 s after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
