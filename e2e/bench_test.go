package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// benchPipeline gates TestBenchPipeline; `make bench` sets it.
var benchPipeline = flag.Bool("bench-pipeline", false, "run TestBenchPipeline, the pipeline benchmark of `make bench`")

// Targets printed next to the figures; never asserted.
const (
	benchTargetRate = 100_000         // whole path, events/s
	benchTargetP99  = 2 * time.Second // ingest-to-queryable p99
	benchTargetRSS  = 1536            // MiB, RSS of `lastmile run`
)

type benchConfig struct {
	events  int // N: events of the burst phases and the baseline
	rate    int // sustained phase: target events/s
	seconds int // sustained phase: duration
	batch   int // events per request
	posters int // concurrent posting goroutines
}

func benchEnvInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// Event ids of the benchmark are "ev-GGGnnnnnnnnn": GGG is a generation
// (100 for the pre-generated batches), so the sustained phase can resend the
// same bodies with fresh, unique ids by rewriting three digits in place.
const (
	benchGen0      = 100
	benchGenFactor = 1_000_000_000
	benchMaxEvents = benchGenFactor - 1
	benchIDPrefix  = `{"event_id":"ev-` // genEvent starts every event with this
)

// benchEvent appends event i of the benchmark stream: log types interleaved,
// 5000 devices, every catalog field set (genEvent).
func benchEvent(dst []byte, i int, ts int64) []byte {
	lt := &schemas.Catalog[i%len(schemas.Catalog)]
	return genEvent(dst, lt, int64(benchGen0)*benchGenFactor+int64(i), i/len(schemas.Catalog)%5000, ts+int64(i%1000))
}

// benchBatch is one pre-generated NDJSON request body.
type benchBatch struct {
	body []byte
	n    int
	gens []int32 // offset in body of each event id's generation digits
}

// withGen copies the body into dst with every event id moved to generation gen.
func (b *benchBatch) withGen(dst []byte, gen int) []byte {
	dst = append(dst[:0], b.body...)
	d := [3]byte{byte('0' + gen/100), byte('0' + gen/10%10), byte('0' + gen%10)}
	for _, off := range b.gens {
		copy(dst[off:off+3], d[:])
	}
	return dst
}

// benchMakeBatches pre-generates n events in batches of size; it returns the
// batches, the expected rows per table and the mean event size.
func benchMakeBatches(n, size int, ts int64) ([]*benchBatch, map[string]int64, float64) {
	var out []*benchBatch
	perTable := map[string]int64{}
	var bytesTotal int
	for i := 0; i < n; {
		b := &benchBatch{body: make([]byte, 0, size*700)}
		for ; b.n < size && i < n; i++ {
			start := len(b.body)
			b.body = benchEvent(b.body, i, ts)
			if !bytes.HasPrefix(b.body[start:], []byte(benchIDPrefix)) {
				panic("genEvent no longer starts with " + benchIDPrefix)
			}
			b.gens = append(b.gens, int32(start+len(benchIDPrefix)))
			b.body = append(b.body, '\n')
			b.n++
			perTable[schemas.Catalog[i%len(schemas.Catalog)].Name]++
		}
		bytesTotal += len(b.body)
		out = append(out, b)
	}
	return out, perTable, float64(bytesTotal) / float64(n)
}

// TestBenchPipeline measures events/s of the collector alone, the processor
// alone, the whole path (plus a sustained-rate phase with ingest-to-queryable
// latency and RSS), and the raw store's JSONEachRow insert as the baseline.
// It prints a table; it asserts correctness only, never speed.
//
// Environment: LASTMILE_BENCH_EVENTS (N, default 1,000,000),
// LASTMILE_BENCH_RATE and LASTMILE_BENCH_SECONDS (sustained phase, default
// 100,000 events/s for 30 s), LASTMILE_BENCH_POSTERS (concurrent posters, 8),
// LASTMILE_BENCH_RUN_ARGS (extra flags of the whole-path `lastmile run`),
// LASTMILE_BENCH_PPROF (a CPU profile of the sustained phase to this file).
//
//	make bench
//	LASTMILE_BENCH_EVENTS=200000 LASTMILE_BIN=$PWD/bin/lastmile go test -run '^TestBenchPipeline$' -count=1 -timeout 60m -v ./e2e -bench-pipeline
func TestBenchPipeline(t *testing.T) {
	if !*benchPipeline {
		t.Skip("pipeline benchmark: pass -bench-pipeline (make bench runs it)")
	}
	cfg := benchConfig{
		events:  benchEnvInt(t, "LASTMILE_BENCH_EVENTS", 1_000_000),
		rate:    benchEnvInt(t, "LASTMILE_BENCH_RATE", 100_000),
		seconds: benchEnvInt(t, "LASTMILE_BENCH_SECONDS", 30),
		batch:   2000,
		posters: benchEnvInt(t, "LASTMILE_BENCH_POSTERS", 8),
	}
	if cfg.events > benchMaxEvents {
		t.Fatalf("LASTMILE_BENCH_EVENTS=%d: at most %d", cfg.events, benchMaxEvents)
	}
	lastmileBin(t)
	dir := t.TempDir()
	ts := time.Now().Add(-time.Hour).UnixMilli()

	t0 := time.Now()
	batches, perTable, evSize := benchMakeBatches(cfg.events, cfg.batch, ts)
	// The sustained phase resends these bodies, one generation per pass.
	if passes := (cfg.rate*cfg.seconds)/cfg.events + 1; benchGen0+1+passes > 999 {
		t.Fatalf("sustained phase needs %d passes over %d events; raise LASTMILE_BENCH_EVENTS", passes, cfg.events)
	}
	t.Logf("generated %d events in %d batches (%.0f bytes/event) in %s", cfg.events, len(batches), evSize, time.Since(t0).Round(time.Millisecond))

	r := &benchReport{cfg: cfg, evSize: evSize}
	benchCollectorAndProcessor(t, r, dir, batches)
	benchWholePath(t, r, dir, batches)
	benchBaseline(t, r, dir, ts, perTable)
	r.print(t)
}

