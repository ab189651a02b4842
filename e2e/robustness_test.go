package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// TestBadRequests: each kind of bad request gets its own status and a clear
// message, and the process keeps serving.
func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0", "--max-body-bytes", "100000")
	now := time.Now().UnixMilli()
	good := fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d1","session_id":"s1","event_id":"good-1"}`, now)

	do := func(method, path string, body []byte, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+p.HTTP+path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	key := map[string]string{"X-Lastmile-Key": testKey}
	big := bytes.Repeat([]byte(good+"\n"), 100000/len(good)+10)
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		hdr    map[string]string
		status int
		msg    string
	}{
		{"missing key", "POST", "/v1/events", []byte(good), nil, 401, "missing app key"},
		{"wrong key", "POST", "/v1/events", []byte(good), map[string]string{"X-Lastmile-Key": "nope"}, 401, "unknown app key"},
		{"oversize body", "POST", "/v1/events", big, key, 413, "max_body_bytes"},
		{"invalid gzip", "POST", "/v1/events", []byte("not gzip at all"), map[string]string{"X-Lastmile-Key": testKey, "Content-Encoding": "gzip"}, 400, "invalid gzip"},
		{"invalid JSON", "POST", "/v1/events", []byte(`[{"log_type":"heartbeat",`), key, 400, "invalid JSON"},
		{"empty body", "POST", "/v1/events", nil, key, 400, "empty body"},
		{"blank body", "POST", "/v1/events", []byte(" \n\t "), key, 400, "empty body"},
		{"unsupported encoding", "POST", "/v1/events", []byte(good), map[string]string{"X-Lastmile-Key": testKey, "Content-Encoding": "br"}, 415, "not supported"},
		{"wrong method", "GET", "/v1/events", nil, key, 405, "only POST"},
		{"unknown route", "GET", "/v2/nothing", nil, nil, 404, "no route"},
		{"read API without token", "GET", "/api/v1/sql?q=SELECT+1", nil, nil, 401, "token"},
	}
	for _, c := range cases {
		status, body := do(c.method, c.path, c.body, c.hdr)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: got %d %s; want %d containing %q", c.name, status, body, c.status, c.msg)
		}
		// The process keeps serving after each.
		if r, err := p.post([]byte(good), false, testKey); err != nil || r.Status != 200 {
			t.Fatalf("after %s the collector stopped serving: %v %+v", c.name, err, r)
		}
	}
	// Too many events in one batch.
	var many []byte
	for i := 0; i < 10001; i++ {
		many = append(many, `{}`+"\n"...)
	}
	p2 := p
	if r, _ := p2.post(many, true, testKey); r == nil || r.Status != 413 || r.Limit != "max_batch_events" {
		t.Errorf("oversize batch: %+v", r)
	}
	// Health and metrics stay up.
	if s, _ := do("GET", "/healthz", nil, nil); s != 200 {
		t.Errorf("/healthz = %d", s)
	}
	if n := p.metric(t, "lastmile_collector_requests_total"); n == 0 {
		t.Errorf("/metrics on the metrics listener: lastmile_collector_requests_total = %v", n)
	}
	// The invalid JSON request is recorded, so its sender can find out why.
	waitFor(t, 30*time.Second, "rejected request recorded", func() (bool, string) {
		n := p.sqlInt(t, "SELECT count() FROM rejected WHERE code = 'invalid_json' AND event_index = -1")
		return n >= 1, strconv.FormatInt(n, 10)
	})
	p.stop()
}

