package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
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

// retryReq is one client request: its NDJSON body and the event_ids the
// store must end up with (the client's, or the ones the collector derives).
type retryReq struct {
	n    int
	body []byte
	ids  []string
}

// derivedID is the event_id the collector gives an event sent without one:
// from the app and the event's exact bytes (docs/collector.md), so that a
// retried payload maps to the same ids.
func derivedID(app string, raw []byte) string {
	h := sha256.New()
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// retryBody builds a request of events first..first+n-1 of log types taken
// in turn from lts; without ids, each event's content is unique (its ts).
func retryBody(lts []*schemas.LogType, first, n int, withIDs bool, base int64) ([]byte, []string) {
	var body, line []byte
	var ids []string
	for i := first; i < first+n; i++ {
		lt := lts[i%len(lts)]
		line = genEvent(line[:0], lt, int64(i), i%997, base+int64(i))
		if withIDs {
			ids = append(ids, "ev-"+strconv.Itoa(i))
		} else {
			prefix := `{"event_id":"ev-` + strconv.Itoa(i) + `",`
			line = append([]byte{'{'}, line[len(prefix):]...)
			ids = append(ids, derivedID(testAppID, line))
		}
		body = append(append(body, line...), '\n')
	}
	return body, ids
}

// storedIDs reads every stored event_id with its number of rows, in chunks
// so that no one answer is large.
func storedIDs(t *testing.T, p *proc) map[string]int {
	t.Helper()
	have := map[string]int{}
	const chunks = 8
	for c := 0; c < chunks; c++ {
		rows, err := p.sql(fmt.Sprintf("SELECT event_id AS id, count() AS n FROM events WHERE cityHash64(event_id) %% %d = %d GROUP BY event_id", chunks, c))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			have[r["id"].(string)] += int(toInt(t, r["n"]))
		}
	}
	return have
}