// benchReport collects the figures of every phase.
type benchReport struct {
	cfg    benchConfig
	evSize float64

	collRate, collSecs     float64
	collP50, collP99       time.Duration
	collCPU                string
	collRSS                int64
	collLog                string
	collNote, wholeNote    string
	susNote                string
	procRate, procSecs     float64
	procStartup, procFirst time.Duration
	procCPU                string
	procRSS                int64
	procInserts            string
	procLog                string
	wholeRate, wholeSecs   float64
	wholePostRate          float64
	wholePostSecs          float64
	wholeP50, wholeP99     time.Duration
	wholeCPU, susCPU       string
	wholeInserts           string
	susTarget, susAchieved float64
	susDispatched, susWant int
	susAckP50, susAckP99   time.Duration
	susDrain               time.Duration
	probes                 int
	latP50, latP99, latMax time.Duration
	runRSS, runHWM         int64
	runLog                 string
	baseRate, baseSecs     float64
	baseTables             []string
}

func (r *benchReport) print(t *testing.T) {
	var b strings.Builder
	c := r.cfg
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(&b, "\nlastmile pipeline benchmark: %s events of %d log types, %d events/request (%.0f B/event, NDJSON, no gzip), %d posters, %d CPUs\n",
		thousands(c.events), len(schemas.Catalog), c.batch, r.evSize, c.posters, runtime.NumCPU())
	row := func(stage, rate, target, detail string) {
		fmt.Fprintf(&b, "%-38s %12s  %-22s %s\n", stage, rate, target, detail)
	}
	row("stage", "events/s", "target", "details")
	row(strings.Repeat("-", 38), strings.Repeat("-", 12), strings.Repeat("-", 22), strings.Repeat("-", 40))
	row("1 collector alone (HTTP → Kafka ack)", thousands(int(r.collRate)), "",
		fmt.Sprintf("%.2f s; request p50 %s p99 %s; %s; RSS max %d MiB%s%s",
			r.collSecs, ms(r.collP50), ms(r.collP99), r.collCPU, r.collRSS, r.collNote, r.collLog))
	row("2 processor alone (Kafka → store)", thousands(int(r.procRate)), "",
		fmt.Sprintf("%.2f s from ready (start-up %s, first rows after %s); %s; RSS max %d MiB; %s%s",
			r.procSecs, secs(r.procStartup), secs(r.procFirst), r.procCPU, r.procRSS, r.procInserts, r.procLog))
	row("3 whole path (first POST → queryable)", thousands(int(r.wholeRate)),
		fmt.Sprintf("≥ %s  %s", thousands(benchTargetRate), met(r.wholeRate >= benchTargetRate)),
		fmt.Sprintf("%.2f s; %s; %s", r.wholeSecs, r.wholeCPU, r.wholeInserts))
	row("  posting only (all POSTs answered 200)", thousands(int(r.wholePostRate)), "",
		fmt.Sprintf("%.2f s; request p50 %s p99 %s%s", r.wholePostSecs, ms(r.wholeP50), ms(r.wholeP99), r.wholeNote))
	keep := "posting kept up"
	if float64(r.susDispatched) < 0.98*float64(r.susWant) {
		keep = fmt.Sprintf("posting could NOT keep up: sent %s of %s", thousands(r.susDispatched), thousands(r.susWant))
	}
	row(fmt.Sprintf("  sustained %d s at %s/s", c.seconds, thousands(c.rate)), thousands(int(r.susAchieved)), "",
		fmt.Sprintf("%s; request p50 %s p99 %s; backlog queryable %s after the last POST; %s%s", keep, ms(r.susAckP50), ms(r.susAckP99), secs(r.susDrain), r.susCPU, r.susNote))
	row(fmt.Sprintf("  ingest → queryable (%d probes)", r.probes), "",
		fmt.Sprintf("p99 ≤ %s  %s", secs(benchTargetP99), met(r.latP99 <= benchTargetP99)),
		fmt.Sprintf("p50 %s  p99 %s  max %s", secs(r.latP50), secs(r.latP99), secs(r.latMax)))
	row("  RSS of lastmile run", "",
		fmt.Sprintf("< %d MiB  %s", benchTargetRSS, met(max(r.runRSS, r.runHWM) < benchTargetRSS)),
		fmt.Sprintf("max sampled VmRSS %d MiB, VmHWM %d MiB%s", r.runRSS, r.runHWM, r.runLog))
	row("4 baseline (chDB JSONEachRow file)", thousands(int(r.baseRate)), "",
		fmt.Sprintf("%.2f s; the same events as the collector forwards them, store.InsertJSONEachRowFile into %s (one file per table, one after another), in the test process",
			r.baseSecs, strings.Join(r.baseTables, ", ")))
	ratio := 0.0
	if r.baseRate > 0 {
		ratio = r.wholeRate / r.baseRate
	}
	row("5 ratio whole path / baseline", fmt.Sprintf("%.2f", ratio), "", "")
	fmt.Print(b.String())
	t.Log(b.String())
}

