package localize

import (
	"context"
	"slices"
	"testing"
)

// TestTranscodeStreams: a transcode verdict on a rendition across streams
// names the streams whose worker failed or fell behind, or none (the
// rendition-wide cohort stands) when every stream's worker failed the
// same way.
func TestTranscodeStreams(t *testing.T) {
	status := func(byStream map[string]string) func(w *world) {
		return func(w *world) {
			w.server = func(ev map[string]any) {
				st, ok := byStream[ev["stream_id"].(string)]
				if ev["log_type"] != "transcode" || !ok || !w.inTS(ev) {
					return
				}
				switch st {
				case "error":
					ev["status"], ev["error"], ev["fps"] = "error", "transcode worker failed", 0
				case "lagging":
					ev["status"], ev["fps"], ev["latency_ms"] = "lagging", 6.6, 5000
				}
			}
		}
	}
	cases := []struct {
		name  string
		fault func(w *world)
		want  []string
	}{
		{"every worker failed alike: the rendition stands", status(map[string]string{"live/room1": "error", "live/room2": "error"}), nil},
		{"one failed, one lags: two streams", status(map[string]string{"live/room1": "error", "live/room2": "lagging"}), []string{"live/room1", "live/room2"}},
		{"one failed: that stream", status(map[string]string{"live/room1": "error"}), []string{"live/room1"}},
		{"one lags: that stream", status(map[string]string{"live/room2": "lagging"}), []string{"live/room2"}},
		{"no fault: none", status(nil), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			tc.fault(w)
			inc := &Incident{From: w.t0.Add(w.from), To: w.t0.Add(w.to), Dims: map[string]string{"rendition": "480p"}, Scope: ScopeTranscode}
			st := loadWorld(t, w)
			got, err := DefaultScopePlan.TranscodeStreams(context.Background(), st, inc)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("streams %v, want %v", got, tc.want)
			}
			// a cohort naming its stream, or another verdict, is not split
			for _, other := range []*Incident{
				{From: inc.From, To: inc.To, Dims: map[string]string{"rendition": "480p", "stream_id": "live/room1"}, Scope: ScopeTranscode},
				{From: inc.From, To: inc.To, Dims: map[string]string{"rendition": "480p"}, Scope: ScopeEdge},
			} {
				if got, err := DefaultScopePlan.TranscodeStreams(context.Background(), st, other); err != nil || got != nil {
					t.Errorf("%s on %v: streams %v (err %v), want none", other.Scope, other.Dims, got, err)
				}
			}
		})
	}
}

// TestSearchTieDenser: sparse leaves put a node and its CDN at one score
// (their expectations under the score's floor); the node, without the
// CDN's unaffected viewers, is the cause.
func TestSearchTieDenser(t *testing.T) {
	attrs := []string{"cdn", "node_id"}
	values := [][]string{{"cdn-a", "cdn-b"}, {"a-north", "a-south", "b-north", "b-south"}}
	leaves := []Leaf{
		{Key: []uint32{1, 3}, V: 9, C: 11, E: 0.22},
		{Key: []uint32{1, 2}, V: 0, C: 3, E: 0.06},
		{Key: []uint32{0, 0}, V: 0, C: 20, E: 0.4},
		{Key: []uint32{0, 1}, V: 0, C: 20, E: 0.4},
	}
	causes := DefaultLivePlan.Search.Search(attrs, values, leaves)
	if len(causes) != 1 || causes[0].Element["node_id"] != "b-south" {
		t.Fatalf("causes %+v, want the node b-south", causes)
	}
}

// TestSearchRest: two faults at once on crossing cohorts (an ISP whose
// viewers all fail, a version failing on the other ISPs too) raise every
// attribute's peers, so the version, searched against that expectation,
// is diluted; searched again without the ISP's leaves, against their own
// peers, it is found.
func TestSearchRest(t *testing.T) {
	lp := DefaultLivePlan
	rd := &readout{attrs: []string{"isp", "app_version"}, values: [][]string{{"isp-a", "isp-b", "isp-c"}, {"5.2.0", "5.2.1", "5.3.0"}}}
	var all []Leaf
	for i := range 3 {
		for v := range 3 {
			l := Leaf{Key: []uint32{uint32(i), uint32(v)}, C: 15}
			switch {
			case i == 2:
				l.V = 12
			case v == 1:
				l.V = 6
			}
			all = append(all, l)
		}
	}
	rate := 0.2 // the inflated peers' ratio
	for i := range all {
		all[i].E = all[i].C * rate
	}
	keep := []int{0, 1}
	first := lp.searchLeaves(0, 0, rd, keep, all)
	if len(first) != 1 || first[0].cause.Element["isp"] != "isp-c" {
		t.Fatalf("first search %+v, want {isp: isp-c} alone", first)
	}
	rest := lp.searchRest(0, rd, keep, all, first, rate, lp.Floor[KPIStartFailure])
	if len(rest) != 1 || len(rest[0].cause.Element) != 1 || rest[0].cause.Element["app_version"] != "5.2.1" {
		t.Fatalf("search of the rest %+v, want {app_version: 5.2.1}", rest)
	}
	if rest[0].v != 12 || rest[0].c != 30 {
		t.Errorf("the version's figures outside the ISP: %.0f of %.0f, want 12 of 30", rest[0].v, rest[0].c)
	}
}
