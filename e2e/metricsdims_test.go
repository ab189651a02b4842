package e2e

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
)

// dimsPlays is the crafted traffic of TestMetricsDims: six viewers who play
// (in two rooms and three streams, on two app versions, 5.3.0 with render
// stalls), one who leaves before the first frame, and four who fail to
// start on each of three attempts of one session (a view with its retries).
type dimsPlays struct {
	body []byte
	n    int
	t0   int64
}

func (d *dimsPlays) ev(logType, dev, room, stream, version string, at int64, extra string) {
	d.n++
	d.body = fmt.Appendf(d.body, `{"event_id":"md-%d","log_type":%q,"ts":%d,"device_id":%q,"session_id":"%s-s",`+
		`"room_id":%q,"stream_id":%q,"app_version":%q,"cdn":"cdn-a","region":"north"%s}`+"\n",
		d.n, logType, d.t0+at, dev, dev, room, stream, version, extra)
}

// play: a play of two 10 s heartbeats with stallMs of rebuffering each, and
// render stalls of rs[i] ms in heartbeat i.
func (d *dimsPlays) play(dev, room, stream, version string, stallMs int64, rs ...int64) {
	d.ev("play_start", dev, room, stream, version, 0, `,"attempt":0`)
	d.ev("first_frame", dev, room, stream, version, 700, `,"total_ms":700`)
	var n, total int64
	for i := range 2 {
		var r, c int64
		if i < len(rs) {
			r, c = rs[i], 2-int64(i) // 2 render stalls in the first heartbeat, 1 in the second
		}
		n, total = n+c, total+r
		d.ev("heartbeat", dev, room, stream, version, int64(i+1)*10_000, fmt.Sprintf(
			`,"interval_ms":10000,"stall_ms":%d,"stall_count":1,"render_stall_ms":%d,"render_stall_count":%d,"state":"playing"`, stallMs, r, c))
	}
	d.ev("play_stop", dev, room, stream, version, 21_000, fmt.Sprintf(
		`,"code":0,"play_duration_ms":21000,"stall_count":2,"render_stall_count":%d,"render_stall_total_ms":%d,"will_retry":false`, n, total))
}

// failing: three attempts in one session, each failing before the first
// frame; the player retries the first two.
func (d *dimsPlays) failing(dev, room, stream string, code int, blocked string) {
	for a := range 3 {
		at := int64(a) * 5_000
		retry := "true"
		if a == 2 {
			retry = "false"
		}
		d.ev("play_start", dev, room, stream, "5.2.0", at, fmt.Sprintf(`,"attempt":%d`, a))
		d.ev("play_stop", dev, room, stream, "5.2.0", at+4_000, fmt.Sprintf(
			`,"code":%d,"first_frame_blocked":%q,"play_duration_ms":4000,"will_retry":%s`, code, blocked, retry))
	}
}

