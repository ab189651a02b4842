package e2e

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// latencyBeats is the crafted traffic of TestLatencyRollup: heartbeats of
// three streams in two rooms, each stream with its own latencies and
// rendered frame rates, plus heartbeats that frame_rate must leave out (a
// paused one, one without fps).
type latencyBeats struct {
	body []byte
	n    int
	t0   int64
	// expected, by stream and by room
	lat map[string][]int64    // latency_ms values
	fps map[string][2]float64 // Σ fps × interval_ms, Σ interval_ms
}

// latencyStreams: stream → room, base latency (ms), base fps.
var latencyStreams = []struct {
	stream, room string
	lat          int64
	fps          float64
}{
	{"live/lr-1/720p", "lr-1", 1500, 25},
	{"live/lr-1/360p", "lr-1", 2500, 24},
	{"live/lr-2/720p", "lr-2", 7000, 8},
}

func newLatencyBeats(t0 int64) *latencyBeats {
	d := &latencyBeats{t0: t0, lat: map[string][]int64{}, fps: map[string][2]float64{}}
	for _, s := range latencyStreams {
		for i := range 10 {
			// Ten viewers a stream, over four minutes: latencies 100 ms
			// apart (whole tens, which rounding to three digits keeps),
			// intervals of 10 s and 5 s, fps at the base or 2 under it.
			lat := s.lat + int64(i)*100
			iv := int64(10_000 - 5_000*(i%2))
			fps := s.fps - float64(2*(i%2))
			d.beat(s.stream, s.room, fmt.Sprintf("lr-%s-%d", s.stream, i), int64(i)*25_000,
				fmt.Sprintf(`,"latency_ms":%d,"interval_ms":%d,"fps":%g,"state":"playing"`, lat, iv, fps))
			for _, k := range []string{s.stream, s.room} {
				d.lat[k] = append(d.lat[k], lat)
				a := d.fps[k]
				d.fps[k] = [2]float64{a[0] + fps*float64(iv), a[1] + float64(iv)}
			}
		}
		// Neither counts for frame_rate: paused, and no fps.
		d.beat(s.stream, s.room, "lr-paused-"+s.stream, 30_000, `,"interval_ms":10000,"fps":0,"state":"paused"`)
		d.beat(s.stream, s.room, "lr-nofps-"+s.stream, 40_000, `,"interval_ms":10000,"state":"playing"`)
	}
	return d
}

func (d *latencyBeats) beat(stream, room, dev string, at int64, extra string) {
	d.n++
	d.body = fmt.Appendf(d.body, `{"event_id":"lr-%d","log_type":"heartbeat","ts":%d,"device_id":%q,"session_id":"%s-s",`+
		`"room_id":%q,"stream_id":%q,"cdn":"cdn-a","region":"north","protocol":"http-flv"%s}`+"\n",
		d.n, d.t0+at, dev, dev, room, stream, extra)
}

// quantile is ClickHouse's quantileExactWeighted over equal weights: the
// smallest value whose rank reaches ceil(level × n).
func quantile(vals []int64, level float64) float64 {
	v := append([]int64(nil), vals...)
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return float64(v[int(math.Ceil(level*float64(len(v))))-1])
}

// TestLatencyRollup posts crafted heartbeats through the collector of a real
// `lastmile run`: live_latency by stream_id and by room_id is answered over
// three days from the hourly latency rollup and agrees with raw events and
// the minute rollup over the last hour; frame_rate by room and stream, the
// same on every path, equals Σ fps × interval_ms ÷ Σ interval_ms of the
// playing heartbeats that report fps.
func TestLatencyRollup(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	d := newLatencyBeats(time.Now().Add(-10 * time.Minute).UnixMilli())
	if r, err := p.post(d.body, false, testKey); err != nil || r.Status != 200 || r.Accepted != d.n {
		t.Fatalf("post: %v %+v", err, r)
	}
	waitFor(t, 60*time.Second, "every heartbeat in the rollups", func() (bool, string) {
		code, a, msg := p.getMetrics(t, url.Values{"metric": {"concurrent_viewers"}, "since": {"1h"}, "step": {"1m"},
			"app_id": {testAppID}, "read": {"rollup"}})
		if code != 200 || len(a.Series) != 1 {
			return false, msg
		}
		return a.Series[0].Samples == int64(d.n), fmt.Sprint(a.Series[0].Samples, " of ", d.n)
	})
	checkLatencyRollup(t, p, d)
	p.stop()
}

// checkLatencyRollup asks each metric on three paths (raw and the minute
// rollup over the last hour, the hourly rollup over three days) and wants
// the crafted values on all of them.
func checkLatencyRollup(t *testing.T, p *proc, d *latencyBeats) {
	t.Helper()
	type check struct {
		metric, groupBy, quantile string
		want                      map[string]float64
	}
	var checks []check
	for _, g := range []string{"stream_id", "room_id"} {
		for _, q := range []float64{0.5, 0.95} {
			c := check{"live_latency", g, fmt.Sprint(q), map[string]float64{}}
			f := check{"frame_rate", g, "", map[string]float64{}}
			for _, s := range latencyStreams {
				k := s.stream
				if g == "room_id" {
					k = s.room
				}
				c.want[k] = quantile(d.lat[k], q)
				f.want[k] = d.fps[k][0] / d.fps[k][1]
			}
			checks = append(checks, c)
			if q == 0.5 {
				checks = append(checks, f)
			}
		}
	}
	for _, c := range checks {
		for _, shape := range []struct{ since, step, read, table string }{
			{"1h", "1m", "raw", "events"}, {"1h", "1m", "rollup", "qoe_1m"}, {"3d", "1h", "auto", "qoe_1h"},
		} {
			v := url.Values{"metric": {c.metric}, "group_by": {c.groupBy}, "app_id": {testAppID},
				"since": {shape.since}, "step": {shape.step}, "read": {shape.read}}
			if c.quantile != "" {
				v.Set("quantile", c.quantile)
			}
			table := shape.table
			if c.metric == "live_latency" && table != "events" {
				table = "qoe_latency_" + table[len("qoe_"):]
			}
			code, a, msg := p.getMetrics(t, v)
			if code != 200 {
				t.Errorf("%s: %d %s", v.Encode(), code, msg)
				continue
			}
			if a.Table != table {
				t.Errorf("%s: read %s, want %s", v.Encode(), a.Table, table)
			}
			if got := totals(a); !sameTotals(got, c.want) {
				t.Errorf("%s: totals %v, want %v", v.Encode(), got, c.want)
			}
		}
	}
}

// TestLatencyRollupUpgrade: a store written by a build before migration
// 0009 ($LASTMILE_OLD_BIN; skipped without it) is opened by this one, which
// rebuilds the rollups from the stored events: the old heartbeats' latency
// by stream over three days and their frame rate are then served from the
// rollups, as from raw.
func TestLatencyRollupUpgrade(t *testing.T) {
	old := os.Getenv("LASTMILE_OLD_BIN")
	if old == "" {
		t.Skip("set LASTMILE_OLD_BIN to a build from before migration 0009")
	}
	bin := lastmileBin(t)
	data := filepath.Join(t.TempDir(), "data")
	binOnce.path = old
	p := start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
	binOnce.path = bin
	d := newLatencyBeats(time.Now().Add(-10 * time.Minute).UnixMilli())
	if r, err := p.post(d.body, false, testKey); err != nil || r.Status != 200 || r.Accepted != d.n {
		t.Fatalf("post: %v %+v", err, r)
	}
	waitStoredEvents(t, p, d.n)
	p.stop()

	p = start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
	checkLatencyRollup(t, p, d)
	p.stop()
}
