package localize

import (
	"context"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// TestLiveNarrowedToNodeFigures: viewers of both south nodes fail to
// start, but only edge-b-south-1's access log shows errors, so the verdict
// narrows the searched cohort (the region) to that node. The incident's
// figures and sessions must then be that node's viewers', not the region's.
func TestLiveNarrowedToNodeFigures(t *testing.T) {
	w := newWorld()
	w.server = func(ev map[string]any) {
		if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-b-south-1" && w.inTS(ev) {
			ev["http_status"], ev["error"] = 503, "overloaded"
		}
	}
	w.play = func(p *play) {
		if p.region == "south" && w.in(p.at) {
			p.code, p.blocked = 1002, "tcp_connect"
		}
	}
	st := storetest.Embedded(t)
	resetStore(t, st)
	insertRows(t, st, w.build())
	incs, err := DefaultLivePlan.Localize(context.Background(), st, LiveRequest{From: w.t0.Add(w.from), To: w.t0.Add(w.to)})
	if err != nil {
		t.Fatal(err)
	}
	for _, inc := range incs {
		t.Logf("%s", describe(inc))
	}
	if len(incs) == 0 {
		t.Fatal("no incident")
	}
	inc := incs[0]
	if inc.Dims["node_id"] != "edge-b-south-1" || inc.Scope != ScopeEdge {
		t.Fatalf("top incident %s, want edge on edge-b-south-1", describe(inc))
	}
	// The KPI counts play_stop rows in the incident's span.
	var nodeViews, nodeFailed, regionFailed float64
	for _, r := range w.rows {
		at := w.t0.Add(w.tsOf(r))
		if r["log_type"] != "play_stop" || r["region"] != "south" || at.Before(inc.From) || !at.Before(inc.To) {
			continue
		}
		failed := r["code"] != 0
		if failed {
			regionFailed++
		}
		if r["node_id"] == "edge-b-south-1" {
			nodeViews++
			if failed {
				nodeFailed++
			}
		}
	}
	t.Logf("in its span the region failed %.0f, the node %.0f of %.0f", regionFailed, nodeFailed, nodeViews)
	if inc.Affected != nodeFailed || inc.Views != nodeViews {
		t.Errorf("figures %.0f of %.0f views, want the node's %.0f of %.0f (the region's failures: %.0f)", inc.Affected, inc.Views, nodeFailed, nodeViews, regionFailed)
	}
	for _, s := range inc.Sessions {
		found := false
		for _, r := range w.rows {
			if r["log_type"] == "play_start" && r["session_id"] == s.SessionID {
				found = r["node_id"] == "edge-b-south-1"
			}
		}
		if !found {
			t.Errorf("session %s is not the node's", s.SessionID)
		}
	}
}

// TestLiveTwoCausesOnTwoDimensions: one ISP's viewers all fail to start
// while 60% of one app version's fail too, on every ISP (the client
// scenario's DNS failure and decoder defect at once). The ISP's failures
// lift every version's rate alike, so the version hardly stands out in
// the marginals; gated again without the ISP's viewers, it does, and both
// causes are answered.
func TestLiveTwoCausesOnTwoDimensions(t *testing.T) {
	w := newWorld()
	w.play = func(p *play) { p.skip = true }
	w.extraRows = func(w *world) {
		isps := []string{"isp-a", "isp-b", "isp-c"}
		n := 0
		for at := time.Duration(0); at < w.dur-10*time.Second; at += 250 * time.Millisecond {
			n++
			node := worldNodes[n%4]
			p := &play{at: at, stream: "live/room1", node: node.node, cdn: node.cdn, region: node.region,
				isp: isps[n%3], version: "5.2.0", network: "wifi", dns: 5, connect: 5, firstPk: 20, decode: 15}
			if n%5 == 1 {
				p.version = "5.2.1"
			}
			if w.in(at) && (p.isp == "isp-c" || (p.version == "5.2.1" && n%25 < 15)) {
				p.code, p.blocked = 1001, "dns"
			}
			w.addPlay(100_000+n, p)
		}
	}
	st := storetest.Embedded(t)
	resetStore(t, st)
	insertRows(t, st, w.build())
	incs, err := DefaultLivePlan.Localize(context.Background(), st, LiveRequest{From: w.t0.Add(w.from), To: w.t0.Add(w.to + 10*time.Second), KPI: KPIStartFailure})
	if err != nil {
		t.Fatal(err)
	}
	var isp, version bool
	for _, inc := range incs {
		t.Logf("%s", describe(inc))
		isp = isp || (inc.Dims["isp"] == "isp-c" && inc.Dims["app_version"] == "")
		version = version || (inc.Dims["app_version"] == "5.2.1" && inc.Dims["isp"] == "")
	}
	if !isp || !version {
		t.Errorf("incidents name isp-c: %v, app_version 5.2.1: %v; want both", isp, version)
	}
}