// benchCollectorAndProcessor: phase 1 (collector alone) and phase 2
// (processor alone, reading what phase 1 left in the collector's broker).
func benchCollectorAndProcessor(t *testing.T, r *benchReport, dir string, batches []*benchBatch) {
	n := r.cfg.events
	coll := start(t, "collector", filepath.Join(dir, "collector"), "--kafka-listen", "127.0.0.1:0")
	collRSS := sampleProc(coll.pid())
	cpu := markCPU([]string{"collector"}, coll.pid())

	st := postAll(coll.HTTP, r.cfg.posters, batches)
	if err := st.err(); err != nil {
		t.Fatalf("collector alone: %v\n%s", err, logTail(coll))
	}
	if st.events != int64(n) {
		t.Fatalf("collector alone: %d events acknowledged, want %d", st.events, n)
	}
	wall := st.last.Sub(st.first)
	r.collSecs = wall.Seconds()
	r.collRate = float64(n) / wall.Seconds()
	r.collP50, r.collP99 = percentile(st.lat, 0.50), percentile(st.lat, 0.99)
	r.collNote = st.note()
	r.collCPU = cpu.report()
	if got := coll.metric(t, "lastmile_collector_events_produced_total"); int(got) < n {
		t.Errorf("collector produced %v events to Kafka, want %d", got, n)
	}
	t.Logf("collector alone: %d events in %.2f s = %.0f events/s", n, wall.Seconds(), r.collRate)

	// Phase 2: a separate processor process on the collector's broker.
	t1 := time.Now()
	proc := start(t, "processor", filepath.Join(dir, "processor"), "--kafka", coll.Kafka)
	ready := time.Now()
	r.procStartup = ready.Sub(t1)
	procRSS := sampleProc(proc.pid())
	pcpu := markCPU([]string{"processor", "collector (broker)"}, proc.pid(), coll.pid())
	var first time.Time
	end := benchPoll(t, proc, benchTimeout(n), "processor: all rows inserted", func() (bool, string) {
		v := int64(proc.metric(t, "lastmile_processor_rows_inserted_total"))
		if v > 0 && first.IsZero() {
			first = time.Now()
		}
		if v > int64(n) {
			t.Fatalf("processor inserted %d rows, more than the %d events posted", v, n)
		}
		return v == int64(n), fmt.Sprintf("%d of %d rows inserted", v, n)
	})
	pwall := end.Sub(ready)
	r.procSecs = pwall.Seconds()
	r.procRate = float64(n) / pwall.Seconds()
	r.procFirst = first.Sub(ready)
	r.procCPU = pcpu.report()
	r.procInserts = insertSummary(t, proc)
	for _, m := range []string{"lastmile_processor_duplicates_dropped_total", "lastmile_processor_events_rejected_total", "lastmile_processor_insert_errors_total"} {
		if v := proc.metric(t, m); v != 0 {
			t.Errorf("processor alone: %s = %v, want 0", m, v)
		}
	}
	t.Logf("processor alone: %d rows in %.2f s = %.0f events/s (%s)", n, pwall.Seconds(), r.procRate, r.procInserts)

	r.procRSS, _ = procRSS.finish()
	r.collRSS, _ = collRSS.finish()
	r.procLog = logSummary(t, "processor", proc)
	r.collLog = logSummary(t, "collector", coll)
	proc.stop()
	coll.stop()
}

