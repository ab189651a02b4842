package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// eventsPerType is how many events of every log_type the ingest test posts.
func eventsPerType(t *testing.T) int {
	if s := os.Getenv("LASTMILE_E2E_EVENTS_PER_TYPE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if testing.Short() {
		return 2_000
	}
	return 100_000
}

type sentBatch struct {
	body      []byte
	gz        bool
	valid     map[string][2]int64 // log_type → count, sum of ids
	malformed map[int]string      // index → reason code
}

// expected tallies what the store must hold.
type expected struct {
	mu       sync.Mutex
	valid    map[string][2]int64
	rejected map[string]string // request_id/index → code
}

func (e *expected) add(b *sentBatch, r *postResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for lt, v := range b.valid {
		x := e.valid[lt]
		e.valid[lt] = [2]int64{x[0] + v[0], x[1] + v[1]}
	}
	for i, code := range b.malformed {
		e.rejected[r.RequestID+"/"+strconv.Itoa(i)] = code
	}
}

// makeBatches builds NDJSON batches interleaving every log_type, with 1% of
// the events malformed in different ways.
func makeBatches(perType, batchSize int) []*sentBatch {
	total := perType * len(schemas.Catalog)
	ts := time.Now().UnixMilli()
	var out []*sentBatch
	var cur *sentBatch
	var buf []byte
	for i := 0; i < total; i++ {
		if cur == nil || countOf(cur) >= batchSize {
			if cur != nil {
				cur.body = buf
			}
			cur = &sentBatch{valid: map[string][2]int64{}, malformed: map[int]string{}, gz: len(out)%3 == 1}
			out = append(out, cur)
			buf = nil
		}
		lt := &schemas.Catalog[i%len(schemas.Catalog)]
		idx := countOf(cur)
		start := len(buf)
		buf = genEvent(buf, lt, int64(i), i/len(schemas.Catalog)%5000, ts+int64(i%1000))
		if i%100 == 37 {
			m := malformations[(i/100)%len(malformations)]
			bad := m.make(string(buf[start:]), int64(i))
			buf = append(buf[:start], bad...)
			cur.malformed[idx] = m.code
		} else {
			v := cur.valid[lt.Name]
			cur.valid[lt.Name] = [2]int64{v[0] + 1, v[1] + int64(i)}
		}
		buf = append(buf, '\n')
	}
	if cur != nil {
		cur.body = buf
	}
	return out
}

func countOf(b *sentBatch) int {
	n := len(b.malformed)
	for _, v := range b.valid {
		n += int(v[0])
	}
	return n
}

