package query

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/processor"
	"github.com/lastmile-qoe/lastmile/schemas"
)

func TestDefaultStep(t *testing.T) {
	for _, c := range []struct {
		window, want time.Duration
	}{
		{5 * time.Minute, 10 * time.Second},
		{30 * time.Minute, 10 * time.Second},
		{time.Hour, time.Minute},
		{6 * time.Hour, 5 * time.Minute},
		{24 * time.Hour, 5 * time.Minute},
		{7 * 24 * time.Hour, time.Hour},
		{30 * 24 * time.Hour, 3 * time.Hour},
		{400 * 24 * time.Hour, 24 * time.Hour},
	} {
		if got := defaultStep(c.window); got != c.want {
			t.Errorf("defaultStep(%s) = %s, want %s", c.window, got, c.want)
		}
	}
}

func TestFmtDurationRoundTrips(t *testing.T) {
	for _, d := range []time.Duration{time.Second, 90 * time.Second, 5 * time.Minute, time.Hour, 36 * time.Hour, 7 * 24 * time.Hour} {
		s := fmtDuration(d)
		back, err := ParseDuration(s)
		if err != nil || back != d {
			t.Errorf("%s → %q → %s, %v", d, s, back, err)
		}
	}
	if got := fmtDuration(36 * time.Hour); got != "1d12h" {
		t.Errorf("36h printed as %q", got)
	}
}

func TestTruncTime(t *testing.T) {
	at := time.Date(2026, 3, 4, 10, 17, 42, 500e6, time.UTC)
	for step, want := range map[time.Duration]string{
		time.Minute:      "2026-03-04T10:17:00Z",
		5 * time.Minute:  "2026-03-04T10:15:00Z",
		time.Hour:        "2026-03-04T10:00:00Z",
		24 * time.Hour:   "2026-03-04T00:00:00Z",
		10 * time.Second: "2026-03-04T10:17:40Z",
	} {
		if got := truncTime(at, step).Format(time.RFC3339); got != want {
			t.Errorf("truncTime(%s) = %s, want %s", step, got, want)
		}
	}
}