// benchWholePath: phase 3, a fresh `lastmile run`: the burst of N events,
// then the sustained-rate phase with probes.
func benchWholePath(t *testing.T, r *benchReport, dir string, batches []*benchBatch) {
	n := r.cfg.events
	p := start(t, "run", filepath.Join(dir, "run"), append([]string{"--kafka-listen", "127.0.0.1:0"}, append(benchProfileArgs(), benchRunArgs()...)...)...)
	rss := sampleProc(p.pid())
	cpu := markCPU([]string{"lastmile run"}, p.pid())

	st := postAll(p.HTTP, r.cfg.posters, batches)
	if err := st.err(); err != nil {
		t.Fatalf("whole path: %v\n%s", err, logTail(p))
	}
	if st.events != int64(n) {
		t.Fatalf("whole path: %d events acknowledged, want %d", st.events, n)
	}
	end := benchPoll(t, p, benchTimeout(n), "whole path: all rows queryable", func() (bool, string) {
		v, err := storedRows(p)
		if err != nil {
			return false, err.Error()
		}
		if v > int64(n) {
			t.Fatalf("whole path: %d rows stored, more than the %d events posted", v, n)
		}
		return v == int64(n), fmt.Sprintf("%d of %d rows queryable", v, n)
	})
	wall := end.Sub(st.first)
	r.wholeSecs = wall.Seconds()
	r.wholeRate = float64(n) / wall.Seconds()
	r.wholePostSecs = st.last.Sub(st.first).Seconds()
	r.wholePostRate = float64(n) / r.wholePostSecs
	r.wholeP50, r.wholeP99 = percentile(st.lat, 0.50), percentile(st.lat, 0.99)
	r.wholeNote = st.note()
	r.wholeCPU = cpu.report()
	r.wholeInserts = insertSummary(t, p)
	t.Logf("whole path: %d events queryable %.2f s after the first POST = %.0f events/s (posting alone %.0f events/s)", n, wall.Seconds(), r.wholeRate, r.wholePostRate)

	benchSustained(t, r, p, batches)

	r.runRSS, r.runHWM = rss.finish()
	r.runLog = logSummary(t, "run", p)
	p.stop()
}

