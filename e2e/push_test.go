package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/scenario"
	"github.com/lastmile-qoe/lastmile/media/scenarios"
)

// pushRebufferMinMs is the shortest stall counted as rebuffering: over two
// frame intervals, a freeze a viewer sees. It keeps blips of a frame or
// less (such as a zero-length stall between two HLS segments) out.
const pushRebufferMinMs = 100

// TestScenarioPush: room2's 1500 kbit/s stream goes through an uplink
// capped at 700 kbit/s. The broadcaster's push_stats show what the link
// carries (within 15 % of 700 kbit/s) and dropped frames; room2's viewers
// on every CDN suffer (fail, rebuffer, or render under half the frame
// rate) at least 5× as often as room1's; after the cap the bitrate is the
// stream's again; the label says what was injected.
func TestScenarioPush(t *testing.T) {
	p, l := playScenario(t, "push")
	raw, _ := scenarios.Read("push")
	sc, err := scenario.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	f, lb := sc.Faults[0], l.Faults[0]
	nominal := 0
	for _, r := range sc.Topology.Rooms {
		if r.Name == f.Room {
			nominal = r.BitrateKbps
		}
	}
	capKbps := float64(f.Kbps)
	// The label states exactly what was injected.
	if f.Room != "room2" || f.Kbps != 700 || nominal != 1500 || lb.Scope != "push" || lb.Kind != "throttle" ||
		fmt.Sprint(lb.Dims) != fmt.Sprint(map[string]string{"kbps": "700", "room_id": "room2", "stream_id": "live/room2"}) ||
		!strings.Contains(lb.Name, "700 kbit/s") || !strings.Contains(sc.Description, "700 kbit/s") {
		t.Fatalf("scenario fault %+v (room at %d kbit/s), label %+v: want room2 at 1500 kbit/s capped at 700 kbit/s, and a label that says so", f, nominal, lb)
	}

	// push_stats whose whole interval lies in [from, to].
	stats := func(room string, from, to time.Time) (n, kbps, fps, dropped, bufMs float64) {
		rows, err := p.sql(fmt.Sprintf(`SELECT count() AS n, avg(bitrate_kbps) AS kbps, avg(fps) AS fps, sum(dropped_frames) AS dropped, avg(send_buffer_ms) AS buf
			FROM push_stats WHERE room_id = '%s' AND ts - toIntervalMillisecond(interval_ms) >= fromUnixTimestamp64Milli(%d, 'UTC')
			AND ts <= fromUnixTimestamp64Milli(%d, 'UTC')`, room, from.UnixMilli(), to.UnixMilli()))
		if err != nil || len(rows) != 1 {
			t.Fatalf("push_stats of %s: %v %v", room, rows, err)
		}
		r := rows[0]
		return num(r["n"]), num(r["kbps"]), num(r["fps"]), num(r["dropped"]), num(r["buf"])
	}
	// During the cap, skipping the interval the switch falls in.
	n, kbps, fps, dropped, buf := stats("room2", lb.Start, lb.End)
	t.Logf("room2 capped at %.0f kbit/s: %.0f push_stats, bitrate %.0f kbit/s, fps %.1f, dropped %.0f frames, send buffer %.0f ms", capKbps, n, kbps, fps, dropped, buf)
	if !(n >= 4) || !(kbps >= 0.85*capKbps && kbps <= 1.15*capKbps) {
		t.Errorf("room2's push_stats bitrate under a %.0f kbit/s cap: %.0f kbit/s over %.0f stats; want within 15%% over at least 4", capKbps, kbps, n)
	}
	if !(dropped > 0) {
		t.Errorf("room2's broadcaster dropped no frames pushing %d kbit/s through %.0f kbit/s", nominal, capKbps)
	}
	if n1, k1, _, d1, _ := stats("room1", lb.Start, lb.End); !(n1 >= 4) || d1 != 0 {
		t.Errorf("room1's broadcaster, not throttled: %.0f push_stats, %.0f kbit/s, %.0f dropped frames; want none dropped", n1, k1, d1)
	}
	// After the cap, with 10 s of grace, the stream's bitrate again.
	an, akbps, afps, adropped, _ := stats("room2", lb.End.Add(10*time.Second), l.End.Add(10*time.Second))
	t.Logf("room2 after the cap: %.0f push_stats, bitrate %.0f kbit/s, fps %.1f, dropped %.0f", an, akbps, afps, adropped)
	if !(an >= 1) || !(akbps >= 0.85*float64(nominal) && akbps <= 1.15*float64(nominal)) {
		t.Errorf("room2's push_stats bitrate after the cap: %.0f kbit/s over %.0f stats; want within 15%% of %d", akbps, an, nominal)
	}

	// Viewers: plays that started while the cap was on with at least 4 s
	// of it ahead. What the cap does to them follows from the uplink model
	// (media/publisher): the ingest gets ~700 kbit/s of the stream, a
	// keyframe and the frames after it until the send buffer overflows,
	// then nothing until the next keyframe. Every viewer renders a fraction
	// of the frames; those whose buffer is shorter than a gap also stall.
	srcFPS := p.sqlInt(t, "SELECT toInt64(any(fps)) FROM push_start WHERE room_id = 'room2'")
	if srcFPS <= 0 {
		t.Fatalf("room2's push_start has no frame rate (%d)", srcFPS)
	}
	r := pushSuffering(t, p, lb.Start, lb.End.Add(-4*time.Second), float64(srcFPS)/2)
	cdns := map[string]bool{}
	for k := range r {
		cdns[strings.SplitN(k, "/", 2)[1]] = true
	}
	if len(cdns) < 2 {
		t.Fatalf("plays on %d CDNs, want every CDN of the topology (2): %v", len(cdns), r)
	}
	for cdn := range cdns {
		bad, good := r["room2/"+cdn], r["room1/"+cdn]
		if !(bad[1] >= 10) || !(bad[0] >= 0.5) || !(good[1] >= 5) || !(bad[0] >= 5*good[0]) {
			t.Errorf("on %s room2 suffered in %.2f of %.0f plays, room1 in %.2f of %.0f; want room2 ≥ 0.5 of ≥ 10 plays and ≥ 5× room1 (≥ 5 plays)",
				cdn, bad[0], bad[1], good[0], good[1])
		}
	}
	checkPushMetrics(t, p, lb.Start.Add(10*time.Second), lb.End, cdns)
	checkLocalize(t, p, l, localizeWant{scope: []string{l.Faults[0].Name}}) // e2e/localize_test.go

	checkAlerts(t, alertHook(p), l, alertWant{named: []string{l.Faults[0].Name}})
}