// TestIngestEveryLogType posts events of every log_type, 1% malformed, and
// checks every valid event is stored exactly once and every malformed one is
// in the rejected table with its reason, matching the collector's answers.
func TestIngestEveryLogType(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")

	perType := eventsPerType(t)
	batches := makeBatches(perType, 1000)
	exp := &expected{valid: map[string][2]int64{}, rejected: map[string]string{}}
	t0 := time.Now()
	var wg sync.WaitGroup
	work := make(chan *sentBatch)
	errs := make(chan error, len(batches))
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				r, err := p.post(b.body, b.gz, testKey)
				if err != nil {
					errs <- err
					continue
				}
				if r.Status != 200 {
					errs <- fmt.Errorf("status %d: %s", r.Status, r.Error)
					continue
				}
				if err := checkAnswer(b, r); err != nil {
					errs <- err
					continue
				}
				exp.add(b, r)
			}
		}()
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := perType * len(schemas.Catalog)
	t.Logf("posted %d events in %d batches in %s (%.0f events/s)", total, len(batches), time.Since(t0), float64(total)/time.Since(t0).Seconds())

	for _, lt := range schemas.Catalog {
		want := exp.valid[lt.Name]
		q := fmt.Sprintf("SELECT count() AS n FROM %s WHERE app_id = '%s'", lt.Name, testAppID)
		waitFor(t, 120*time.Second, lt.Name+" rows", func() (bool, string) {
			rows, err := p.sql(q)
			if err != nil {
				return false, err.Error()
			}
			n := toInt(t, rows[0]["n"])
			return n >= want[0], fmt.Sprintf("%d of %d", n, want[0])
		})
		rows, err := p.sql(fmt.Sprintf(`SELECT count() AS n, uniqExact(event_id) AS u,
			sum(toInt64(substring(event_id, 4))) AS s, min(sample_rate) AS r,
			countIf(received_at = 0) AS noreceived FROM %s WHERE app_id = '%s'`, lt.Name, testAppID))
		if err != nil {
			t.Fatal(err)
		}
		r := rows[0]
		if n, u, s := toInt(t, r["n"]), toInt(t, r["u"]), toInt(t, r["s"]); n != want[0] || u != want[0] || s != want[1] {
			t.Errorf("%s: stored %d rows, %d distinct ids, id sum %d; want %d, %d, %d", lt.Name, n, u, s, want[0], want[0], want[1])
		}
		if toInt(t, r["r"]) != 1 || toInt(t, r["noreceived"]) != 0 {
			t.Errorf("%s: sample_rate/received_at not set: %v", lt.Name, r)
		}
	}

	// Every malformed event is in the rejected table with its reason.
	waitFor(t, 60*time.Second, "rejected rows", func() (bool, string) {
		n := p.sqlInt(t, "SELECT count() FROM rejected WHERE app_id = '"+testAppID+"' AND stage = 'collector'")
		return n >= int64(len(exp.rejected)), fmt.Sprintf("%d of %d", n, len(exp.rejected))
	})
	rows, err := p.sql("SELECT request_id, event_index, code, reason, raw FROM rejected WHERE app_id = '" + testAppID + "' AND stage = 'collector'")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(exp.rejected) {
		t.Errorf("rejected table has %d rows, the collector rejected %d", len(rows), len(exp.rejected))
	}
	codes := map[string]int{}
	for _, r := range rows {
		key := fmt.Sprint(r["request_id"]) + "/" + fmt.Sprint(r["event_index"])
		want, ok := exp.rejected[key]
		if !ok {
			t.Errorf("unexpected rejected row %v", r)
			continue
		}
		if r["code"] != want || r["reason"] == "" || r["raw"] == "" {
			t.Errorf("rejected %s: code %v (reason %v), want %s", key, r["code"], r["reason"], want)
		}
		codes[want]++
	}
	if len(codes) != len(malformations) {
		t.Errorf("rejected codes seen: %v; want all of %d kinds", codes, len(malformations))
	}

	// The collector's own counters agree.
	var validTotal int64
	for _, v := range exp.valid {
		validTotal += v[0]
	}
	if got := p.metric(t, "lastmile_collector_events_received_total"); int64(got) != validTotal {
		t.Errorf("metric received = %v, want %d", got, validTotal)
	}
	if got := p.metric(t, "lastmile_collector_events_rejected_total"); int(got) != len(exp.rejected) {
		t.Errorf("metric rejected = %v, want %d", got, len(exp.rejected))
	}
	p.stop()
}

// checkAnswer compares the collector's answer with what the batch holds.
func checkAnswer(b *sentBatch, r *postResult) error {
	var valid int
	for _, v := range b.valid {
		valid += int(v[0])
	}
	if r.Accepted != valid || r.SampledOut != 0 {
		return fmt.Errorf("accepted %d, sampled out %d; want %d, 0", r.Accepted, r.SampledOut, valid)
	}
	if len(r.Rejected) != len(b.malformed) {
		return fmt.Errorf("rejected %d events, want %d: %+v", len(r.Rejected), len(b.malformed), r.Rejected)
	}
	for _, rj := range r.Rejected {
		if want := b.malformed[rj.Index]; rj.Code != want || rj.Msg == "" {
			return fmt.Errorf("event %d rejected as %s (%s), want %s", rj.Index, rj.Code, rj.Msg, want)
		}
	}
	return nil
}

// TestKcatListsTopics: the embedded broker is a real Kafka endpoint.
func TestKcatListsTopics(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not found; `make test` installs it (scripts/install-system-deps.sh)")
		}
		t.Skip("kcat not installed; `make system-deps` installs it")
	}
	dir := t.TempDir()
	p := start(t, "collector", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")
	out, err := exec.Command(kcat, "-b", p.Kafka, "-L").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	var missing []string
	for _, n := range append(schemas.Names(), "rejected") {
		if !strings.Contains(string(out), `topic "lastmile.`+n+`"`) {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("kcat does not list topics %v:\n%s", missing, out)
	}
}