// checkExactlyOnce: no event_id has two rows, and the stored ids are the
// acknowledged ones, nothing missing and nothing else.
func checkExactlyOnce(t *testing.T, p *proc, acked map[string]bool) {
	t.Helper()
	dups, err := p.sql("SELECT event_id, count() AS c FROM events GROUP BY event_id HAVING c > 1 ORDER BY event_id LIMIT 20")
	if err != nil {
		t.Fatal(err)
	}
	if len(dups) > 0 {
		t.Errorf("event_ids stored more than once (first 20): %v", dups)
	}
	have := storedIDs(t, p)
	var missing, extra []string
	for id := range acked {
		if have[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id := range have {
		if !acked[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged events not stored, e.g. %v", len(missing), missing[:min(len(missing), 10)])
	}
	if len(extra) > 0 {
		t.Errorf("%d stored events never acknowledged, e.g. %v", len(extra), extra[:min(len(extra), 10)])
	}
	t.Logf("%d acknowledged events, %d distinct stored, %d duplicated (at most 20 listed)", len(acked), len(have), len(dups))
}

// waitSentinels posts one new event per log type and waits until all are
// queryable: each topic has one partition, so everything posted before
// them has then been processed.
func waitSentinels(t *testing.T, p *proc, lts []*schemas.LogType, first int, acked map[string]bool) {
	t.Helper()
	body, ids := retryBody(lts, first, len(lts), true, time.Now().UnixMilli())
	r, err := p.post(body, false, testKey)
	if err != nil || r.Status != 200 || r.Accepted != len(ids) {
		t.Fatalf("sentinels: %+v, %v", r, err)
	}
	for _, id := range ids {
		acked[id] = true
	}
	in := "'" + strings.Join(ids, "','") + "'"
	waitFor(t, 90*time.Second, "the sentinels to be stored", func() (bool, string) {
		rows, err := p.sql("SELECT count() AS n FROM events WHERE event_id IN (" + in + ")")
		if err != nil {
			return false, err.Error()
		}
		n := toInt(t, rows[0]["n"])
		return n >= int64(len(ids)), fmt.Sprintf("%d of %d", n, len(ids))
	})
}

// TestRetryAfterRestart: 1,000 acknowledged events (800 with the client's
// event_id, 200 with derived ones), the process stopped (SIGTERM, or kill
// -9), restarted on the same data dir, and the same request posted again:
// 1,000 rows, not 2,000.
func TestRetryAfterRestart(t *testing.T) {
	for _, how := range []string{"sigterm", "kill9"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			args := []string{"--kafka-listen", "127.0.0.1:0", "--listen", freePort(t)}
			p := start(t, "run", data, args...)
			lts := []*schemas.LogType{schemas.Lookup("heartbeat")}
			now := time.Now().UnixMilli()
			b1, ids1 := retryBody(lts, 0, 800, true, now)
			b2, ids2 := retryBody(lts, 800, 200, false, now)
			body := append(b1, b2...)
			acked := map[string]bool{}
			r, err := p.post(body, false, testKey)
			if err != nil || r.Status != 200 || r.Accepted != 1000 {
				t.Fatalf("post: %+v, %v", r, err)
			}
			for _, id := range append(ids1, ids2...) {
				acked[id] = true
			}
			waitFor(t, 60*time.Second, "1,000 rows", func() (bool, string) {
				n := p.sqlInt(t, "SELECT count() FROM events")
				return n >= 1000, strconv.FormatInt(n, 10)
			})
			if how == "sigterm" {
				p.stop()
			} else {
				p.kill()
			}
			p = start(t, "run", data, args...)
			r, err = p.post(body, false, testKey)
			if err != nil || r.Status != 200 || r.Accepted != 1000 {
				t.Fatalf("retry: %+v, %v", r, err)
			}
			waitSentinels(t, p, lts, 1000, acked)
			if n := p.sqlInt(t, "SELECT count() FROM events"); n != 1001 {
				t.Errorf("%d rows after the retry, want 1,001 (1,000 and the sentinel)", n)
			}
			checkExactlyOnce(t, p, acked)
		})
	}
}

// TestRetryAcrossKill9 is the kill -9 / restart / client-retry test: 50,000
// events posted by concurrent clients in requests of 500-1,000 (one in eight
// without event_ids), the process killed with -9 three times (while posting,
// right after an acknowledged request, right after an insert of the
// processor), restarted on the same data dir and ports each time; after each
// restart every request not acknowledged is posted again, and so is one that
// was. Every acknowledged event is stored exactly once, and nothing else.
func TestRetryAcrossKill9(t *testing.T) {
	const total = 50_000
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	args := []string{"--kafka-listen", "127.0.0.1:0", "--listen", freePort(t)}
	var lts []*schemas.LogType
	for i := range schemas.Catalog {
		lts = append(lts, &schemas.Catalog[i])
	}
	rng := rand.New(rand.NewPCG(16, 4))
	base := time.Now().Add(-time.Hour).UnixMilli()
	var reqs []*retryReq
	for first := 0; first < total; {
		n := min(500+rng.IntN(501), total-first)
		body, ids := retryBody(lts, first, n, len(reqs)%8 != 3, base)
		reqs = append(reqs, &retryReq{n: len(reqs), body: body, ids: ids})
		first += n
	}

	var cur atomic.Pointer[proc]
	cur.Store(start(t, "run", data, args...))

	// The client side: posters take re-posts first, then new requests; a
	// request not answered 200 waits for the next restart.
	var (
		mu        sync.Mutex
		next      int
		retries   []*retryReq
		pending   []*retryReq
		ackedReqs []*retryReq
		acked     = map[string]bool{}
		down      atomic.Bool
		killAck   atomic.Bool  // kill right after the next acknowledgement
		released  atomic.Int64 // new requests handed out so far at most: paces the kills
		failures  atomic.Int64
		wg        sync.WaitGroup
		done      = make(chan struct{})
	)
	take := func() *retryReq {
		mu.Lock()
		defer mu.Unlock()
		if len(retries) > 0 {
			r := retries[0]
			retries = retries[1:]
			return r
		}
		if next < len(reqs) && next < int(released.Load()) {
			next++
			return reqs[next-1]
		}
		return nil
	}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if down.Load() {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				rq := take()
				if rq == nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				p := cur.Load()
				res, err := p.post(rq.body, false, testKey)
				if err != nil || res.Status != 200 {
					failures.Add(1)
					mu.Lock()
					pending = append(pending, rq)
					mu.Unlock()
					continue
				}
				if res.Accepted != len(rq.ids) {
					t.Errorf("request %d: %d of %d accepted: %+v", rq.n, res.Accepted, len(rq.ids), res)
				}
				mu.Lock()
				ackedReqs = append(ackedReqs, rq)
				for _, id := range rq.ids {
					acked[id] = true
				}
				mu.Unlock()
				if killAck.CompareAndSwap(true, false) {
					down.Store(true)
					p.kill()
				}
			}
		}()
	}
	defer func() { close(done); wg.Wait() }()

	nacked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ackedReqs)
	}
	waitAcked := func(want int) { // polled closely: the kill must land while posting
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for nacked() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d requests acknowledged after 90s, want %d", nacked(), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	restart := func() {
		t.Helper()
		p := start(t, "run", data, args...)
		cur.Store(p)
		mu.Lock()
		retries = append(retries, pending...)
		pending = nil
		// A client retry of a request that was acknowledged.
		retries = append(retries, ackedReqs[rng.IntN(len(ackedReqs))])
		mu.Unlock()
		down.Store(false)
	}
	nreq := len(reqs)

	// 1: while the posters are busy (two fifths handed out, one acknowledged).
	released.Store(int64(2 * nreq / 5))
	waitAcked(nreq / 5)
	down.Store(true)
	cur.Load().kill()
	t.Logf("kill -9 #1 while posting: %d requests acknowledged", nacked())
	restart()

	// 2: right after a request is acknowledged.
	released.Store(int64(3 * nreq / 5))
	waitAcked(2 * nreq / 5)
	killAck.Store(true)
	waitFor(t, 60*time.Second, "the kill after an acknowledgement", func() (bool, string) {
		return !cur.Load().running(), ""
	})
	t.Logf("kill -9 #2 right after an acknowledgement: %d requests acknowledged", nacked())
	restart()

	// 3: as soon as an insert of the processor shows (its commit may not
	// have happened yet).
	released.Store(int64(4 * nreq / 5))
	p := cur.Load()
	before := p.sqlInt(t, "SELECT count() FROM events")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n := p.sqlInt(t, "SELECT count() FROM events"); n != before {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	down.Store(true)
	p.kill()
	t.Logf("kill -9 #3 right after an insert: %d requests acknowledged", nacked())
	restart()

	// Every request acknowledged in the end, then one more client retry.
	released.Store(int64(nreq))
	waitFor(t, 120*time.Second, "every request acknowledged", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		n := map[int]bool{}
		for _, r := range ackedReqs {
			n[r.n] = true
		}
		return len(n) == nreq && len(retries) == 0, fmt.Sprintf("%d of %d requests, %d waiting", len(n), nreq, len(retries)+len(pending))
	})
	p = cur.Load()
	mu.Lock()
	last := ackedReqs[0]
	mu.Unlock()
	if r, err := p.post(last.body, false, testKey); err != nil || r.Status != 200 {
		t.Fatalf("last retry: %+v, %v", r, err)
	}
	t.Logf("%d requests, %d acknowledged answers, %d failed posts (re-posted)", nreq, nacked()+1, failures.Load())

	mu.Lock()
	final := map[string]bool{}
	for id := range acked {
		final[id] = true
	}
	mu.Unlock()
	if len(final) != total {
		t.Fatalf("%d distinct events acknowledged, want %d", len(final), total)
	}
	waitSentinels(t, p, lts, total, final)
	checkExactlyOnce(t, p, final)
}
