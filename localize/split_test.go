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
		{"no fault: none", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			if tc.fault != nil {
				tc.fault(w)
			}
			st := loadWorld(t, w)
			inc := &Incident{From: w.t0.Add(w.from), To: w.t0.Add(w.to), Dims: map[string]string{"rendition": "480p"}, Scope: ScopeTranscode}
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