// benchSustained posts at cfg.rate for cfg.seconds, paced per 100 ms tick,
// with one probe heartbeat every 100 ms whose visibility is polled.
func benchSustained(t *testing.T, r *benchReport, p *proc, batches []*benchBatch) {
	cfg := r.cfg
	base, err := storedRows(p)
	if err != nil {
		t.Fatal(err)
	}
	const tick = 100 * time.Millisecond
	dur := time.Duration(cfg.seconds) * time.Second
	want := cfg.rate * cfg.seconds
	r.susTarget, r.susWant = float64(cfg.rate), want

	// Probes: one heartbeat every tick, on its own connection.
	type probe struct{ sent, acked, seen time.Time }
	var mu sync.Mutex
	probes := map[string]*probe{}
	probeClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
	var probeErr atomic.Pointer[error]
	var probeRetries atomic.Int64
	stopProbes := make(chan struct{})
	var probeWG sync.WaitGroup
	probeWG.Add(1)
	go func() {
		defer probeWG.Done()
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for k := 0; ; k++ {
			select {
			case <-stopProbes:
				return
			case <-tk.C:
			}
			// Each probe on its own goroutine, so a slow answer does not
			// delay the next probe.
			id := "probe-" + strconv.Itoa(k)
			pr := &probe{sent: time.Now()}
			mu.Lock()
			probes[id] = pr
			mu.Unlock()
			probeWG.Add(1)
			go func() {
				defer probeWG.Done()
				body := fmt.Sprintf(`{"event_id":%q,"log_type":"heartbeat","ts":%d,"device_id":"probe","session_id":"probe","app_version":"bench"}`, id, pr.sent.UnixMilli())
				acc, err := benchPost(probeClient, p.HTTP, []byte(body))
				if isTransportErr(err) {
					probeRetries.Add(1)
					acc, err = benchPost(probeClient, p.HTTP, []byte(body))
				}
				if err == nil && acc != 1 {
					err = fmt.Errorf("accepted %d, want 1", acc)
				}
				if err != nil {
					err = fmt.Errorf("probe %s: %w", id, err)
					probeErr.CompareAndSwap(nil, &err)
					return
				}
				mu.Lock()
				pr.acked = time.Now()
				mu.Unlock()
			}()
		}
	}()
	// Poller: when does each probe first show up in a query?
	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	var pollErrs atomic.Int64
	var lastPollErr atomic.Pointer[error]
	go func() {
		defer close(pollDone)
		// A point lookup on the primary key (app_id, trace_key), as the trace API
		// reads a device: the probe should measure ingest, not a table scan.
		q := "SELECT event_id FROM events WHERE app_id = '" + testAppID + "' AND trace_key = 'probe' AND log_type = 'heartbeat'"
		for {
			select {
			case <-stopPoll:
				return
			default:
			}
			t0 := time.Now()
			rows, err := p.sql(q)
			now := time.Now()
			if err != nil {
				pollErrs.Add(1)
				lastPollErr.Store(&err)
			} else {
				mu.Lock()
				for _, row := range rows {
					if pr := probes[fmt.Sprint(row["event_id"])]; pr != nil && pr.seen.IsZero() {
						pr.seen = now
					}
				}
				mu.Unlock()
			}
			if d := tick - time.Since(t0); d > 0 {
				time.Sleep(d)
			}
		}
	}()

	// Paced posting: by the end of tick k, rate*(k+1)/10 events dispatched.
	jobs := make(chan benchJob, cfg.posters)
	ps := startPosters(p.HTTP, cfg.posters, jobs)
	profileDone := benchProfile(t, p, dur)
	cpu := markCPU([]string{"lastmile run"}, p.pid())
	start := time.Now()
	gen, idx, dispatched := benchGen0+1, 0, 0
	for {
		el := time.Since(start)
		if el >= dur {
			break
		}
		k := int(el / tick)
		due := min(want, int(int64(cfg.rate)*int64(k+1)*int64(tick)/int64(time.Second)))
		for dispatched < due && time.Since(start) < dur {
			b := batches[idx]
			jobs <- benchJob{b: b, gen: gen}
			dispatched += b.n
			if idx++; idx == len(batches) {
				idx, gen = 0, gen+1
			}
		}
		if next := start.Add(time.Duration(k+1) * tick); time.Until(next) > 0 {
			time.Sleep(time.Until(next))
		}
	}
	close(jobs)
	st := ps.wait()
	r.susCPU = cpu.report()
	<-profileDone
	close(stopProbes)
	probeWG.Wait()
	if err := st.err(); err != nil {
		t.Fatalf("sustained phase: %v\n%s", err, logTail(p))
	}
	if e := probeErr.Load(); e != nil {
		t.Fatalf("sustained phase probe: %v", *e)
	}
	if st.events != int64(dispatched) {
		t.Fatalf("sustained phase: %d events acknowledged, %d sent", st.events, dispatched)
	}
	postWall := max(dur, st.last.Sub(start))
	r.susDispatched = dispatched
	r.susAchieved = float64(st.events) / postWall.Seconds()
	r.susAckP50, r.susAckP99 = percentile(st.lat, 0.50), percentile(st.lat, 0.99)
	r.susNote = st.note()
	if n := probeRetries.Load(); n > 0 {
		r.susNote += fmt.Sprintf("; %d probes RETRIED after a transport error", n)
	}

	mu.Lock()
	nProbes := len(probes)
	mu.Unlock()
	total := base + st.events + int64(nProbes)
	end := benchPoll(t, p, benchTimeout(int(st.events)), "sustained phase: all rows and probes queryable", func() (bool, string) {
		v, err := storedRows(p)
		if err != nil {
			return false, err.Error()
		}
		if v > total {
			t.Fatalf("sustained phase: %d rows stored, more than the %d events posted", v, total)
		}
		mu.Lock()
		unseen := 0
		for _, pr := range probes {
			if pr.seen.IsZero() {
				unseen++
			}
		}
		mu.Unlock()
		return v == total && unseen == 0, fmt.Sprintf("%d of %d rows queryable, %d of %d probes not yet seen (poll errors %d)",
			v, total, unseen, nProbes, pollErrs.Load())
	})
	close(stopPoll)
	<-pollDone
	r.susDrain = end.Sub(st.last)
	if n := pollErrs.Load(); n > 0 {
		t.Logf("sustained phase: %d probe polls failed, last: %v", n, *lastPollErr.Load())
	}

	var lat []time.Duration
	for _, pr := range probes {
		lat = append(lat, pr.seen.Sub(pr.sent))
	}
	r.probes = len(lat)
	r.latP50, r.latP99, r.latMax = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 1)
	t.Logf("sustained phase: %d events in %.2f s = %.0f events/s (target %d), %d probes: ingest→queryable p50 %s p99 %s max %s",
		st.events, postWall.Seconds(), r.susAchieved, cfg.rate, len(lat), secs(r.latP50), secs(r.latP99), secs(r.latMax))
}

