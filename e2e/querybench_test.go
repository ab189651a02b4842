package e2e

import (
	"container/heap"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/processor"
	"github.com/lastmile-qoe/lastmile/processor/consolidator"
	"github.com/lastmile-qoe/lastmile/schemas"
)

var benchQuery = flag.Bool("bench-query", false, "run TestBenchQuery: 50M events in the embedded store, trace and metrics latency")

// queryData describes a generated data set: 24 hours of play sessions of
// many devices across regions, ISPs and CDNs, with the stream-level server
// events of their rooms.
type queryData struct {
	devices, users []string
	sessions       []string
	rows           int
}

var (
	regions  = []string{"north", "south", "east", "west", "central", "overseas"}
	isps     = []string{"isp-a", "isp-b", "isp-c", "isp-d", "isp-e"}
	cdns     = []string{"cdn-a", "cdn-b", "cdn-c"}
	rends    = []string{"source", "1080p", "720p", "480p", "360p"}
	versions = []string{"5.0.0", "5.0.1", "5.1.0", "5.1.1", "5.2.0", "5.2.1", "5.3.0", "5.3.1"}
	oses     = []string{"android", "ios", "web"}
	networks = []string{"wifi", "4g", "5g", "ethernet"}
	phases   = schemas.FirstFramePhases
)

// benchPending is an event waiting for the generator's clock to pass it.
type benchPending struct {
	ts    time.Time
	seq   int
	write func()
}

// benchQueue orders pending events by time, then by when they were made.
type benchQueue []benchPending