func TestPointJSON(t *testing.T) {
	v := 12.5
	b, _ := json.Marshal([]Point{{T: 1000, V: &v}, {T: 2000}})
	if string(b) != "[[1000,12.5],[2000,null]]" {
		t.Fatalf("got %s", b)
	}
	var back []Point
	if err := json.Unmarshal(b, &back); err != nil || back[0].T != 1000 || *back[0].V != 12.5 || back[1].V != nil {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

// Bad requests get a 400 naming the problem, before the store is touched.
func TestMetricsBadRequests(t *testing.T) {
	srv := httptest.NewServer(New(nil, "tok", log.NewNopLogger()).Handler())
	defer srv.Close()
	for _, c := range []struct{ query, want string }{
		{"", "metric is required; metrics: attempts, back_to_source_rate"},
		{"metric=bogus", `unknown metric "bogus"; metrics: attempts,`},
		{"metric=plays&group_by=cdn,colour", `unknown group_by dimension "colour"; dimensions: source, app_id, region`},
		{"metric=plays&colour=red", "unknown parameter colour; this endpoint takes:"},
		{"metric=plays&cdn=a&cdn=b", "parameter cdn given more than once"},
		{"metric=plays&step=fortnight", `step="fortnight": want a duration`},
		{"metric=plays&step=1500ms", "want a whole number of seconds"},
		{"metric=plays&from=now-1h&to=now-2h", "must be before to"},
		{"metric=plays&from=now-2h&since=1h", "give from or since, not both"},
		{"metric=plays&since=2d&step=1m", "points, more than the 1440 allowed: use a larger step"},
		{"metric=plays&since=2d&step=1h&read=raw", "reads raw events, for windows of at most 1d"},
		{"metric=plays&since=1h&step=30s&read=rollup", "step must be a whole number of minutes"},
		{"metric=plays&read=fast", `read="fast": want auto, raw or rollup`},
		{"metric=plays&quantile=0.9", "quantile and phase apply to quantile metrics"},
		{"metric=video_startup_time&quantile=1.5", `quantile="1.5": want a level in [0, 1]`},
		{"metric=video_startup_time&phase=handshake", `phase="handshake": want one of total, dns, tcp_connect`},
		{"metric=live_latency&phase=dns", "phase applies to video_startup_time, not live_latency"},
		{"metric=plays&limit=0", "limit=\"0\": want a whole number in [1, 10000]"},
		// A play_stop's outcome only splits the metrics that read play_stop.
		{"metric=rebuffering_ratio&group_by=room_id,code", "group_by code applies to the metrics that read play_stop (exits_before_video_start_1s_rate, exits_before_video_start_rate, play_success_rate, render_stall_session_rate, session_rebuffer_rate, video_playback_failure_rate, video_start_failure_rate, view_playback_failure_rate, view_start_failure_rate, views), not rebuffering_ratio, which reads heartbeat"},
		{"metric=video_startup_time&first_frame_blocked=dns", "filter first_frame_blocked applies to the metrics that read play_stop ("},
		{"metric=attempts&code=1001", "filter code applies to the metrics that read play_stop"},
		{"metric=render_stall_ratio&group_by=first_frame_blocked", "not render_stall_ratio, which reads heartbeat"},
		{"metric=views&group_by=room_id,stream,code", `unknown group_by dimension "stream"; dimensions: source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, room_id, stream_id, code, first_frame_blocked`},
		{"metric=live_latency&group_by=app_version&since=2d&step=1h", "live_latency by a dimension other than app_id, region, isp, cdn, node_id, protocol, room_id, stream_id reads raw heartbeats"},
		{"metric=live_latency&os=ios&since=1h&read=rollup", "read=rollup: the latency rollup is kept by app_id, region, isp, cdn, node_id, protocol, room_id, stream_id only"},
		{"metric=edge_buffer_length&since=1h&read=rollup", "read=rollup: edge_buffer_length is not rolled up"},
		{"metric=edge_measured_throughput&since=2d&step=1h", "edge_measured_throughput is not rolled up: it reads raw events, for windows of at most 1d"},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/metrics?"+c.query, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body ErrorBody
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(body.Error, c.want) {
			t.Errorf("%q: %d %q, want 400 containing %q", c.query, resp.StatusCode, body.Error, c.want)
		}
	}
}

// --- metric correctness -----------------------------------------------------
//
// A generated data set F (every event kept, sample_rate 1) and its sampled
// twin S, built so that re-weighting is exact: devices come in clone groups
// of four with identical events; S keeps a log_type at rate r from the first
// 4r clones of each group, at sample_rate r, and keeps failures from every
// clone at rate 1, as the collector's sampler does. Every weighted sum over S
// then equals the plain sum over F. Each metric is computed by brute force in
// Go over the generated events and compared with the API on both the raw and
// the rollup path.

const (
	appFull    = "mt-full"
	appSampled = "mt-sampled"
	clones     = 4
)

// sampleRates of S per log_type; 4r must be whole.
var sampleRates = map[string]float64{
	"play_start": 1, "first_frame": 0.5, "play_stop": 0.5, "heartbeat": 0.25, "edge_access": 0.25, "stall": 0.5,
}

// gev is one generated event, as the collector would forward it: JSON-ready
// values (int64, bool, string) for the fields it has.
type gev map[string]any

func (e gev) str(k string) string { s, _ := e[k].(string); return s }
func (e gev) int(k string) (int64, bool) {
	v, ok := e[k].(int64)
	return v, ok
}
func (e gev) rate() float64 { return e["sample_rate"].(float64) }

// isFailure is the sampler's rule: kept at rate 1.
func (e gev) isFailure() bool {
	if e.str("first_frame_blocked") != "" {
		return true
	}
	c, _ := e.int("code")
	return e.str("log_type") == "play_stop" && c != 0
}

type metricsData struct {
	base   time.Time // first minute of the data; it spans two hours
	events []gev     // F and S
	srv    http.Handler
}

var metricsDataOnce struct {
	sync.Once
	d *metricsData
}

func loadMetricsData(t *testing.T) *metricsData {
	st := sharedStore(t)
	metricsDataOnce.Do(func() {
		base := time.Now().Add(-3 * time.Hour).Truncate(time.Hour).UTC()
		full := genTemplates(rand.New(rand.NewPCG(42, 7)), base)
		var events []gev
		for g, tmpl := range full {
			for c := 0; c < clones; c++ {
				for _, e := range tmpl {
					f := clone(e, appFull, g, c, 1)
					events = append(events, f)
					r := sampleRates[e.str("log_type")]
					if r == 0 {
						r = 1
					}
					switch {
					case f.isFailure():
						events = append(events, clone(e, appSampled, g, c, 1))
					case float64(c) < clones*r:
						events = append(events, clone(e, appSampled, g, c, r))
					}
				}
			}
		}
		insertEvents(t, st, events)
		metricsDataOnce.d = &metricsData{base: base, events: events, srv: New(st, "tok", log.NewNopLogger()).Handler()}
	})
	if metricsDataOnce.d == nil {
		t.Fatal("metrics data set failed to load")
	}
	return metricsDataOnce.d
}

var seq int

func clone(e gev, app string, group, c int, rate float64) gev {
	out := gev{}
	for k, v := range e {
		out[k] = v
	}
	seq++
	dev := fmt.Sprintf("dev-%d-%d", group, c)
	out["app_id"] = app
	out["event_id"] = fmt.Sprintf("mt-%d", seq)
	out["device_id"] = dev
	out["session_id"] = dev + "-" + e.str("session_id")
	out["sample_rate"] = rate
	out["received_at"] = out["ts"]
	return out
}

var (
	gRegions = []string{"north", "south", ""}
	gCDNs    = []string{"cdn-a", "cdn-b", "cdn-c"}
	gISPs    = []string{"isp-a", "isp-b"}
	gOSes    = []string{"android", "ios"}
	gStates  = []string{"playing", "playing", "playing", "stalled", "paused", "seeking", ""}
	gCodes   = []int64{0, 0, 0, 1001, 2002}
)

// genTemplates makes the events of each clone group's template device: a few
// play sessions over two hours, ending in every way a play ends.
func genTemplates(rng *rand.Rand, base time.Time) [][]gev {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	ms := func(lo, hi int) int64 { return int64(lo + rng.IntN(hi-lo)) }
	var out [][]gev
	for g := 0; g < 60; g++ {
		dims := gev{"region": pick(gRegions), "cdn": pick(gCDNs), "isp": pick(gISPs), "os": pick(gOSes),
			"protocol": []string{"http-flv", "hls"}[g%2], "app_version": "5." + strconv.Itoa(g%3),
			"room_id": "room-" + strconv.Itoa(g%4), "stream_id": fmt.Sprintf("live/room-%d/%s", g%4, []string{"720p", "360p"}[g/4%2])}
		var evs []gev
		add := func(lt string, ts time.Time, kv ...any) {
			e := gev{"log_type": lt, "ts": ts.UnixMilli()}
			for k, v := range dims {
				e[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				if kv[i+1] != nil {
					e[kv[i].(string)] = kv[i+1]
				}
			}
			evs = append(evs, e)
		}
		for s := 0; s < 1+rng.IntN(3); s++ {
			sid := "s" + strconv.Itoa(s)
			t0 := base.Add(time.Duration(rng.Int64N(int64(110 * time.Minute))))
			// Failed attempts the player retried, in the same session: a
			// view with its retries.
			for a := 0; a < rng.IntN(4)/2*(1+rng.IntN(2)); a++ {
				at := t0.Add(-time.Duration(a+1) * 5 * time.Second)
				add("play_start", at, "session_id", sid, "attempt", int64(a))
				add("play_stop", at.Add(4*time.Second), "session_id", sid, "code", gCodes[3+rng.IntN(2)],
					"first_frame_blocked", schemas.FirstFramePhases[rng.IntN(6)], "play_duration_ms", int64(4000), "will_retry", true)
			}
			// The last attempt's stop says will_retry false, or nothing.
			var final any = []any{false, nil}[rng.IntN(2)]
			add("play_start", t0, "session_id", sid)
			for i := 0; i < 1+rng.IntN(2); i++ {
				status := []int64{200, 200, 200, 404, 502}[rng.IntN(5)]
				var hit any = []any{true, false, nil}[rng.IntN(3)]
				// CMCD from t0, not rng: the rest of the data set stays as it was.
				var bl, mtp any
				if ms := t0.UnixMilli(); ms%5 != 0 {
					bl, mtp = ms%53*100, 500+ms%97*100+int64(i)
				}
				add("edge_access", t0.Add(time.Duration(40+i*5)*time.Millisecond), "session_id", sid, "node_id", "edge-"+dims.str("cdn"),
					"http_status", status, "cache_hit", hit, "cmcd_bl", bl, "cmcd_mtp", mtp)
			}
			switch outcome := rng.IntN(6); outcome {
			case 0: // start failure: an error before the first frame
				add("play_stop", t0.Add(time.Duration(ms(300, 5000))*time.Millisecond), "session_id", sid,
					"code", gCodes[3+rng.IntN(2)], "first_frame_blocked", schemas.FirstFramePhases[rng.IntN(6)], "play_duration_ms", ms(300, 5000),
					"will_retry", final)
			case 1: // exit before video start
				add("play_stop", t0.Add(time.Duration(ms(100, 3000))*time.Millisecond), "session_id", sid,
					"code", int64(0), "first_frame_blocked", schemas.FirstFramePhases[rng.IntN(6)], "play_duration_ms", ms(100, 3000),
					"will_retry", final)
			default: // played, then stopped normally or with an error
				total := ms(200, 3000)
				var phases []any
				for _, p := range schemas.FirstFramePhases {
					var v any = ms(1, 400)
					if rng.IntN(5) == 0 {
						v = nil // not reported
					}
					phases = append(phases, p+"_ms", v)
				}
				add("first_frame", t0.Add(time.Duration(total)*time.Millisecond), append([]any{"session_id", sid, "total_ms", total}, phases...)...)
				beats := 1 + rng.IntN(12)
				stalls, renderStalls := int64(0), int64(0)
				for b := 1; b <= beats; b++ {
					var lat any = ms(800, 40000)
					if rng.IntN(6) == 0 {
						lat = nil
					}
					var iv any = ms(9000, 11000)
					if rng.IntN(10) == 0 {
						iv = nil
					}
					sc := int64(rng.IntN(3) / 2)
					stalls += sc
					rc := int64(rng.IntN(4) / 3)
					renderStalls += rc
					var rms any = rc * ms(50, 1500)
					if rc == 0 && rng.IntN(2) == 0 {
						rms = nil // older SDKs send neither
					}
					// Quarters are exact in binary, so sums of fps ×
					// interval_ms are too, whatever their order.
					var fps any = float64(ms(0, 121)) / 4
					if rng.IntN(8) == 0 {
						fps = nil
					}
					add("heartbeat", t0.Add(time.Duration(b)*10*time.Second), "session_id", sid, "interval_ms", iv,
						"stall_ms", sc*ms(100, 2000), "stall_count", sc, "latency_ms", lat, "state", pick(gStates),
						"render_stall_count", rc, "render_stall_ms", rms, "fps", fps)
				}
				add("stall", t0.Add(15*time.Second), "session_id", sid, "duration_ms", int64(500))
				add("play_stop", t0.Add(time.Duration(beats)*10*time.Second+time.Second), "session_id", sid,
					"code", gCodes[rng.IntN(len(gCodes))], "play_duration_ms", int64(beats)*10_000, "stall_count", stalls,
					"render_stall_count", renderStalls, "will_retry", final)
			}
		}
		out = append(out, evs)
	}
	return out
}

// insertEvents writes events the way the processor does: cleaned by the
// catalog's Cleaner into its Arrow RowBuilder, one InsertArrow into events
// (firing the rollups' views) with a dedup token. The batch is inserted
// twice: the second, a retry with the same token, must change nothing,
// rollups included.
func insertEvents(t *testing.T, st *store.Embedded, events []gev) {
	t.Helper()
	rb := processor.NewRowBuilder()
	var c schemas.Cleaner
	var ev schemas.Event
	var fields []flatjson.Field
	for i, e := range events {
		js, _ := json.Marshal(e)
		var err error
		if fields, err = flatjson.ParseObject(fields, js); err != nil {
			t.Fatal(err)
		}
		if rej := c.Clean(fields, &ev); rej != nil {
			t.Fatalf("generated event %s rejected: %v", js, rej)
		}
		rb.Append(&ev, 0, int64(i))
	}
	rec := rb.Build()
	defer rec.Release()
	token := "metrics-test-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	for range 2 {
		if err := st.InsertArrow(context.Background(), schemas.EventsTable, rec, token); err != nil {
			t.Fatal(err)
		}
	}
}

// bfReq is a metrics request the brute force answers too.
type bfReq struct {
	metric, app     string
	from, to        time.Time // as asked; both sides snap them to the step
	step            time.Duration
	groupBy         []string
	filter          map[string][]string
	quantile, phase string
	read            string
}

func (r bfReq) query() url.Values {
	q := url.Values{"metric": {r.metric}, "app_id": {r.app}, "step": {fmtDuration(r.step)},
		"from": {r.from.Format(time.RFC3339Nano)}, "to": {r.to.Format(time.RFC3339Nano)}, "read": {r.read}}
	if len(r.groupBy) > 0 {
		q.Set("group_by", strings.Join(r.groupBy, ","))
	}
	for k, v := range r.filter {
		q.Set(k, strings.Join(v, ","))
	}
	if r.quantile != "" {
		q.Set("quantile", r.quantile)
	}
	if r.phase != "" {
		q.Set("phase", r.phase)
	}
	return q
}

// bfAcc accumulates one bucket (or total) of one group.
type bfAcc struct {
	num, den, samples float64
	vals              map[int64]float64 // quantile: value → summed integer weight
}

// bruteForce answers r from the generated events, following docs/metrics.md
// with no SQL involved: group → bucket start (ms) → value, and group → total.
func bruteForce(events []gev, r bfReq) (map[string]map[int64]*float64, map[string]*float64) {
	stepMs := r.step.Milliseconds()
	from := r.from.UnixMilli() / stepMs * stepMs
	to := (r.to.UnixMilli() + stepMs - 1) / stepMs * stepMs
	accs := map[string]map[int64]*bfAcc{}
	totals := map[string]*bfAcc{}
	kind := metricsByName[r.metric].Kind
	for _, e := range events {
		ts := e["ts"].(int64)
		if e.str("app_id") != r.app || e.str("log_type") != kind || ts < from || ts >= to {
			continue
		}
		if f := quantileField(r); f != "" {
			if _, ok := e.int(f); !ok {
				continue // a quantile reads the rows that have a value
			}
		}
		skip := false
		for d, vs := range r.filter {
			if indexOf(vs, dimValue(e, d)) < 0 {
				skip = true
			}
		}
		if skip {
			continue
		}
		var g []string
		for _, d := range r.groupBy {
			g = append(g, dimValue(e, d))
		}
		key := strings.Join(g, "|")
		if accs[key] == nil {
			accs[key], totals[key] = map[int64]*bfAcc{}, &bfAcc{vals: map[int64]float64{}}
		}
		b := ts / stepMs * stepMs
		if accs[key][b] == nil {
			accs[key][b] = &bfAcc{vals: map[int64]float64{}}
		}
		for _, a := range []*bfAcc{accs[key][b], totals[key]} {
			bfAdd(a, e, r)
		}
	}
	value := func(a *bfAcc, lengthMs int64) *float64 {
		m := metricsByName[r.metric]
		if a == nil {
			if m.quantile() || len(m.Den) > 0 {
				return nil
			}
			z := 0.0
			return &z
		}
		var v float64
		switch r.metric {
		case "attempts", "plays", "views":
			v = a.num
		case "concurrent_viewers":
			v = a.num / float64(lengthMs)
		case "video_startup_time", "live_latency", "edge_measured_throughput", "edge_buffer_length":
			q, ok := weightedQuantile(a.vals, r.quantile)
			if !ok {
				return nil
			}
			v = q
		default:
			if a.den == 0 {
				return nil
			}
			v = a.num / a.den * 100
			if r.metric == "rebuffer_frequency" || r.metric == "render_stall_frequency" {
				v = a.num / a.den * 3_600_000
			}
			if r.metric == "frame_rate" {
				v = a.num / a.den
			}
		}
		return &v
	}
	points := map[string]map[int64]*float64{}
	tot := map[string]*float64{}
	for key, bs := range accs {
		points[key] = map[int64]*float64{}
		for t := from; t < to; t += stepMs {
			points[key][t] = value(bs[t], stepMs)
		}
		tot[key] = value(totals[key], to-from)
	}
	return points, tot
}

// bfAdd adds one event to an accumulator, per the metric's definition.
func bfAdd(a *bfAcc, e gev, r bfReq) {
	w := 1 / e.rate()
	blocked := e.str("first_frame_blocked")
	code, _ := e.int("code")
	a.samples++
	switch r.metric {
	case "attempts", "plays":
		a.num += w
	case "video_start_failure_rate":
		a.den += w
		if blocked != "" && code != 0 {
			a.num += w
		}
	case "exits_before_video_start_rate", "exits_before_video_start_1s_rate":
		a.den += w
		d, _ := e.int("play_duration_ms")
		if blocked != "" && code == 0 && (r.metric == "exits_before_video_start_rate" || d >= 1000) {
			a.num += w
		}
	case "video_playback_failure_rate", "session_rebuffer_rate":
		if blocked != "" {
			return
		}
		a.den += w
		sc, _ := e.int("stall_count")
		if (r.metric == "video_playback_failure_rate" && code != 0) || (r.metric == "session_rebuffer_rate" && sc > 0) {
			a.num += w
		}
	case "play_success_rate":
		if blocked != "" && code == 0 {
			return // exits before video start are neither success nor failure
		}
		a.den += w
		if blocked == "" && code == 0 {
			a.num += w
		}
	case "views":
		if e["will_retry"] != true {
			a.num += w
		}
	case "view_start_failure_rate", "view_playback_failure_rate":
		if e["will_retry"] == true || (r.metric == "view_playback_failure_rate" && blocked != "") {
			return // not the view's last attempt; or, for playback, never started
		}
		a.den += w
		if code != 0 && (blocked != "") == (r.metric == "view_start_failure_rate") {
			a.num += w
		}
	case "render_stall_session_rate":
		if blocked != "" {
			return
		}
		a.den += w
		if rc, _ := e.int("render_stall_count"); rc > 0 {
			a.num += w
		}
	case "rebuffering_ratio", "rebuffer_frequency", "render_stall_ratio", "render_stall_frequency":
		if s := e.str("state"); s == "paused" || s == "seeking" {
			return
		}
		iv, _ := e.int("interval_ms")
		a.den += w * float64(iv)
		field := map[string]string{"rebuffering_ratio": "stall_ms", "rebuffer_frequency": "stall_count",
			"render_stall_ratio": "render_stall_ms", "render_stall_frequency": "render_stall_count"}[r.metric]
		x, _ := e.int(field)
		a.num += w * float64(x)
	case "frame_rate":
		fps, ok := e["fps"].(float64)
		if s := e.str("state"); s == "paused" || s == "seeking" || !ok {
			return
		}
		iv, _ := e.int("interval_ms")
		a.den += w * float64(iv)
		a.num += w * fps * float64(iv)
	case "concurrent_viewers":
		iv, _ := e.int("interval_ms")
		a.num += w * float64(iv)
	case "edge_error_rate":
		a.den += w
		if s, _ := e.int("http_status"); s >= 400 {
			a.num += w
		}
	case "back_to_source_rate":
		hit, ok := e["cache_hit"].(bool)
		if !ok {
			return
		}
		a.den += w
		if !hit {
			a.num += w
		}
	case "video_startup_time", "live_latency", "edge_measured_throughput", "edge_buffer_length":
		v, _ := e.int(quantileField(r))
		if r.metric == "live_latency" {
			v = round3(v)
		}
		a.vals[v] += math.Round(1000 / e.rate())
	}
}

// dimValue is an event's value of a metrics dimension: the code as its
// decimal digits, "" where a field is absent.
func dimValue(e gev, d string) string {
	if d == "code" {
		if c, ok := e.int("code"); ok {
			return strconv.FormatInt(c, 10)
		}
		return ""
	}
	return e.str(d)
}

// quantileField is the field a quantile metric reads, "" for the others.
func quantileField(r bfReq) string {
	switch {
	case r.metric == "live_latency":
		return "latency_ms"
	case r.metric == "edge_measured_throughput":
		return "cmcd_mtp"
	case r.metric == "edge_buffer_length":
		return "cmcd_bl"
	case r.metric != "video_startup_time":
		return ""
	case r.phase != "" && r.phase != "total":
		return r.phase + "_ms"
	}
	return "total_ms"
}

// round3 rounds to three significant digits, half up, as schemas.Round3SQL.
func round3(v int64) int64 {
	for _, u := range []int64{1000, 10000, 100000, 1000000} {
		if v < u {
			d := u / 1000
			return (v + d/2) / d * d
		}
	}
	return (v + 5000) / 10000 * 10000
}

// weightedQuantile is ClickHouse's quantileExactWeighted: the smallest value
// whose cumulative weight reaches ceil(level × total weight).
func weightedQuantile(vals map[int64]float64, level string) (float64, bool) {
	if len(vals) == 0 {
		return 0, false
	}
	l := 0.5
	if level != "" {
		l, _ = parseLevel(level)
	}
	keys := make([]int64, 0, len(vals))
	var sum float64
	for k, w := range vals {
		keys = append(keys, k)
		sum += w
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	threshold := math.Ceil(sum * l)
	var acc float64
	for _, k := range keys {
		acc += vals[k]
		if acc >= threshold {
			return float64(k), true
		}
	}
	return float64(keys[len(keys)-1]), true
}

func getMetrics(t *testing.T, h http.Handler, q url.Values) *MetricsAnswer {
	t.Helper()
	req := httptest.NewRequest("GET", "/api/v1/metrics?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer tok")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("%s: %d %s", q.Encode(), rec.Code, rec.Body)
	}
	var ans MetricsAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("%s: %v", rec.Body, err)
	}
	return &ans
}

func sameValue(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*b))
}

