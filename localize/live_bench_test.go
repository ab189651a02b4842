package localize

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// synthStart is the synthetic data's first second: recent, as the tables'
// TTL drops old rows.
var synthStart = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

// The synthetic fault: cdn-b's south viewers fail to start, 40% of their
// attempts, from minute 12 to 16.
const (
	synthFaultFrom = 12 * time.Minute
	synthFaultTo   = 16 * time.Minute
)

// synthEvents writes about n events over span as JSONEachRow: viewer
// sessions (play_start, first_frame, a heartbeat every 10 s, play_stop, an
// edge_access per heartbeat) over 3 CDNs × 4 regions (one edge node each),
// 4 ISPs, 4 app versions, 3 renditions, 10 streams, 2 protocols, 3
// networks and 3 OSes, with 2% of starts failing and 5% of plays
// rebuffering everywhere, and the one planted fault.
func synthEvents(n int, span time.Duration, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	var b bytes.Buffer
	id := 0
	ev := func(ts time.Time, kind string, dims string, extra string) {
		id++
		fmt.Fprintf(&b, `{"event_id":"e%d","ts":"%s","received_at":"%s","log_type":"%s","sample_rate":1,"app_id":"bench",%s%s}`+"\n",
			id, ts.Format("2006-01-02 15:04:05.000"), ts.Format("2006-01-02 15:04:05.000"), kind, dims, extra)
	}
	for s := 0; id < n; s++ {
		cdn, region := pick("cdn-a", "cdn-a", "cdn-b", "cdn-c"), pick("north", "south", "east", "west")
		node := "edge-" + cdn[len(cdn)-1:] + "-" + region + "-1"
		proto := pick("http-flv", "hls")
		room := fmt.Sprintf("room%d", rng.IntN(10)+1)
		dev := fmt.Sprintf("dev-%d", rng.IntN(20000))
		dims := fmt.Sprintf(`"cdn":"%s","region":"%s","node_id":"%s","isp":"%s","app_version":"%s","rendition":"%s","room_id":"%s","stream_id":"live/%s","protocol":"%s","network":"%s","os":"%s","device_id":"%s","session_id":"s%d"`,
			cdn, region, node, pick("isp-a", "isp-b", "isp-c", "isp-d"), pick("5.1.0", "5.2.0", "5.2.1", "5.3.0"),
			pick("source", "720p", "480p"), room, room, proto, pick("wifi", "4g", "5g"), pick("ios", "android", "web"), dev, s)
		// sessions start from 3 minutes before the window, so that its
		// first minute's ended plays are not only the quick failures
		t0 := synthStart.Add(time.Duration(rng.Int64N(int64(span+3*time.Minute))) - 3*time.Minute)
		off := t0.Sub(synthStart)
		ev(t0, "play_start", dims, "")
		failP := 0.02
		if cdn == "cdn-b" && region == "south" && off >= synthFaultFrom && off < synthFaultTo {
			failP = 0.4
		}
		if rng.Float64() < failP {
			ev(t0.Add(3*time.Second), "play_stop", dims, `,"first_frame_blocked":"tcp_connect","code":1001,"play_duration_ms":3000`)
			continue
		}
		ff := 300 + rng.IntN(400)
		if proto == "hls" {
			ff += 1500
		}
		t := t0.Add(time.Duration(ff) * time.Millisecond)
		ev(t, "first_frame", dims, fmt.Sprintf(`,"total_ms":%d`, ff))
		beats := 1 + rng.IntN(8)
		stalls := 0
		if rng.Float64() < 0.05 {
			stalls = 1
		}
		for i := 0; i < beats; i++ {
			t = t.Add(10 * time.Second)
			if t.Sub(synthStart) >= span {
				break
			}
			ev(t, "heartbeat", dims, fmt.Sprintf(`,"interval_ms":10000,"fps":%g,"state":"playing","stall_count":0,"stall_ms":0`, 24+rng.Float64()))
			ev(t, "edge_access", dims, `,"http_status":200,"cache_hit":true`)
		}
		ev(t.Add(time.Second), "play_stop", dims, fmt.Sprintf(`,"first_frame_blocked":"","code":0,"stall_count":%d,"render_stall_count":0,"play_duration_ms":%d`, stalls, beats*10000))
	}
	return b.Bytes()
}

// BenchmarkLiveLocalize30m times the live localizer over a 30-minute
// window of 1M synthetic events in the embedded store (the qoe_1m rollup
// path), and checks it finds the planted fault.
func BenchmarkLiveLocalize30m(b *testing.B) {
	st := storetest.Embedded(b)
	span := 30 * time.Minute
	data := synthEvents(1_000_000, span, 42)
	resetStore(b, st)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := loadJSONEachRow(b, st, sc, nil)
	ctx := context.Background()
	req := LiveRequest{From: synthStart, To: synthStart.Add(span)}
	b.ResetTimer()
	var incs []Incident
	for b.Loop() {
		var err error
		if incs, err = DefaultLivePlan.Localize(ctx, st, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(incs) == 0 || incs[0].Dims["cdn"] != "cdn-b" || incs[0].Dims["region"] != "south" || incs[0].KPI != KPIStartFailure {
		var got []string
		for _, inc := range incs {
			got = append(got, describe(inc))
		}
		b.Fatalf("%d events: want the cdn-b south start failures first, got:\n%s", n, strings.Join(got, "\n"))
	}
	for _, inc := range incs[1:] {
		b.Logf("also: %s", describe(inc))
	}
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(float64(len(incs)), "incidents")
}