// TestKill9LosesNothing: kill -9 while posting and consuming, restart, and
// every acknowledged event is there exactly once.
func TestKill9LosesNothing(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	listen := freePort(t)
	args := []string{"--kafka-listen", "127.0.0.1:0", "--listen", listen, "--batch-rows", "2000"}
	p := start(t, "run", data, args...)

	var acked sync.Map // event id → log_type
	var seq, nacked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	poster := func(target func() *proc) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var body []byte
			ids := make([]int64, 0, 200)
			ts := time.Now().UnixMilli()
			for i := 0; i < 200; i++ {
				n := seq.Add(1)
				lt := &schemas.Catalog[n%int64(len(schemas.Catalog))]
				body = genEvent(body, lt, n, int(n%997), ts)
				body = append(body, '\n')
				ids = append(ids, n)
			}
			r, err := target().post(body, false, testKey)
			if err != nil || r.Status != 200 {
				time.Sleep(50 * time.Millisecond) // down or restarting: not acknowledged
				continue
			}
			for _, n := range ids {
				acked.Store(n, schemas.Catalog[n%int64(len(schemas.Catalog))].Name)
			}
			nacked.Add(int64(len(ids)))
		}
	}
	var cur atomic.Pointer[proc]
	cur.Store(p)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go poster(func() *proc { return cur.Load() })
	}
	time.Sleep(4 * time.Second)
	ackedBefore := nacked.Load()
	p.kill()
	t.Logf("killed with -9 after %d acknowledged events", ackedBefore)
	if ackedBefore == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	p2 := start(t, "run", data, args...)
	cur.Store(p2)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	total := nacked.Load()
	t.Logf("%d events acknowledged in all", total)

	// Every acknowledged id arrives. Counting is not enough: events stored but
	// never acknowledged (requests cut off by the kill) are there too.
	missingNow := func() (int, []string) {
		missing := 0
		var ids []string
		for _, lt := range schemas.Catalog {
			rows, err := p2.sql(fmt.Sprintf("SELECT toInt64(substring(event_id, 4)) AS id FROM %s", lt.Name))
			if err != nil {
				t.Fatal(err)
			}
			have := map[int64]bool{}
			for _, r := range rows {
				have[toInt(t, r["id"])] = true
			}
			acked.Range(func(k, v any) bool {
				if v.(string) == lt.Name && !have[k.(int64)] {
					missing++
					if len(ids) < 30 {
						ids = append(ids, fmt.Sprintf("%s:ev-%d", lt.Name, k.(int64)))
					}
				}
				return true
			})
		}
		sort.Strings(ids)
		return missing, ids
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		missing, ids := missingNow()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			rows, _ := p2.sql("SELECT log_type, kafka_partition, max(kafka_offset) AS hi, count() AS n FROM events GROUP BY log_type, kafka_partition ORDER BY log_type, kafka_partition")
			t.Logf("stored per partition: %v", rows)
			t.Fatalf("%d acknowledged events are missing 90 s after kill -9 and restart, e.g. %v", missing, ids)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// And none is there twice.
	if d := p2.sqlInt(t, "SELECT count() - uniqExact(event_id) FROM events"); d != 0 {
		t.Errorf("%d duplicate rows are visible after kill -9 and restart", d)
	}
	// A clean stop (SIGTERM: flush, commit) and another start change nothing.
	before := p2.sqlInt(t, "SELECT count() FROM events")
	p2.stop()
	p3 := start(t, "run", data, args...)
	time.Sleep(2 * time.Second)
	if after := p3.sqlInt(t, "SELECT count() FROM events"); after != before {
		t.Errorf("events after a clean restart: %d, before: %d", after, before)
	}
	if d := p3.sqlInt(t, "SELECT count() - uniqExact(event_id) FROM events"); d != 0 {
		t.Errorf("%d duplicate rows after a clean restart", d)
	}
	p3.stop()
}