// TestMetricsDims posts crafted plays through the collector of a real
// `lastmile run` and checks the dimensions room_id, stream_id, code and
// first_frame_blocked, the render-stall metrics and the per-view failure
// metrics, from raw events and from the rollups (a window of 3 days).
func TestMetricsDims(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")

	d := &dimsPlays{t0: time.Now().Add(-10 * time.Minute).UnixMilli()}
	const a720, a360, b720 = "live/room-a/720p", "live/room-a/360p", "live/room-b/720p"
	d.play("g1", "room-a", a720, "5.2.0", 500)
	d.play("g2", "room-a", a720, "5.3.0", 500, 1500, 500)
	d.play("g3", "room-a", a360, "5.2.0", 1000)
	d.play("g4", "room-a", a360, "5.3.0", 1000, 1500, 500)
	d.play("g5", "room-b", b720, "5.2.0", 2000)
	d.play("g6", "room-b", b720, "5.3.0", 2000)
	d.ev("play_start", "e1", "room-a", a720, "5.2.0", 0, `,"attempt":0`)
	d.ev("play_stop", "e1", "room-a", a720, "5.2.0", 3000, `,"code":0,"first_frame_blocked":"tcp_connect","play_duration_ms":3000`)
	d.failing("f1", "room-b", b720, 2001, "dns")
	d.failing("f2", "room-b", b720, 2001, "dns")
	d.failing("f3", "room-b", b720, 3002, "tcp_connect")
	d.failing("f4", "room-b", b720, 3002, "tcp_connect")
	if r, err := p.post(d.body, false, testKey); err != nil || r.Status != 200 || r.Accepted != d.n {
		t.Fatalf("post: %v %+v", err, r)
	}

	q := func(metric string, kv ...string) url.Values {
		v := url.Values{"metric": {metric}, "since": {"1h"}, "step": {"1m"}, "app_id": {testAppID}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	// 6 + 1 + 12 play_stops, 12 heartbeats.
	waitFor(t, 60*time.Second, "every play_stop and heartbeat in the metrics", func() (bool, string) {
		var got []int64
		for _, m := range []string{"video_start_failure_rate", "rebuffering_ratio"} {
			code, a, msg := p.getMetrics(t, q(m, "read", "rollup"))
			if code != 200 {
				return false, msg
			}
			if len(a.Series) != 1 {
				return false, fmt.Sprintf("%s: %+v", m, a.Series)
			}
			got = append(got, a.Series[0].Samples)
		}
		return got[0] == 19 && got[1] == 12, fmt.Sprint(got)
	})

	type check struct {
		metric, groupBy string
		filter          []string
		want            map[string]float64 // group (values joined by /) → total
		samples         map[string]int64   // group → stored events, when checked
	}
	checks := []check{
		// Per room and stream: rebuffering 1 s of 20 s per 1,000 ms of stall_ms per heartbeat.
		{"rebuffering_ratio", "room_id", nil, map[string]float64{"room-a": 7.5, "room-b": 20}, nil},
		{"rebuffering_ratio", "stream_id", nil, map[string]float64{a360: 10, a720: 5, b720: 20}, nil},
		{"rebuffering_ratio", "room_id,stream_id", []string{"room_id", "room-a"}, map[string]float64{"room-a/" + a360: 10, "room-a/" + a720: 5}, nil},
		// room-a: no start failure in 4 plays and 1 exit; room-b: 12 failed attempts of 14.
		{"video_start_failure_rate", "room_id", nil, map[string]float64{"room-a": 0, "room-b": 100 * 12.0 / 14}, map[string]int64{"room-a": 5, "room-b": 14}},
		{"views", "room_id", nil, map[string]float64{"room-a": 5, "room-b": 6}, nil},
		// By a play_stop's code and the phase it was stuck in.
		{"video_start_failure_rate", "code", nil, map[string]float64{"0": 0, "2001": 100, "3002": 100},
			map[string]int64{"0": 7, "2001": 6, "3002": 6}},
		{"video_start_failure_rate", "first_frame_blocked", nil, map[string]float64{"": 0, "dns": 100, "tcp_connect": 100 * 6.0 / 7},
			map[string]int64{"": 6, "dns": 6, "tcp_connect": 7}},
		{"video_start_failure_rate", "code,first_frame_blocked", []string{"room_id", "room-b"},
			map[string]float64{"0/": 0, "2001/dns": 100, "3002/tcp_connect": 100}, nil},
		// Four viewers failing three attempts each: 12 failed attempts, 4 failed views.
		{"video_start_failure_rate", "", []string{"code", "2001,3002"}, map[string]float64{"": 100}, map[string]int64{"": 12}},
		{"views", "", []string{"code", "2001,3002"}, map[string]float64{"": 4}, nil},
		{"views", "", nil, map[string]float64{"": 11}, nil},
		{"view_start_failure_rate", "", nil, map[string]float64{"": 100 * 4.0 / 11}, nil},
		{"video_start_failure_rate", "", nil, map[string]float64{"": 100 * 12.0 / 19}, nil},
		{"view_start_failure_rate", "first_frame_blocked", nil, map[string]float64{"": 0, "dns": 100, "tcp_connect": 100 * 2.0 / 3}, nil},
		{"view_playback_failure_rate", "", nil, map[string]float64{"": 0}, nil},
		// Render stalls: 5.3.0 played 60 s, of which 4 s in 6 render stalls, in 2 of its 3 plays.
		{"render_stall_ratio", "app_version", nil, map[string]float64{"5.2.0": 0, "5.3.0": 100 * 4000.0 / 60000}, nil},
		{"render_stall_frequency", "app_version", nil, map[string]float64{"5.2.0": 0, "5.3.0": 6 * 3600_000.0 / 60000}, nil},
		{"render_stall_session_rate", "app_version", nil, map[string]float64{"5.2.0": 0, "5.3.0": 100 * 2.0 / 3}, nil},
		{"render_stall_ratio", "app_version,room_id", []string{"stream_id", a720 + "," + b720},
			map[string]float64{"5.2.0/room-a": 0, "5.2.0/room-b": 0, "5.3.0/room-a": 100 * 2000.0 / 20000, "5.3.0/room-b": 0}, nil},
	}
	for _, c := range checks {
		var raw *query.MetricsAnswer
		// The last hour from raw events and from the minute rollup; three
		// days from the hourly rollup, which must agree.
		for _, shape := range [][]string{{"read", "raw"}, {"read", "rollup"}, {"since", "3d", "step", "1h"}} {
			v := q(c.metric, append(append([]string{"group_by", c.groupBy}, c.filter...), shape...)...)
			code, a, msg := p.getMetrics(t, v)
			if code != 200 {
				t.Errorf("%s: %d %s", v.Encode(), code, msg)
				continue
			}
			wantTable := map[string]string{"raw": "events", "rollup": "qoe_1m", "3d": "qoe_1h"}[shape[1]]
			if a.Table != wantTable {
				t.Errorf("%s: read %s, want %s", v.Encode(), a.Table, wantTable)
			}
			if got := totals(a); !sameTotals(got, c.want) {
				t.Errorf("%s: totals %v, want %v", v.Encode(), got, c.want)
			}
			for _, s := range a.Series {
				if n, ok := c.samples[groupKey(a, s)]; ok && s.Samples != n {
					t.Errorf("%s %v: %d samples, want %d", v.Encode(), s.Group, s.Samples, n)
				}
			}
			if raw == nil {
				raw = a
			} else if fmt.Sprint(totals(a)) != fmt.Sprint(totals(raw)) {
				t.Errorf("%s: totals %v, raw events %v", v.Encode(), totals(a), totals(raw))
			}
		}
	}

	// code and first_frame_blocked split play_stop metrics only.
	code, _, msg := p.getMetrics(t, q("rebuffering_ratio", "group_by", "code"))
	if code != 400 || !strings.Contains(msg, "group_by code applies to the metrics that read play_stop (") || !strings.Contains(msg, "view_start_failure_rate") {
		t.Errorf("rebuffering_ratio by code: %d %q, want 400 naming the play_stop metrics", code, msg)
	}

	// The CLI takes the new dimensions too.
	out, err := exec.Command(lastmileBin(t), "metrics", "--addr", "http://"+p.HTTP, "--token", queryToken, "--app", testAppID,
		"--metric", "views", "--since", "3d", "--group-by", "room_id", "--filter", "code=2001,3002").CombinedOutput()
	if err != nil {
		t.Fatalf("lastmile metrics: %v\n%s", err, out)
	}
	var rows []string
	for _, l := range strings.Split(string(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	if table := strings.Join(rows, "\n"); !strings.Contains(table, "\nroom_id total samples\nroom-b 4 12\n") {
		t.Errorf("lastmile metrics views by room_id, code=2001,3002:\n%s", out)
	}
	p.stop()
}

func groupKey(a *query.MetricsAnswer, s query.Series) string {
	var g []string
	for _, d := range a.GroupBy {
		g = append(g, s.Group[d])
	}
	return strings.Join(g, "/")
}

// sameTotals compares totals to 1e-9, relative.
func sameTotals(got, want map[string]float64) bool {
	if len(got) != len(want) {
		return false
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, ok := got[k]
		if !ok || math.Abs(g-want[k]) > 1e-9*math.Max(1, math.Abs(want[k])) {
			return false
		}
	}
	return true
}

// TestMetricsDimsUpgrade: a store written by a build before migration 0008
// ($LASTMILE_OLD_BIN; skipped without it) is opened by this one, which adds
// the columns and rebuilds the rollups from the stored events: the old
// events are then grouped by room and code from the rollups, as from raw.
func TestMetricsDimsUpgrade(t *testing.T) {
	old := os.Getenv("LASTMILE_OLD_BIN")
	if old == "" {
		t.Skip("set LASTMILE_OLD_BIN to a build from before migration 0008")
	}
	bin := lastmileBin(t)
	data := filepath.Join(t.TempDir(), "data")
	binOnce.path = old
	p := start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
	binOnce.path = bin
	d := &dimsPlays{t0: time.Now().Add(-10 * time.Minute).UnixMilli()}
	d.play("g1", "room-a", "live/room-a/720p", "5.2.0", 500)
	d.play("g5", "room-b", "live/room-b/720p", "5.2.0", 2000)
	d.failing("f1", "room-b", "live/room-b/720p", 2001, "dns")
	if r, err := p.post(d.body, false, testKey); err != nil || r.Status != 200 || r.Accepted != d.n {
		t.Fatalf("post: %v %+v", err, r)
	}
	waitStoredEvents(t, p, d.n)
	p.stop()

	p = start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
	for _, c := range []struct {
		metric, groupBy string
		want            map[string]float64
	}{
		{"rebuffering_ratio", "room_id,stream_id", map[string]float64{"room-a/live/room-a/720p": 5, "room-b/live/room-b/720p": 20}},
		{"video_start_failure_rate", "code,first_frame_blocked", map[string]float64{"0/": 0, "2001/dns": 100}},
		// Without will_retry, each attempt of the old events is a view.
		{"views", "room_id", map[string]float64{"room-a": 1, "room-b": 4}},
	} {
		var prev map[string]float64
		for _, shape := range [][]string{{"read", "raw", "since", "1h", "step", "1m"}, {"since", "3d", "step", "1h"}} {
			v := url.Values{"metric": {c.metric}, "group_by": {c.groupBy}, "app_id": {testAppID}}
			for i := 0; i < len(shape); i += 2 {
				v.Set(shape[i], shape[i+1])
			}
			code, a, msg := p.getMetrics(t, v)
			if code != 200 {
				t.Errorf("%s: %d %s", v.Encode(), code, msg)
				continue
			}
			if got := totals(a); !sameTotals(got, c.want) || (prev != nil && !sameTotals(got, prev)) {
				t.Errorf("%s (%s): totals %v, want %v", v.Encode(), a.Table, got, c.want)
			}
			prev = totals(a)
		}
	}
	p.stop()
}

// TestBenchRollupDims measures what the rollups' new dimensions cost, paired
// in one run: the benchmark's events (LASTMILE_BENCH_EVENTS, default
// 200,000, generated as TestBenchPipeline does) are posted once to a
// collector; then a processor of an older build ($LASTMILE_OLD_BIN: before
// migration 0008 for the sums rollups' dimensions, before 0009 for the
// latency rollups' room and stream and the frame-rate sums) and one of this
// build, alternately (LASTMILE_BENCH_ROUNDS each, default 2), insert all of
// them into a fresh store. It prints each processor's CPU time and the rows
// of qoe_1m and qoe_latency_1m; it asserts nothing about speed. Skipped without LASTMILE_OLD_BIN. The generator's 5,000 devices
// watch 50 streams in 7 rooms; LASTMILE_BENCH_STREAMS=S gives device d the
// stream and room d mod S instead (5000: every viewer its own).
//
//	LASTMILE_OLD_BIN=/tmp/lastmile-old LASTMILE_BIN=$PWD/bin/lastmile LASTMILE_BENCH_EVENTS=1000000 \
//	  LASTMILE_BENCH_ROUNDS=3 go test -count=1 -timeout 40m -run '^TestBenchRollupDims$' -v ./e2e
func TestBenchRollupDims(t *testing.T) {
	old := os.Getenv("LASTMILE_OLD_BIN")
	if old == "" {
		t.Skip("set LASTMILE_OLD_BIN to an older build (before migration 0008 or 0009)")
	}
	n := benchEnvInt(t, "LASTMILE_BENCH_EVENTS", 200_000)
	rounds := benchEnvInt(t, "LASTMILE_BENCH_ROUNDS", 2)
	bin := lastmileBin(t)
	dir := t.TempDir()
	batches, _, _ := benchMakeBatches(n, 2000, time.Now().Add(-time.Hour).UnixMilli())
	if streams := benchEnvInt(t, "LASTMILE_BENCH_STREAMS", 0); streams > 0 {
		batches = withStreams(batches, streams)
	}
	var lines []string
	for r := range rounds {
		for _, b := range []struct{ name, path string }{{"old", old}, {"new", bin}} {
			data := filepath.Join(dir, fmt.Sprintf("%s-%d", b.name, r))
			// A broker per processor: the consumer group's offsets live in it.
			coll := start(t, "collector", data+"-collector", "--kafka-listen", "127.0.0.1:0")
			if st := postAll(coll.HTTP, 4, batches); st.err() != nil || st.events != int64(n) {
				t.Fatalf("post: %v, %d of %d events", st.err(), st.events, n)
			}
			binOnce.path = b.path
			proc := start(t, "processor", data, "--kafka", coll.Kafka)
			cpu0, t0 := procCPU(proc.pid()), time.Now()
			benchPoll(t, proc, benchTimeout(n), "processor: all rows inserted", func() (bool, string) {
				v := int64(proc.metric(t, "lastmile_processor_rows_inserted_total"))
				return v == int64(n), fmt.Sprintf("%d of %d rows inserted", v, n)
			})
			cpu, wall := procCPU(proc.pid())-cpu0, time.Since(t0)
			proc.stop()
			coll.stop()
			q := start(t, "query", data)
			binOnce.path = bin
			rows := func(table string) string {
				all := q.sqlInt(t, "SELECT count() FROM "+table)
				merged := q.sqlInt(t, "SELECT count() FROM "+table+" FINAL")
				mins := q.sqlInt(t, "SELECT uniqExact(minute) FROM "+table)
				ps := ""
				if table == "qoe_1m" {
					ps = fmt.Sprintf(" (%d play_stop)", q.sqlInt(t, "SELECT count() FROM "+table+" FINAL WHERE kind = 'play_stop'"))
				}
				return fmt.Sprintf("%s %d rows written, %d after merge%s over %d minute(s)", table, all, merged, ps, mins)
			}
			lines = append(lines, fmt.Sprintf("%s round %d: processor CPU %.2f s for %d events (%.1f µs/event), wall %.2f s; %s; %s",
				b.name, r, cpu.Seconds(), n, cpu.Seconds()*1e6/float64(n), wall.Seconds(), rows("qoe_1m"), rows("qoe_latency_1m")))
			q.stop()
		}
	}
	binOnce.path = bin
	t.Log("\n" + strings.Join(lines, "\n"))
}

// withStreams rewrites each event's stream_id and room_id from its device:
// the stream and room device mod streams.
func withStreams(batches []*benchBatch, streams int) []*benchBatch {
	var out []*benchBatch
	for _, b := range batches {
		nb := &benchBatch{n: b.n}
		for _, line := range strings.Split(strings.TrimSuffix(string(b.body), "\n"), "\n") {
			_, dev, _ := strings.Cut(line, `"device_id":"dev-`)
			dev, _, _ = strings.Cut(dev, `"`)
			d, _ := strconv.Atoi(dev)
			id := strconv.Itoa(d % streams)
			line = replaceField(line, "stream_id", `"live/room-`+id+`"`)
			line = replaceField(line, "room_id", `"room-`+id+`"`)
			nb.body = append(append(nb.body, line...), '\n')
		}
		out = append(out, nb)
	}
	return out
}

// waitStoredEvents waits until the test app has n events in the store.
func waitStoredEvents(t *testing.T, p *proc, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d stored events", n), func() (bool, string) {
		rows, err := p.sql("SELECT count() AS n FROM events WHERE app_id = '" + testAppID + "'")
		if err != nil || len(rows) != 1 {
			return false, fmt.Sprint(rows, err)
		}
		return toInt(t, rows[0]["n"]) == int64(n), fmt.Sprint(rows)
	})
}