// benchBaseline: phase 4, the raw store inserting the same events, as the
// collector forwards them, from JSONEachRow files, in this process.
func benchBaseline(t *testing.T, r *benchReport, dir string, ts int64, perTable map[string]int64) {
	n := r.cfg.events
	bdir := filepath.Join(dir, "baseline")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.OpenEmbedded("", filepath.Join(bdir, "chdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := schemas.Migrate(ctx, st, 30); err != nil {
		t.Fatal(err)
	}
	// Where each log_type's rows are stored: its own table, or, when its
	// name is a view, the wide events table behind it.
	out, err := st.QueryJSON(ctx, "SELECT name, engine FROM system.tables WHERE database = currentDatabase()")
	if err != nil {
		t.Fatal(err)
	}
	engines := map[string]string{}
	for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var row struct{ Name, Engine string }
		if err := json.Unmarshal(l, &row); err != nil {
			t.Fatalf("system.tables: %s: %v", l, err)
		}
		engines[row.Name] = row.Engine
	}
	target := map[string]string{} // log_type → table
	var targets []string
	for _, lt := range schemas.Catalog {
		tb := schemas.TableOf(lt.Name)
		if engines[tb] == "View" {
			tb = schemas.EventsTable
		}
		if !strings.Contains(engines[tb], "MergeTree") {
			t.Fatalf("baseline: log_type %s: table %s has engine %q, want a MergeTree", lt.Name, tb, engines[tb])
		}
		if !slices.Contains(targets, tb) {
			targets = append(targets, tb)
		}
		target[lt.Name] = tb
	}

	// The events as the collector forwards them: app_id, received_at and
	// sample_rate added, nothing dropped; one NDJSON file per table.
	fs := map[string]*os.File{}
	ws := map[string]*bufio.Writer{}
	for _, tb := range targets {
		f, err := os.Create(filepath.Join(bdir, tb+".ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		fs[tb], ws[tb] = f, bufio.NewWriterSize(f, 1<<20)
	}
	prefix := []byte(`{"app_id":"` + testAppID + `","received_at":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `,"sample_rate":1,`)
	var ev []byte
	for i := 0; i < n; i++ {
		ev = benchEvent(ev[:0], i, ts)
		w := ws[target[schemas.Catalog[i%len(schemas.Catalog)].Name]]
		w.Write(prefix)
		w.Write(ev[1:])
		w.WriteByte('\n')
	}
	for tb, w := range ws {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := fs[tb].Close(); err != nil {
			t.Fatal(err)
		}
	}

	var took time.Duration
	for _, tb := range targets {
		t0 := time.Now()
		if err := store.InsertJSONEachRowFile(ctx, st, tb, filepath.Join(bdir, tb+".ndjson")); err != nil {
			t.Fatal(err)
		}
		took += time.Since(t0)
	}
	r.baseTables = targets
	for _, lt := range schemas.Catalog {
		out, err := st.QueryJSON(ctx, "SELECT count() AS n, countIf(toYear(ts) < 2020 OR toYear(received_at) < 2020) AS bad FROM "+schemas.TableOf(lt.Name))
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			N   json.Number `json:"n"`
			Bad json.Number `json:"bad"`
		}
		if err := json.Unmarshal(out, &c); err != nil {
			t.Fatalf("%s: %s: %v", lt.Name, out, err)
		}
		if c.N.String() != strconv.FormatInt(perTable[lt.Name], 10) || c.Bad.String() != "0" {
			t.Errorf("baseline %s: %s rows (%s with a wrong time), want %d", lt.Name, c.N, c.Bad, perTable[lt.Name])
		}
	}
	r.baseSecs = took.Seconds()
	r.baseRate = float64(n) / took.Seconds()
	t.Logf("baseline: %d rows into %v in %.2f s = %.0f events/s", n, targets, took.Seconds(), r.baseRate)
}

// --- posting ---

type benchJob struct {
	b   *benchBatch
	gen int // 0: the body as generated; else rewrite ids to this generation
}

type postStats struct {
	mu          sync.Mutex
	lat         []time.Duration
	events      int64
	first, last time.Time // first POST sent, last answer received
	errs        []error
	retries     int    // requests retried after a transport error
	retryWhy    string // the first such error
}

// note is a table remark about retried requests.
func (s *postStats) note() string {
	if s.retries == 0 {
		return ""
	}
	return fmt.Sprintf("; %d requests RETRIED after a transport error (first: %s)", s.retries, s.retryWhy)
}

// transportErr is a request that got no HTTP answer.
type transportErr struct{ error }

func (e transportErr) Unwrap() error { return e.error }

func isTransportErr(err error) bool {
	_, ok := err.(transportErr)
	return ok
}

func (s *postStats) err() error {
	if len(s.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d failed requests, first: %w", len(s.errs), s.errs[0])
}

type posters struct {
	wg sync.WaitGroup
	st *postStats
}

func (p *posters) wait() *postStats { p.wg.Wait(); return p.st }

// startPosters posts the jobs with workers goroutines, each on a keep-alive
// connection. After the first failure the rest are drained, not posted.
func startPosters(addr string, workers int, jobs <-chan benchJob) *posters {
	ps := &posters{st: &postStats{}}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: workers * 2, DisableCompression: true, IdleConnTimeout: time.Minute}}
	var failed atomic.Bool
	for w := 0; w < workers; w++ {
		ps.wg.Add(1)
		go func() {
			defer ps.wg.Done()
			var buf []byte
			var lat []time.Duration
			var events int64
			var errs []error
			var first, last time.Time
			var retries int
			var retryWhy string
			for j := range jobs {
				if failed.Load() {
					continue
				}
				body := j.b.body
				if j.gen != 0 {
					buf = j.b.withGen(buf, j.gen)
					body = buf
				}
				t0 := time.Now()
				if first.IsZero() {
					first = t0
				}
				acc, err := benchPost(client, addr, body)
				if isTransportErr(err) {
					// A dropped connection: retry once, as any client would
					// (a retried payload is deduplicated), and report it.
					retries++
					if retryWhy == "" {
						retryWhy = err.Error()
					}
					time.Sleep(100 * time.Millisecond)
					acc, err = benchPost(client, addr, body)
				}
				t1 := time.Now()
				if err == nil && acc != j.b.n {
					err = fmt.Errorf("accepted %d of %d events", acc, j.b.n)
				}
				if err != nil {
					errs = append(errs, err)
					failed.Store(true)
					continue
				}
				lat = append(lat, t1.Sub(t0))
				events += int64(j.b.n)
				last = t1
			}
			s := ps.st
			s.mu.Lock()
			defer s.mu.Unlock()
			s.lat = append(s.lat, lat...)
			s.events += events
			s.errs = append(s.errs, errs...)
			s.retries += retries
			if s.retryWhy == "" {
				s.retryWhy = retryWhy
			}
			if !first.IsZero() && (s.first.IsZero() || first.Before(s.first)) {
				s.first = first
			}
			if last.After(s.last) {
				s.last = last
			}
		}()
	}
	return ps
}

// postAll posts every batch as fast as workers allow.
func postAll(addr string, workers int, batches []*benchBatch) *postStats {
	jobs := make(chan benchJob, workers)
	ps := startPosters(addr, workers, jobs)
	for _, b := range batches {
		jobs <- benchJob{b: b}
	}
	close(jobs)
	return ps.wait()
}

// benchPost posts one NDJSON body and returns how many events were accepted;
// anything but a 200 with nothing rejected or sampled out is an error.
func benchPost(c *http.Client, addr string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Lastmile-Key", testKey)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := c.Do(req)
	if err != nil {
		return 0, transportErr{err}
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, transportErr{err}
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST /v1/events: %d %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	var a struct {
		Accepted   int               `json:"accepted"`
		SampledOut int               `json:"sampled_out"`
		Rejected   []json.RawMessage `json:"rejected"`
	}
	if err := json.Unmarshal(out, &a); err != nil {
		return 0, fmt.Errorf("POST /v1/events: undecodable answer %q: %v", out, err)
	}
	if a.SampledOut != 0 || len(a.Rejected) != 0 {
		return a.Accepted, fmt.Errorf("POST /v1/events: %d sampled out, rejected %s", a.SampledOut, out)
	}
	return a.Accepted, nil
}

// --- waiting and observing ---

// benchStall is how long rows may stop arriving before the benchmark gives up.
const benchStall = 2 * time.Minute

// benchTimeout is how long rows may take to arrive before the benchmark
// calls it a failure: generous, a stall rather than slowness.
func benchTimeout(events int) time.Duration {
	return 3*time.Minute + time.Duration(events/2000)*time.Second
}

// benchPoll polls cond every 100 ms and returns when it first held. It fails
// when p exits or the timeout passes, with cond's last word and p's log.
func benchPoll(t *testing.T, p *proc, timeout time.Duration, what string, cond func() (bool, string)) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog, lastChange := time.Now(), time.Now()
	var last string
	for {
		ok, s := cond()
		if ok {
			return time.Now()
		}
		if s != last {
			last, lastChange = s, time.Now()
		}
		if time.Since(lastChange) > benchStall {
			t.Fatalf("%s: no progress for %s: %s; %s\n%s", what, benchStall, last, procStatus(t, p), logTail(p))
		}
		if !p.running() {
			t.Fatalf("%s: lastmile exited (%s): %s", what, last, logTail(p))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s; %s\n%s", timeout, what, last, procStatus(t, p), logTail(p))
		}
		if time.Since(lastLog) > 15*time.Second {
			t.Logf("waiting for %s: %s; %s", what, last, procStatus(t, p))
			lastLog = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var benchTableList = func() string {
	var q []string
	for _, lt := range schemas.Catalog {
		q = append(q, "'"+schemas.TableOf(lt.Name)+"'")
	}
	// Per-log_type names may be views over the wide table (views have no parts).
	q = append(q, "'"+schemas.EventsTable+"'")
	return strings.Join(q, ", ")
}()

// storedRows counts the stored events from the parts' metadata (cheap: no
// data is read).
func storedRows(p *proc) (int64, error) {
	rows, err := p.sql("SELECT sum(rows) AS n FROM system.parts WHERE active AND database = currentDatabase() AND table IN (" + benchTableList + ")")
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 {
		return 0, fmt.Errorf("stored rows: %v", rows)
	}
	switch v := rows[0]["n"].(type) {
	case json.Number:
		return v.Int64()
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("stored rows: %v", rows)
}

// procStatus is a one-line view of the processor's metrics, for progress
// and timeout messages.
func procStatus(t *testing.T, p *proc) string {
	return fmt.Sprintf("consumed %.0f, inserted %.0f, lag %.0f, insert errors %.0f, store_up %.0f",
		p.metric(t, "lastmile_processor_messages_consumed_total"), p.metric(t, "lastmile_processor_rows_inserted_total"),
		p.metric(t, "lastmile_processor_consumer_lag"), p.metric(t, "lastmile_processor_insert_errors_total"),
		p.metric(t, "lastmile_processor_store_up"))
}

// insertSummary: how the processor's inserts went, from its histograms.
func insertSummary(t *testing.T, p *proc) string {
	n := p.metric(t, "lastmile_processor_insert_duration_seconds_count")
	if n == 0 {
		return "no inserts"
	}
	ins := p.metric(t, "lastmile_processor_insert_duration_seconds_sum")
	rows := p.metric(t, "lastmile_processor_batch_rows_sum")
	flush := p.metric(t, "lastmile_processor_flush_duration_seconds_sum")
	s := fmt.Sprintf("%.0f inserts of %.0f rows avg, %.0f ms avg insert (%.1f s in inserts, %.1f s in flushes)",
		n, rows/n, 1000*ins/n, ins, flush)
	if dn := p.metric(t, "lastmile_processor_batch_delay_seconds_count"); dn > 0 {
		s += fmt.Sprintf(", batch delay avg %.0f ms", 1000*p.metric(t, "lastmile_processor_batch_delay_seconds_sum")/dn)
	}
	return s
}

// logSummary logs p's warnings and errors and returns a short note for the table.
func logSummary(t *testing.T, role string, p *proc) string {
	var warns, errs int
	var shown int
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		isErr, isWarn := strings.Contains(l, "level=error"), strings.Contains(l, "level=warn")
		if isErr {
			errs++
		} else if isWarn {
			warns++
		} else {
			continue
		}
		if shown < 5 {
			t.Logf("%s log: %s", role, l)
			shown++
		}
	}
	if warns+errs == 0 {
		return ""
	}
	return fmt.Sprintf("; log: %d errors, %d warnings", errs, warns)
}

// procSampler samples a process's VmRSS every second.
type procSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	max  atomic.Int64 // KiB
}

func sampleProc(pid int) *procSampler {
	s := &procSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			if v := procStatusKiB(pid, "VmRSS:"); v > s.max.Load() {
				s.max.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the largest sampled VmRSS and the
// kernel's VmHWM, in MiB. Call it while the process still runs.
func (s *procSampler) finish() (rssMiB, hwmMiB int64) {
	hwm := procStatusKiB(s.pid, "VmHWM:")
	close(s.stop)
	<-s.done
	if v := procStatusKiB(s.pid, "VmRSS:"); v > s.max.Load() {
		s.max.Store(v)
	}
	return s.max.Load() / 1024, hwm / 1024
}

func procStatusKiB(pid int, key string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

// procCPU is the CPU time (user + system) a process has used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// cpuMark remembers CPU counters, to report the cores used since.
type cpuMark struct {
	at      time.Time
	names   []string
	pids    []int
	procs   []time.Duration
	self    time.Duration
	machine time.Duration
}

func markCPU(names []string, pids ...int) cpuMark {
	m := cpuMark{at: time.Now(), names: names, pids: pids, self: selfCPU(), machine: machineCPU()}
	for _, pid := range pids {
		m.procs = append(m.procs, procCPU(pid))
	}
	return m
}

// report: cores used since the mark by each process, by this test process
// (the load generator) and by everything else on the machine.
func (m cpuMark) report() string {
	el := time.Since(m.at).Seconds()
	var parts []string
	var sum float64
	for i, pid := range m.pids {
		c := (procCPU(pid) - m.procs[i]).Seconds() / el
		sum += c
		parts = append(parts, fmt.Sprintf("%s %.2f", m.names[i], c))
	}
	self := (selfCPU() - m.self).Seconds() / el
	others := max(0, (machineCPU()-m.machine).Seconds()/el-sum-self)
	return fmt.Sprintf("CPU cores: %s, test process %.2f, other processes %.2f", strings.Join(parts, ", "), self, others)
}

// machineCPU is the busy CPU time of the whole machine, from /proc/stat.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * (time.Second / 100)
}

// selfCPU is the CPU time of this test process (the load generator).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// --- formatting ---

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s" }

// benchProfile fetches a CPU profile of `lastmile run` covering the sustained
// phase into $LASTMILE_BENCH_PPROF, when set, for `go tool pprof`. The
// returned channel closes when the profile is written (at once when unset).
func benchProfile(t *testing.T, p *proc, dur time.Duration) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv("LASTMILE_BENCH_PPROF")
	if path == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		secs := max(1, int(dur.Seconds())-2)
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.Metrics+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
		req.Header.Set("Authorization", "Bearer "+benchAdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = fmt.Errorf("%s", resp.Status)
		}
		if err != nil {
			t.Errorf("cpu profile: %v", err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		if err != nil {
			t.Errorf("cpu profile: %v", err)
			return
		}
		t.Logf("cpu profile of the sustained phase: %s (go tool pprof %s)", path, path)
	}()
	return done
}

const benchAdminToken = "e2e-admin-token"

// benchProfileArgs turn profiling on for benchProfile, only when it will run.
func benchProfileArgs() []string {
	if os.Getenv("LASTMILE_BENCH_PPROF") == "" {
		return nil
	}
	return []string{"--pprof", "--admin-token", benchAdminToken}
}

// benchRunArgs are extra flags for the benchmarked `lastmile run`, from
// LASTMILE_BENCH_RUN_ARGS (space-separated), to try settings such as
// --partitions 16 without editing the benchmark.
func benchRunArgs() []string { return strings.Fields(os.Getenv("LASTMILE_BENCH_RUN_ARGS")) }
