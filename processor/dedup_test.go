package processor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// The memory against a model: an id first seen at f is known at every t <
// f+window (the cap is not reached), and forgotten by f+window+span+tick.
func TestDedupWindow(t *testing.T) {
	const window = time.Hour
	d := newDedup(window, 1<<30, nil, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	first := map[uint64]time.Time{}
	now := time.Unix(1_800_000_000, 0)
	d.tick(now)
	for step := 0; step < 20_000; step++ {
		if rng.IntN(10) == 0 {
			now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
			d.tick(now)
		}
		h := norm(uint64(rng.IntN(3000)) * 0x9e3779b97f4a7c15)
		f, known := first[h]
		got := d.seen(h)
		switch age := now.Sub(f); {
		case known && age < window && !got:
			t.Fatalf("step %d: id seen %v ago forgotten (window %v)", step, age, window)
		case !known && got:
			t.Fatalf("step %d: id never seen reported seen", step)
		case known && age >= window+d.span+2*time.Minute && got:
			t.Fatalf("step %d: id seen %v ago still remembered", step, age)
		}
		if !got {
			first[h] = now
		}
	}
}

// The cap: memory stays within it, the newest ids stay known, and what is
// forgotten early is counted.
func TestDedupCap(t *testing.T) {
	m := newDedupMetrics(prometheus.NewRegistry())
	d := newDedup(time.Hour, 1000, m, log.NewNopLogger())
	for i := uint64(1); i <= 10_000; i++ {
		if d.seen(i) {
			t.Fatalf("id %d new but reported seen", i)
		}
		if n := len(d.cur) + d.nold; n > 1000 {
			t.Fatalf("%d ids remembered, cap 1000", n)
		}
	}
	for i := uint64(10_000 - 700); i <= 10_000; i++ {
		if !d.seen(i) {
			t.Fatalf("id %d of the newest 700 forgotten", i)
		}
	}
	if f := testutil.ToFloat64(m.forgotten); f < 9000 {
		t.Errorf("forgotten counted %v, want >= 9000", f)
	}
}

// loadSeen reads back exactly the stored ids of the window, hashed as the
// hot path hashes them (xxHash64 in SQL = xxhash in Go), per app.
func TestDedupLoadFromStore(t *testing.T) {
	st := sharedStore(t)
	ctx := context.Background()
	ins := func(prefix, app string, n int, age time.Duration) {
		t.Helper()
		id := fmt.Sprintf("concat('%s', toString(number))", prefix)
		if prefix == "" {
			id = "''"
		}
		q := fmt.Sprintf(`INSERT INTO events (event_id, app_id, log_type, ts, received_at, device_id)
			SELECT %s, '%s', 'heartbeat', now64(3) - toIntervalMillisecond(%d),
			       now64(3) - toIntervalMillisecond(%d), 'd' FROM numbers(%d)`, id, app, age.Milliseconds(), age.Milliseconds(), n)
		if err := st.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ins("r-", "a", 1000, time.Minute)
	ins("s-", "a", 500, 40*time.Minute)
	ins("o-", "a", 100, 2*time.Hour) // past the window
	ins("", "a", 1, time.Minute)     // no event_id: never remembered
	p := New(Config{}, st, nil, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	w := &fetcher{p: p, logger: log.NewNopLogger(), seen: newDedup(time.Hour, 1<<20, p.metrics.dedup, nil)}
	if err := w.loadSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(p.metrics.dedup.loaded); n != 1500 {
		t.Fatalf("loaded %v ids, want 1500", n)
	}
	var buf []byte
	key := func(app, id string) uint64 { return dedupKey(&buf, eventsSalt, []byte(app), []byte(id)) }
	for _, c := range []struct {
		app, id string
		want    bool
	}{{"a", "r-0", true}, {"a", "r-999", true}, {"a", "s-499", true}, {"a", "o-5", false}, {"b", "r-5", false}, {"a", "r-1000", false}, {"a", "", false}} {
		if got := w.seen.seen(key(c.app, c.id)); got != c.want {
			t.Errorf("app %q id %q: seen %v, want %v", c.app, c.id, got, c.want)
		}
	}
	// The cap keeps the newest rows.
	w.seen = newDedup(time.Hour, 1000, nil, nil)
	if err := w.loadSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if !w.seen.seen(key("a", "r-7")) || w.seen.seen(key("a", "s-7")) {
		t.Error("with a cap of 1000 the newest 1000 rows (r-*) should be loaded, not the older s-*")
	}
}

// Across a restart: a client retry (same ids, new offsets) is dropped, and
// messages replayed from Kafka whose rows were lost (here deleted: stored
// offsets end lower) are stored again, never taken for duplicates of
// themselves.
func TestDedupAcrossRestart(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.produce(t, 200)
	r.waitRows(t, "SELECT count() AS n FROM events", 200)
	r.stop()
	<-r.done
	r.done <- nil // for the rig's cleanup

	if err := r.st.Exec(ctx, "ALTER TABLE events DELETE WHERE kafka_offset >= 50 SETTINGS mutations_sync = 2"); err != nil {
		t.Fatal(err)
	}
	kept := r.rows(t, "SELECT count() AS n FROM events")
	if kept == 0 || kept >= 200 {
		t.Fatalf("%d rows left after the delete", kept)
	}
	// A new group: nothing committed, every message is consumed again.
	m := NewMetrics(prometheus.NewRegistry())
	p := New(Config{Brokers: []string{r.addr}, Group: "g2-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		FlushInterval: 200 * time.Millisecond, MaxRetryBackoff: 500 * time.Millisecond}, r.st, r.prod, m, log.NewNopLogger())
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() { cancel(); <-done }()

	r.count = 0
	r.produce(t, 300) // the 200 again (a client retry), then 100 new
	r.waitRows(t, "SELECT count() AS n FROM events", 300)
	deadline := time.Now().Add(30 * time.Second)
	hb := schemas.TopicOf("heartbeat")
	for testutil.ToFloat64(m.Consumed.WithLabelValues(hb)) < 500 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // a last batch would show here
	if n := r.rows(t, "SELECT count() AS n FROM events"); n != 300 {
		t.Errorf("%d rows, want 300", n)
	}
	if n := r.rows(t, "SELECT uniqExact(event_id) AS n FROM events"); n != 300 {
		t.Errorf("%d distinct ids, want 300", n)
	}
	if v := testutil.ToFloat64(m.Replayed.WithLabelValues(hb)); v != float64(kept) {
		t.Errorf("replayed skipped %v, want %d", v, kept)
	}
	if v := testutil.ToFloat64(m.Duplicates.WithLabelValues(hb)); v != 200 {
		t.Errorf("duplicates %v, want 200", v)
	}
}

// The hot path, steady state: every id new, the memory full. "old" is the
// two-map memory this replaced (count window 1M, kept here to compare in
// the same run); "new" is the time-windowed one at its default cap.
func BenchmarkDedupSeen(b *testing.B) {
	ids := make([]uint64, 1<<22)
	for i := range ids {
		ids[i] = norm(rand.Uint64())
	}
	b.Run("old-1M", func(b *testing.B) {
		d := newOldDedup(1_000_000)
		for i := 0; i < 2_500_000; i++ {
			d.seen(rand.Uint64())
		}
		b.ReportAllocs()
		reportCPU(b, func() {
			for i := 0; i < b.N; i++ {
				d.seen(ids[i&(len(ids)-1)] + uint64(i>>22))
			}
		})
	})
	b.Run("new-8M", func(b *testing.B) {
		d := newDedup(time.Hour, DefaultDedupMaxIDs, nil, nil)
		for i := 0; i < DefaultDedupMaxIDs+DefaultDedupMaxIDs/8; i++ {
			d.seen(norm(rand.Uint64()))
		}
		b.ReportAllocs()
		reportCPU(b, func() {
			for i := 0; i < b.N; i++ {
				if i&0xffff == 0 {
					d.tick(d.now) // once per batch in the processor
				}
				d.seen(ids[i&(len(ids)-1)] + uint64(i>>22))
			}
		})
	})
}

// The key: the old path hashed the id alone, the new one app, 0, id.
func BenchmarkDedupKey(b *testing.B) {
	app, id := []byte("demo"), []byte("0f3a9c2e6b1d4f7a8e5c3b2a1d0f9e8c")
	var buf []byte
	b.Run("old", func(b *testing.B) {
		b.ReportAllocs()
		reportCPU(b, func() {
			for i := 0; i < b.N; i++ {
				_ = norm(xxhash.Sum64(id))
			}
		})
	})
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		reportCPU(b, func() {
			for i := 0; i < b.N; i++ {
				_ = dedupKey(&buf, eventsSalt, app, id)
			}
		})
	})
}

// Memory per id at the cap, reported as bytes/id (heap after GC).
func BenchmarkDedupMemory(b *testing.B) {
	for _, c := range []struct {
		name string
		fill func(n int) any
	}{
		{"old", func(n int) any {
			d := newOldDedup(n / 2)
			for i := 0; i < n; i++ {
				d.seen(rand.Uint64())
			}
			return d
		}},
		{"new", func(n int) any {
			d := newDedup(time.Hour, n, nil, nil)
			for i := 0; i < n; i++ {
				d.seen(norm(rand.Uint64()))
			}
			return d
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			const n = 4_000_000
			for b.Loop() {
				var m0, m1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				d := c.fill(n)
				runtime.GC()
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "bytes/id")
				runtime.KeepAlive(d)
			}
		})
	}
}

// Startup: loading N stored ids of the window (chDB, this machine).
func BenchmarkDedupLoad(b *testing.B) {
	st := storetest.Embedded(b)
	ctx := context.Background()
	for _, n := range []int{1_000_000, 4_000_000} {
		q := fmt.Sprintf(`INSERT INTO events (event_id, app_id, log_type, ts, received_at, device_id, trace_key)
			SELECT concat('e-', toString(number)), 'a', 'heartbeat', now64(3) - toIntervalMillisecond(number %% 3000000),
			       now64(3) - toIntervalMillisecond(number %% 3000000), concat('d', toString(number %% 100000)),
			       concat('d', toString(number %% 100000)) FROM numbers(%d)`, n)
		if err := st.Exec(ctx, "TRUNCATE TABLE events"); err != nil {
			b.Fatal(err)
		}
		if err := st.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			p := New(Config{}, st, nil, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
			c0 := cpuTime(syscall.RUSAGE_SELF)
			for b.Loop() {
				w := &fetcher{p: p, logger: log.NewNopLogger(), seen: newDedup(time.Hour, DefaultDedupMaxIDs, nil, nil)}
				if err := w.loadSeen(ctx); err != nil {
					b.Fatal(err)
				}
				if got := len(w.seen.cur) + w.seen.nold; got != n {
					b.Fatalf("loaded %d ids, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/id")
			b.ReportMetric(float64(cpuTime(syscall.RUSAGE_SELF)-c0)/float64(b.N)/float64(n), "cpu-ns/id")
		})
	}
}

// oldDedup is the memory before issue 16 (two count generations of maps),
// kept for the benchmarks' comparison.
type oldDedup struct {
	cur, prev map[uint64]struct{}
	window    int
}

func newOldDedup(window int) *oldDedup {
	return &oldDedup{cur: make(map[uint64]struct{}), prev: map[uint64]struct{}{}, window: window}
}

func (d *oldDedup) seen(h uint64) bool {
	if _, ok := d.cur[h]; ok {
		return true
	}
	if _, ok := d.prev[h]; ok {
		return true
	}
	if len(d.cur) >= d.window {
		d.prev, d.cur = d.cur, make(map[uint64]struct{}, d.window)
	}
	d.cur[h] = struct{}{}
	return false
}

// cpuTime is the CPU time of this thread (who, RUSAGE_THREAD) or of the
// process (RUSAGE_SELF): on a shared, loaded machine wall time per op is
// inflated by waiting for a core; CPU time much less.
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const rusageThread = 1 // RUSAGE_THREAD (linux)

// reportCPU runs loop on a locked thread and reports its CPU ns per op.
func reportCPU(b *testing.B, loop func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := cpuTime(rusageThread)
	b.ResetTimer()
	loop()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(rusageThread)-c0)/float64(b.N), "cpu-ns/op")
}