// TestSampling10Percent: at a configured 10%, the kept fraction of devices is
// within a 99% binomial interval, every event of a kept device is kept, and
// failures are always kept.
func TestSampling10Percent(t *testing.T) {
	dir := t.TempDir()
	sf := filepath.Join(dir, "sampling.yaml")
	os.WriteFile(sf, []byte("seed: 11\ndefault_rate: 0.1\n"), 0o644)
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0", "--sampling", sf)

	const devices = 5000
	const perDevice = 4 // heartbeat, first_frame, play_stop ok, and every 10th a failed play_stop
	ts := time.Now().UnixMilli()
	failures := 0
	var body []byte
	post := func() {
		r, err := p.post(body, true, testKey)
		if err != nil || r.Status != 200 {
			t.Fatalf("post: %v %+v", err, r)
		}
		body = body[:0]
	}
	for d := 0; d < devices; d++ {
		dev := strconv.Itoa(d)
		sess := `"device_id":"sd-` + dev + `","session_id":"ss-` + dev + `"`
		body = fmt.Appendf(body, `{"event_id":"hb-%d","log_type":"heartbeat","ts":%d,%s}`+"\n", d, ts, sess)
		body = fmt.Appendf(body, `{"event_id":"ff-%d","log_type":"first_frame","ts":%d,%s,"total_ms":500}`+"\n", d, ts, sess)
		body = fmt.Appendf(body, `{"event_id":"ps-%d","log_type":"play_stop","ts":%d,%s,"code":0}`+"\n", d, ts, sess)
		body = fmt.Appendf(body, `{"event_id":"hb2-%d","log_type":"heartbeat","ts":%d,%s}`+"\n", d, ts+1000, sess)
		if d%10 == 0 {
			body = fmt.Appendf(body, `{"event_id":"fail-%d","log_type":"play_stop","ts":%d,%s,"code":2001,"first_frame_blocked":"tcp_connect"}`+"\n", d, ts+2000, sess)
			failures++
		}
		if len(body) > 500_000 {
			post()
		}
	}
	post()

	// Failures: every one kept, at rate 1.
	waitFor(t, 60*time.Second, "failures stored", func() (bool, string) {
		n := p.sqlInt(t, "SELECT count() FROM play_stop WHERE code != 0")
		return n >= int64(failures), fmt.Sprintf("%d of %d", n, failures)
	})
	if n := p.sqlInt(t, "SELECT countIf(sample_rate != 1) FROM play_stop WHERE code != 0"); n != 0 {
		t.Errorf("%d failures stored with a sample_rate other than 1", n)
	}
	// Kept devices: their normal events all kept, at rate 0.1.
	time.Sleep(2 * time.Second)
	rows, err := p.sql(`SELECT device_id, count() AS n, min(sample_rate) AS lo, max(sample_rate) AS hi FROM (
		SELECT device_id, sample_rate FROM heartbeat UNION ALL SELECT device_id, sample_rate FROM first_frame
		UNION ALL SELECT device_id, sample_rate FROM play_stop WHERE code = 0) GROUP BY device_id`)
	if err != nil {
		t.Fatal(err)
	}
	kept := len(rows)
	for _, r := range rows {
		if toInt(t, r["n"]) != perDevice {
			t.Errorf("device %v: %v of its %d events kept; a kept device keeps all", r["device_id"], r["n"], perDevice)
		}
		if fmt.Sprint(r["lo"]) != "0.1" || fmt.Sprint(r["hi"]) != "0.1" {
			t.Errorf("device %v: sample_rate %v..%v, want 0.1", r["device_id"], r["lo"], r["hi"])
		}
	}
	pr, z := 0.1, 2.5758
	sd := math.Sqrt(devices * pr * (1 - pr))
	lo, hi := devices*pr-z*sd, devices*pr+z*sd
	t.Logf("kept %d of %d devices (99%% interval [%.0f, %.0f])", kept, devices, lo, hi)
	if float64(kept) < lo || float64(kept) > hi {
		t.Fatalf("kept %d of %d devices: outside the 99%% binomial interval [%.0f, %.0f]", kept, devices, lo, hi)
	}
	if got := p.metric(t, "lastmile_collector_events_sampled_out_total"); got == 0 {
		t.Error("sampled_out metric is 0")
	}
	p.stop()
}