func fmtValue(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

// compare checks an answer against the brute force, point by point.
func compare(t *testing.T, ans *MetricsAnswer, r bfReq, points map[string]map[int64]*float64, totals map[string]*float64) int {
	t.Helper()
	if len(ans.Series) != len(points) {
		t.Errorf("%s: %d series, brute force has %d", r.query().Encode(), len(ans.Series), len(points))
	}
	n := 0
	for _, s := range ans.Series {
		var g []string
		for _, d := range r.groupBy {
			g = append(g, s.Group[d])
		}
		key := strings.Join(g, "|")
		want, ok := points[key]
		if !ok {
			t.Errorf("%s: series %v not in the brute force", r.query().Encode(), s.Group)
			continue
		}
		if len(s.Points) != len(want) {
			t.Errorf("%s %v: %d points, want %d", r.query().Encode(), s.Group, len(s.Points), len(want))
		}
		for _, p := range s.Points {
			if !sameValue(p.V, want[p.T]) {
				t.Errorf("%s %v at %s: got %s, want %s", r.query().Encode(), s.Group, time.UnixMilli(p.T).UTC().Format("15:04:05"), fmtValue(p.V), fmtValue(want[p.T]))
			}
			n++
		}
		if !sameValue(s.Total, totals[key]) {
			t.Errorf("%s %v total: got %s, want %s", r.query().Encode(), s.Group, fmtValue(s.Total), fmtValue(totals[key]))
		}
	}
	return n
}

// latencyRollupDims are what the latency rollups must keep: the dimensions
// of delivery, and room and stream (live_latency by stream over days).
var latencyRollupDims = []string{"app_id", "region", "isp", "cdn", "node_id", "protocol", "room_id", "stream_id"}

func subset(xs, of []string) bool {
	for _, x := range xs {
		if indexOf(of, x) < 0 {
			return false
		}
	}
	return true
}

// TestMetricsMatchBruteForce: every metric, on both paths, for the full data
// set and its sampled twin, against the brute force; and the sampled answers
// equal the full ones exactly.
func TestMetricsMatchBruteForce(t *testing.T) {
	d := loadMetricsData(t)
	type variant struct{ quantile, phase string }
	var cases []bfReq
	for _, m := range metricList {
		variants := []variant{{}}
		switch m.Name {
		case "video_startup_time":
			variants = []variant{{"0.5", ""}, {"0.9", "total"}, {"p95", ""}, {"0.99", ""}}
			for _, p := range schemas.FirstFramePhases {
				variants = append(variants, variant{"0.95", p})
			}
		case "live_latency", "edge_measured_throughput":
			variants = []variant{{"0.5", ""}, {"0.95", ""}}
		case "edge_buffer_length":
			variants = []variant{{"0.1", ""}}
		}
		for _, v := range variants {
			base := bfReq{metric: m.Name, quantile: v.quantile, phase: v.phase}
			shapes := []bfReq{
				// raw events, 5-minute buckets, by CDN and region
				{from: d.base, to: d.base.Add(2 * time.Hour), step: 5 * time.Minute, groupBy: []string{"cdn", "region"}, read: "raw"},
				// the same from the rollups
				{from: d.base, to: d.base.Add(2 * time.Hour), step: 5 * time.Minute, groupBy: []string{"cdn", "region"}, read: "auto"},
				// rollup, hourly, filtered, a window that is not on the step
				{from: d.base.Add(7*time.Minute + 13*time.Second), to: d.base.Add(100 * time.Minute), step: time.Hour,
					filter: map[string][]string{"region": {"north", ""}, "os": {"ios"}}, groupBy: []string{"isp"}, read: "auto"},
				// sub-minute buckets: raw events, on their own
				{from: d.base.Add(30 * time.Minute), to: d.base.Add(50 * time.Minute), step: 30 * time.Second, groupBy: []string{"protocol"}, read: "auto"},
				// by room and stream, raw and rollup
				{from: d.base, to: d.base.Add(2 * time.Hour), step: 10 * time.Minute, groupBy: []string{"room_id", "stream_id"}, read: "raw"},
				{from: d.base, to: d.base.Add(2 * time.Hour), step: time.Hour, groupBy: []string{"room_id"},
					filter: map[string][]string{"stream_id": {"live/room-1/720p", "live/room-2/360p", "live/room-3/720p"}}, read: "auto"},
				// by stream within rooms, from the minute rollups
				{from: d.base.Add(3 * time.Minute), to: d.base.Add(2 * time.Hour), step: 5 * time.Minute, groupBy: []string{"stream_id", "cdn"},
					filter: map[string][]string{"room_id": {"room-0", "room-2"}}, read: "auto"},
			}
			if m.Kind == "play_stop" {
				// a play's outcome, raw and rollup
				shapes = append(shapes,
					bfReq{from: d.base, to: d.base.Add(2 * time.Hour), step: 15 * time.Minute, groupBy: []string{"code", "first_frame_blocked"}, read: "raw"},
					bfReq{from: d.base, to: d.base.Add(2 * time.Hour), step: 15 * time.Minute, groupBy: []string{"code", "first_frame_blocked"}, read: "auto"},
					bfReq{from: d.base, to: d.base.Add(2 * time.Hour), step: time.Hour, groupBy: []string{"room_id"},
						filter: map[string][]string{"code": {"1001", "0"}, "first_frame_blocked": {"", "dns", "tcp_connect"}}, read: "auto"})
			}
			for _, s := range shapes {
				s.metric, s.quantile, s.phase = base.metric, base.quantile, base.phase
				cases = append(cases, s)
			}
		}
	}
	checked := 0
	for _, c := range cases {
		var answers [2]*MetricsAnswer
		for i, app := range []string{appFull, appSampled} {
			c.app = app
			ans := getMetrics(t, d.srv, c.query())
			wantSource := "rollup"
			dims := append([]string{"app_id"}, c.groupBy...)
			for d := range c.filter {
				dims = append(dims, d)
			}
			if c.read == "raw" || c.step < time.Minute || (c.metric == "live_latency" && !subset(dims, latencyRollupDims)) || metricsByName[c.metric].RawOnly {
				wantSource = "raw"
			}
			if ans.Source != wantSource {
				t.Errorf("%s: source %s, want %s", c.query().Encode(), ans.Source, wantSource)
			}
			if wantSource == "rollup" && c.metric != "video_startup_time" {
				grain := "1m"
				if c.step%time.Hour == 0 {
					grain = "1h"
				}
				if !strings.HasSuffix(ans.Table, "_"+grain) {
					t.Errorf("%s: table %s, want the %s rollup", c.query().Encode(), ans.Table, grain)
				}
			}
			points, totals := bruteForce(d.events, c)
			checked += compare(t, ans, c, points, totals)
			answers[i] = ans
		}
		// Re-weighted sampled data gives exactly the full data's answer.
		full, sampled := answers[0], answers[1]
		if len(full.Series) != len(sampled.Series) {
			t.Errorf("%s: %d series full, %d sampled", c.query().Encode(), len(full.Series), len(sampled.Series))
			continue
		}
		for i := range full.Series {
			f, s := full.Series[i], sampled.Series[i]
			if !sameValue(f.Total, s.Total) {
				t.Errorf("%s %v: total %s full, %s sampled", c.query().Encode(), f.Group, fmtValue(f.Total), fmtValue(s.Total))
			}
			for j := range f.Points {
				if !sameValue(f.Points[j].V, s.Points[j].V) {
					t.Errorf("%s %v at %d: %s full, %s sampled", c.query().Encode(), f.Group, f.Points[j].T, fmtValue(f.Points[j].V), fmtValue(s.Points[j].V))
				}
			}
		}
	}
	t.Logf("%d requests, %d points compared", 2*len(cases), checked)
}

// The data set must exercise what the metrics distinguish, or the comparison
// above proves little.
func TestMetricsDataCoversOutcomes(t *testing.T) {
	d := loadMetricsData(t)
	r := bfReq{app: appFull, from: d.base, to: d.base.Add(2 * time.Hour), step: 2 * time.Hour}
	for _, m := range []string{"video_start_failure_rate", "exits_before_video_start_rate", "exits_before_video_start_1s_rate",
		"video_playback_failure_rate", "rebuffering_ratio", "session_rebuffer_rate", "edge_error_rate", "back_to_source_rate",
		"render_stall_ratio", "render_stall_session_rate", "view_start_failure_rate", "view_playback_failure_rate", "frame_rate"} {
		r.metric = m
		_, totals := bruteForce(d.events, r)
		if v := totals[""]; v == nil || *v <= 0 || *v >= 100 {
			t.Errorf("%s over the data set is %s: want strictly between 0 and 100", m, fmtValue(v))
		}
	}
	// Some edge requests carry CMCD and some do not.
	for _, m := range []string{"edge_measured_throughput", "edge_buffer_length"} {
		r.metric, r.quantile = m, "0.5"
		_, totals := bruteForce(d.events, r)
		if v := totals[""]; v == nil || *v <= 0 {
			t.Errorf("%s over the data set is %s: want a positive quantile", m, fmtValue(v))
		}
	}
	r.quantile = ""
	with, without := 0, 0
	for _, e := range d.events {
		if e.str("log_type") == "edge_access" {
			if _, ok := e.int("cmcd_mtp"); ok {
				with++
			} else {
				without++
			}
		}
	}
	if with == 0 || without == 0 {
		t.Errorf("%d edge_access with CMCD, %d without: want both", with, without)
	}
	// Retries make fewer views than ended attempts, and fewer failed views
	// than failed attempts.
	count := func(metric string) float64 {
		r.metric = metric
		_, totals := bruteForce(d.events, r)
		return *totals[""]
	}
	var stops, views, failedAttempts, failedViews float64
	for _, e := range d.events {
		if e.str("app_id") != appFull || e.str("log_type") != "play_stop" {
			continue
		}
		c, _ := e.int("code")
		failed := e.str("first_frame_blocked") != "" && c != 0
		stops++
		if failed {
			failedAttempts++
		}
		if e["will_retry"] != true {
			views++
			if failed {
				failedViews++
			}
		}
	}
	if views >= stops || failedViews >= failedAttempts || failedViews == 0 || count("views") != views {
		t.Errorf("views %v (metric %v) of %v ended attempts, %v failed views of %v failed attempts: want retries in the data",
			views, count("views"), stops, failedViews, failedAttempts)
	}
	sampled := 0
	for _, e := range d.events {
		if e.str("app_id") == appSampled && e.rate() < 1 {
			sampled++
		}
	}
	if sampled == 0 {
		t.Error("no sampled rows in S")
	}
}

// The new dimensions are accepted where they apply, and a long window of
// any of them is answered from a rollup.
func TestMetricsDimsSource(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ query, table string }{
		{"metric=views&group_by=code,first_frame_blocked,room_id,stream_id&since=7d&step=1h", "qoe_1h"},
		{"metric=view_start_failure_rate&code=1001,2002&first_frame_blocked=dns&since=2d&step=5m", "qoe_1m"},
		{"metric=video_start_failure_rate&group_by=code&since=30m&step=10s", "events"},
		{"metric=render_stall_ratio&group_by=app_version&room_id=r1&stream_id=live/r1&since=7d&step=1h", "qoe_1h"},
		{"metric=render_stall_frequency&group_by=stream_id&since=2d&step=1h", "qoe_1h"},
		{"metric=render_stall_session_rate&group_by=room_id&since=2d&step=1h", "qoe_1h"},
		{"metric=video_startup_time&group_by=room_id,stream_id&since=7d&step=1h", "qoe_first_frame"},
		{"metric=live_latency&group_by=stream_id&since=6h&step=1h", "qoe_latency_1h"},
		{"metric=live_latency&group_by=room_id,cdn&stream_id=live/r1&since=3d&step=5m", "qoe_latency_1m"},
		{"metric=live_latency&group_by=app_version,stream_id&since=6h&step=1h", "events"},
		{"metric=frame_rate&group_by=room_id,cdn&since=7d&step=1h", "qoe_1h"},
	} {
		v, _ := url.ParseQuery(c.query)
		req, err := parseMetricsRequest(newParams(v, now))
		if err != nil {
			t.Errorf("%s: %v", c.query, err)
			continue
		}
		if req.src.table != c.table {
			t.Errorf("%s: reads %s, want %s", c.query, req.src.table, c.table)
		}
	}
}