func (q benchQueue) Len() int { return len(q) }
func (q benchQueue) Less(i, j int) bool {
	if !q[i].ts.Equal(q[j].ts) {
		return q[i].ts.Before(q[j].ts)
	}
	return q[i].seq < q[j].seq
}
func (q benchQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *benchQueue) Push(x any)   { *q = append(*q, x.(benchPending)) }
func (q *benchQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// eventWriter fills cleaned events straight into the processor's Arrow
// builder and inserts them in large batches: the real insert path without
// the cost of JSON, so 50M rows take minutes.
type eventWriter struct {
	st       *store.Embedded
	rb       *processor.RowBuilder
	sessions *processor.SessionIndex // trace_sessions, as the processor writes it
	ev       schemas.Event
	rows     int
	t        testing.TB
	inserted time.Duration
}

func (w *eventWriter) begin(logType string, ts time.Time) {
	lt := schemas.Lookup(logType)
	w.ev.Type = lt
	n := len(lt.Columns())
	if cap(w.ev.Vals) < n {
		w.ev.Vals = make([]schemas.Value, n)
	}
	w.ev.Vals = w.ev.Vals[:n]
	for i := range w.ev.Vals {
		w.ev.Vals[i] = schemas.Value{S: w.ev.Vals[i].S[:0]}
	}
	w.str("log_type", logType)
	w.str("app_id", "bench")
	w.str("source", lt.Source)
	w.time("ts", ts)
	w.time("received_at", ts.Add(300*time.Millisecond))
	w.num("sample_rate", 1)
	w.str("event_id", "e"+strconv.Itoa(w.rows))
}

func (w *eventWriter) val(name string) *schemas.Value {
	v, ok := w.ev.Get(name)
	if !ok {
		w.t.Fatalf("%s has no field %s", w.ev.Type.Name, name)
	}
	v.Set = true
	return v
}

func (w *eventWriter) str(name, s string)         { v := w.val(name); v.S = append(v.S[:0], s...) }
func (w *eventWriter) int(name string, n int64)   { w.val(name).I = n }
func (w *eventWriter) num(name string, x float64) { w.val(name).F = x }
func (w *eventWriter) flag(name string, b bool)   { w.val(name).B = b }
func (w *eventWriter) time(name string, t time.Time) {
	w.val(name).I = t.UnixMilli()
}

func (w *eventWriter) end() {
	w.rb.Append(&w.ev, 0, int64(w.rows))
	w.sessions.Observe(&w.ev)
	w.rows++
	if w.rb.Rows() >= 250_000 {
		w.flush()
	}
}

func (w *eventWriter) flush() {
	if w.rb.Rows() == 0 {
		return
	}
	rec := w.rb.Build()
	defer rec.Release()
	t0 := time.Now()
	if idx := w.sessions.Build(); idx != nil {
		defer idx.Release()
		if err := w.st.InsertArrow(context.Background(), schemas.TraceSessionsTable, idx, ""); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := w.st.InsertArrow(context.Background(), schemas.EventsTable, rec, ""); err != nil {
		w.t.Fatal(err)
	}
	w.inserted += time.Since(t0)
}

// generateQueryData writes about n events covering the 24 h before now into
// dataDir/chdb, the layout `lastmile query --data dataDir` opens.
func generateQueryData(t testing.TB, dataDir string, n int, now time.Time) *queryData {
	st, err := store.OpenEmbedded("", filepath.Join(dataDir, "chdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := schemas.Migrate(context.Background(), st, 30); err != nil {
		t.Fatal(err)
	}
	w := &eventWriter{st: st, rb: processor.NewRowBuilder(), sessions: processor.NewSessionIndex(processor.DefaultSessionCache), t: t}
	rng := rand.New(rand.NewPCG(7, 11))
	ndev := max(1000, n/125)   // ~400k devices for 50M events
	rooms := max(5, n/100_000) // stream-level events stay ~4% of the rows
	start := now.Add(-24 * time.Hour)
	d := &queryData{}
	t0 := time.Now()

	// Events are written in the order they happen, as the pipeline writes
	// them (each insert holds the events that arrived in the last moments),
	// so parts cover spans of time, not the whole day: sessions start one
	// after another over 23 hours, and each event waits in a queue ordered
	// by time until the clock passes it.
	q := &benchQueue{}
	generated := 0
	later := func(ts time.Time, write func()) {
		heap.Push(q, benchPending{ts: ts, seq: generated, write: write})
		generated++
	}
	drain := func(until time.Time) {
		for q.Len() > 0 && (*q)[0].ts.Before(until) {
			heap.Pop(q).(benchPending).write()
		}
	}
	// Stream-level server events: every room's stream, two minutes apart,
	// for each rendition's transcode worker and the origin.
	nextTick := start
	tick := func(ts time.Time) {
		for room := 0; room < rooms; room++ {
			stream := "live/room-" + strconv.Itoa(room)
			later(ts, func() {
				w.begin("origin_stream", ts)
				w.str("stream_id", stream)
				w.str("room_id", "room-"+strconv.Itoa(room))
				w.str("node_id", "origin-1")
				w.str("state", "stats")
				w.num("bitrate_kbps", 4000)
				w.end()
			})
			for _, r := range rends[1:] {
				later(ts, func() {
					w.begin("transcode", ts)
					w.str("stream_id", stream)
					w.str("rendition", r)
					w.str("node_id", "transcode-1")
					w.str("status", "ok")
					w.int("latency_ms", int64(200+rng.IntN(300)))
					w.num("fps", 30)
					w.end()
				})
			}
		}
	}

	// Play sessions: about 26 events each (a start, an edge access, a first
	// frame, 5–39 heartbeats, a stall now and then, a stop), 27 with their
	// share of the stream-level events: so many sessions fill 23 hours.
	const perSession = 27
	estSessions := max(1, n/perSession)
	for generated < n {
		ts := start.Add(time.Duration(float64(23*time.Hour) * float64(len(d.sessions)) / float64(estSessions)))
		ts = ts.Add(time.Duration(rng.Int64N(int64(time.Second))))
		if end := now.Add(-25 * time.Minute); ts.After(end) {
			ts = end
		}
		for ; !nextTick.After(ts); nextTick = nextTick.Add(2 * time.Minute) {
			tick(nextTick)
		}
		drain(ts)
		dev := rng.IntN(ndev)
		device := "dev-" + strconv.Itoa(dev)
		user := "user-" + strconv.Itoa(dev/2)
		session := "s-" + strconv.Itoa(len(d.sessions))
		room := rng.IntN(rooms)
		region := regions[dev%len(regions)]
		cdn := cdns[rng.IntN(len(cdns))]
		rend := rends[rng.IntN(len(rends))]
		node := fmt.Sprintf("edge-%s-%s-%d", cdn, region, rng.IntN(4))
		common := func() {
			w.str("device_id", device)
			w.str("user_id", user)
			w.str("session_id", session)
			w.str("room_id", "room-"+strconv.Itoa(room))
			w.str("stream_id", "live/room-"+strconv.Itoa(room))
			w.str("region", region)
			w.str("isp", isps[dev%len(isps)])
			w.str("cdn", cdn)
			w.str("node_id", node)
			w.str("protocol", []string{"http-flv", "hls"}[dev%2])
			w.str("rendition", rend)
			w.str("app_version", versions[dev%len(versions)])
			w.str("os", oses[dev%len(oses)])
			w.str("network", networks[dev%len(networks)])
		}
		later(ts, func() {
			w.begin("play_start", ts)
			common()
			w.str("line", "main")
			w.end()
		})
		hit := rng.IntN(10) > 0
		later(ts.Add(60*time.Millisecond), func() {
			w.begin("edge_access", ts.Add(60*time.Millisecond))
			common()
			w.int("http_status", 200)
			w.flag("cache_hit", hit)
			if !hit {
				w.int("back_to_source_ms", int64(50+rng.IntN(200)))
			}
			w.int("first_byte_ms", int64(20+rng.IntN(100)))
			w.end()
		})
		failed := rng.IntN(100) < 3
		var playMs int64
		stalls := 0
		if !failed {
			later(ts.Add(800*time.Millisecond), func() {
				w.begin("first_frame", ts.Add(800*time.Millisecond))
				common()
				w.int("total_ms", int64(400+rng.IntN(1200)))
				w.int("dns_ms", int64(5+rng.IntN(50)))
				w.int("tcp_connect_ms", int64(10+rng.IntN(80)))
				w.int("tcp_first_packet_ms", int64(30+rng.IntN(150)))
				w.int("video_first_packet_ms", int64(50+rng.IntN(300)))
				w.int("first_decode_ms", int64(20+rng.IntN(100)))
				w.int("first_render_ms", int64(10+rng.IntN(50)))
				w.flag("edge_cached", hit)
				w.end()
			})
			beats := 5 + rng.IntN(35)
			playMs = int64(beats) * 30_000
			for b := 1; b <= beats; b++ {
				bt := ts.Add(time.Duration(b) * 30 * time.Second)
				later(bt, func() {
					w.begin("heartbeat", bt)
					common()
					w.int("interval_ms", 30_000)
					w.int("buffer_ms", int64(500+rng.IntN(3000)))
					w.num("bitrate_kbps", 2500)
					w.int("latency_ms", int64(1500+rng.IntN(2500)))
					w.str("state", "playing")
					w.end()
				})
				if rng.IntN(30) == 0 {
					stalls++
					st := bt.Add(5 * time.Second)
					later(st, func() {
						w.begin("stall", st)
						common()
						w.int("duration_ms", int64(200+rng.IntN(3000)))
						w.str("cause", "network")
						w.end()
					})
				}
			}
		}
		stop, phase, nStalls := ts.Add(time.Duration(playMs)*time.Millisecond+time.Second), phases[rng.IntN(len(phases))], stalls
		later(stop, func() {
			w.begin("play_stop", stop)
			common()
			if failed {
				w.int("code", 2001)
				w.str("first_frame_blocked", phase)
			} else {
				w.int("code", 0)
			}
			w.int("play_duration_ms", playMs)
			w.int("stall_count", int64(nStalls))
			w.end()
		})
		d.sessions = append(d.sessions, session)
		if len(d.devices) < 5000 && rng.IntN(50) == 0 {
			d.devices = append(d.devices, device)
			d.users = append(d.users, user)
		}
		if len(d.sessions)%200_000 == 0 {
			t.Logf("generated %d events (%d sessions) in %s", generated, len(d.sessions), time.Since(t0).Round(time.Second))
		}
	}
	for ; nextTick.Before(now); nextTick = nextTick.Add(2 * time.Minute) {
		tick(nextTick)
	}
	drain(now.Add(time.Hour))
	w.flush()
	d.rows = w.rows
	t.Logf("generated %d events (%d sessions) in %s (%s of it in inserts)", w.rows, len(d.sessions), time.Since(t0).Round(time.Second), w.inserted.Round(time.Second))
	consolidateClosedDays(t, st)
	return d
}

// consolidateClosedDays does what a running processor's consolidator would
// have done by now: merge the day before today into one part, once the
// background merges of the fresh parts are done.
func consolidateClosedDays(t testing.TB, st *store.Embedded) {
	ctx := context.Background()
	t0 := time.Now()
	for time.Since(t0) < 10*time.Minute {
		out, err := st.QueryJSON(ctx, "SELECT toUInt32(count()) AS n FROM system.merges")
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ N int }
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("system.merges: %s: %v", out, err)
		}
		if m.N == 0 {
			break
		}
		time.Sleep(5 * time.Second)
	}
	t1 := time.Now()
	done, err := consolidator.New(consolidator.Config{MaxBytes: 8 << 30, Quiet: -1}, st, nil, log.NewNopLogger()).Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range done {
		t.Logf("consolidated day %s of %s: %d parts, %.2f GiB, after %s of merges, in %s", d.PartitionID, d.Table, len(d.Rows), float64(d.Bytes)/(1<<30),
			t1.Sub(t0).Round(time.Second), time.Since(t1).Round(time.Second))
	}
}

// TestBenchQuery: with 50 million events in the embedded store, the p95 of a
// trace lookup (target ≤ 50 ms by device, ≤ 75 ms by user) and of a 24 h metrics query grouped by CDN ×
// region (target ≤ 300 ms), the data size on disk and the RSS of the query
// process. LASTMILE_BENCH_QUERY_DIR keeps the generated data between runs.
func TestBenchQuery(t *testing.T) {
	if !*benchQuery {
		t.Skip("query benchmark: run with -bench-query (make bench does)")
	}
	n := 50_000_000
	if s := os.Getenv("LASTMILE_BENCH_QUERY_EVENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := os.Getenv("LASTMILE_BENCH_QUERY_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	now := time.Now()
	meta := filepath.Join(dir, "bench.json")
	var m benchMeta
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &m) == nil && m.Rows >= n && now.Sub(m.Generated) < 12*time.Hour {
		t.Logf("reusing %d events in %s", m.Rows, dir)
	} else {
		os.RemoveAll(filepath.Join(dir, "chdb"))
		d := generateQueryData(t, dir, n, now)
		b, _ := json.Marshal(benchMeta{Devices: d.devices, Users: d.users, Rows: d.rows, Generated: now})
		if err := os.WriteFile(meta, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	p := start(t, "query", dir, "--log-level", "warn")
	sql := func(q string, v any) {
		req, _ := http.NewRequest("GET", "http://"+p.HTTP+"/api/v1/sql?"+url.Values{"q": {q}}.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+queryToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Let the background merges of the fresh data finish (up to 10
	// minutes): the benchmark measures a store at rest, not one rewriting
	// its parts at the same time.
	t0 := time.Now()
	for time.Since(t0) < 10*time.Minute {
		time.Sleep(5 * time.Second)
		var m struct{ N int }
		if sql("SELECT count() AS N FROM system.merges", &m); m.N == 0 {
			break
		}
	}
	var parts struct {
		N    int
		Size string
	}
	sql("SELECT count() AS N, formatReadableSize(sum(bytes_on_disk)) AS Size FROM system.parts WHERE active AND table = 'events'", &parts)
	t.Logf("merges settled after %s: events table %s in %d parts", time.Since(t0).Round(time.Second), parts.Size, parts.N)
	get := func(path string, q url.Values) (time.Duration, int) {
		req, _ := http.NewRequest("GET", "http://"+p.HTTP+path+"?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+queryToken)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0), resp.StatusCode
	}
	report := func(name string, lat []time.Duration, cpu time.Duration, target time.Duration) {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p95 := lat[len(lat)*95/100]
		verdict := "met"
		if p95 > target {
			verdict = "MISSED"
		}
		// CPU per request of the query process (of the machine's 2 cores):
		// what a request costs whatever else the machine is doing.
		line := fmt.Sprintf("%-44s n=%-4d p50 %-9s p95 %-9s max %-9s cpu %-8s target p95 ≤ %s %s", name, len(lat),
			lat[len(lat)/2].Round(100*time.Microsecond), p95.Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond),
			(cpu / time.Duration(len(lat))).Round(100*time.Microsecond), target, verdict)
		t.Log(line)
		fmt.Println(line)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	devices, users := loadBenchIDs(t, meta)
	for _, c := range []struct {
		name   string
		key    string
		ids    []string
		target time.Duration
	}{{"trace by device_id (24 h)", "device_id", devices, 50 * time.Millisecond}, {"trace by user_id (24 h)", "user_id", users, 75 * time.Millisecond}} {
		get("/api/v1/trace", url.Values{c.key: {c.ids[0]}}) // warm
		var lat []time.Duration
		cpu0 := procCPU(p.pid())
		for i := 0; i < 200; i++ {
			d, code := get("/api/v1/trace", url.Values{c.key: {pick(c.ids)}})
			if code != 200 {
				t.Fatalf("trace answered %d", code)
			}
			lat = append(lat, d)
		}
		report(c.name, lat, procCPU(p.pid())-cpu0, c.target)
	}
	for _, m := range benchMetrics {
		q := url.Values{"metric": {m}, "since": {"24h"}, "group_by": {"cdn,region"}, "step": {"1h"}}
		if _, code := get("/api/v1/metrics", q); code != 200 {
			t.Fatalf("metrics %s answered %d", m, code)
		}
		var lat []time.Duration
		cpu0 := procCPU(p.pid())
		for i := 0; i < 40; i++ {
			d, _ := get("/api/v1/metrics", q)
			lat = append(lat, d)
		}
		report("metrics "+m+" 24h by cdn×region", lat, procCPU(p.pid())-cpu0, 300*time.Millisecond)
	}
	// Active parts only: du also counts merged-away parts that wait a few
	// minutes to be deleted.
	disk := fmt.Sprintf("events table %s in %d parts, ", parts.Size, parts.N)
	du, _ := exec.Command("du", "-sh", filepath.Join(dir, "chdb")).Output()
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	var rss []string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "VmHWM") {
			rss = append(rss, strings.Join(strings.Fields(l), " "))
		}
	}
	line := fmt.Sprintf("data on disk: %sstore directory %s; lastmile query: %s", disk, strings.Fields(string(du))[0], strings.Join(rss, ", "))
	t.Log(line)
	fmt.Println(line)
	p.stop()
}

// benchMetrics are the metrics the benchmark times.
var benchMetrics = []string{"play_success_rate", "video_startup_time"}

// benchMeta is what a generated data set's bench.json remembers.
type benchMeta struct {
	Devices, Users []string
	Rows           int
	Generated      time.Time
}

func loadBenchIDs(t testing.TB, meta string) (devices, users []string) {
	var m benchMeta
	b, err := os.ReadFile(meta)
	if err != nil || json.Unmarshal(b, &m) != nil || len(m.Devices) == 0 {
		t.Fatalf("no device ids in %s", meta)
	}
	return m.Devices, m.Users
}