// checkPushMetrics reads the push fault through GET /api/v1/metrics, from
// the heartbeats of [from, to) (from is past the first heartbeat interval
// of the cap): frame_rate by room_id shows room2 rendering at most 0.6 of
// room1's frames (room1 near its source's rate), and so on every CDN; the
// rebuffering and view start failure of room1 stay at baseline.
func checkPushMetrics(t *testing.T, p *proc, from, to time.Time, cdns map[string]bool) {
	t.Helper()
	get := func(metric, groupBy string) map[string]float64 { return p.metricTotals(t, metric, groupBy, from, to) }
	srcFPS := float64(p.sqlInt(t, "SELECT toInt64(any(fps)) FROM push_start WHERE room_id = 'room1'"))
	byRoom := get("frame_rate", "room_id")
	r1, ok1 := byRoom["room1"]
	r2, ok2 := byRoom["room2"]
	if !ok1 || !ok2 || !(r1 >= 0.8*srcFPS && r1 <= 1.05*srcFPS) || !(r2 <= 0.6*r1) {
		t.Errorf("frame_rate by room_id during the cap: %v; want room1 within [0.8, 1.05] of its source's %.0f fps and room2 ≤ 0.6 × room1's", byRoom, srcFPS)
	}
	byCDN := get("frame_rate", "room_id,cdn")
	for cdn := range cdns {
		g, b := byCDN["room1/"+cdn], byCDN["room2/"+cdn]
		if !(g >= 0.8*srcFPS) || !(b <= 0.6*g) {
			t.Errorf("frame_rate on %s during the cap: room1 %.1f, room2 %.1f fps; want room1 ≥ 0.8 × %.0f and room2 ≤ 0.6 × room1", cdn, g, b, srcFPS)
		}
	}
	// What else the cap does is logged; room1 must be at baseline (the
	// baseline scenario fails under 5 % of its plays).
	reb := get("rebuffering_ratio", "room_id")
	vsf := get("view_start_failure_rate", "room_id")
	if !(reb["room1"] < 2) || !(vsf["room1"] < 5) {
		t.Errorf("room1 during room2's cap: rebuffering_ratio %.2f %%, view_start_failure_rate %.2f %%; want under 2 %% and 5 %%", reb["room1"], vsf["room1"])
	}
}

// pushSuffering returns, by "room/cdn", the share of plays (sessions whose
// first attempt started in [from, to)) that suffered, and the number of
// plays. A play suffers when its last attempt failed, when it stalled
// (rebuffered) at least once for pushRebufferMinMs or more, or when its
// heartbeats show it rendered fewer than lowFPS frames a second on average.
func pushSuffering(t *testing.T, p *proc, from, to time.Time, lowFPS float64) map[string][2]float64 {
	t.Helper()
	rows, err := p.sql(fmt.Sprintf(`SELECT concat(s.room, '/', s.cdn) AS g, count() AS n,
			countIf(f.last_code != 0) AS failed, countIf(st.long > 0) AS rebuffered, countIf(h.n > 0 AND h.fps < %g) AS choppy,
			countIf(f.last_code != 0 OR st.long > 0 OR (h.n > 0 AND h.fps < %g)) AS bad, avg(h.fps) AS fps
		FROM (SELECT session_id, any(room_id) AS room, any(cdn) AS cdn FROM play_start WHERE attempt = 0
			AND ts >= fromUnixTimestamp64Milli(%d, 'UTC') AND ts < fromUnixTimestamp64Milli(%d, 'UTC') GROUP BY session_id) AS s
		LEFT JOIN (SELECT session_id, argMax(code, ts) AS last_code FROM play_stop GROUP BY session_id) AS f ON f.session_id = s.session_id
		LEFT JOIN (SELECT session_id, countIf(duration_ms >= %d) AS long FROM stall GROUP BY session_id) AS st ON st.session_id = s.session_id
		LEFT JOIN (SELECT session_id, avg(fps) AS fps, count() AS n FROM heartbeat GROUP BY session_id) AS h ON h.session_id = s.session_id
		GROUP BY g ORDER BY g`, lowFPS, lowFPS, from.UnixMilli(), to.UnixMilli(), pushRebufferMinMs))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, r := range rows {
		n := num(r["n"])
		out[fmt.Sprint(r["g"])] = [2]float64{num(r["bad"]) / max(n, 1), n}
		t.Logf("%s: %.0f plays: %.0f failed, %.0f rebuffered, %.0f under %.1f fps (average %.1f fps); %.0f suffered",
			r["g"], n, num(r["failed"]), num(r["rebuffered"]), num(r["choppy"]), lowFPS, num(r["fps"]), num(r["bad"]))
	}
	return out
}
