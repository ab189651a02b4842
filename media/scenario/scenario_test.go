package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScenarioFilesLoad: every checked-in scenario parses and validates.
func TestScenarioFilesLoad(t *testing.T) {
	files, _ := filepath.Glob("../scenarios/*.yaml")
	if len(files) < 8 {
		t.Fatalf("found %d scenario files, want the baseline, one per scope and the demo", len(files))
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestPlanMatchesTimeline: the labels are the configured timeline in
// absolute time, with the dimensions each fault affects.
func TestPlanMatchesTimeline(t *testing.T) {
	sc, err := Load("../scenarios/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	l := sc.Plan(start)
	if len(l.Faults) != len(sc.Faults) {
		t.Fatalf("%d labels for %d faults", len(l.Faults), len(sc.Faults))
	}
	for i, f := range sc.Faults {
		got := l.Faults[i]
		if !got.Start.Equal(start.Add(f.At)) || !got.End.Equal(start.Add(f.At+f.For)) || got.Scope != f.Scope {
			t.Errorf("label %d = %+v, want %s from %s for %s", i, got, f.Scope, f.At, f.For)
		}
	}
	if d := l.Faults[0].Dims; d["cdn"] != "cdn-b" || d["region"] != "south" {
		t.Errorf("edge degrade dims = %v", d)
	}
	if d := l.Faults[1].Dims; d["stream_id"] != "live/room1" || d["rendition"] != "480p" {
		t.Errorf("transcode dims = %v", d)
	}
	p := filepath.Join(t.TempDir(), "labels.json")
	if err := WriteLabels(p, l); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), `"node_id"`) && !strings.Contains(string(b), `"cdn": "cdn-b"`) {
		t.Errorf("labels file lacks the edge fault's dims:\n%s", b)
	}
}

func TestValidateNamesProblems(t *testing.T) {
	_, err := Parse([]byte(`name: x
duration: 10s
faults:
  - {scope: edge, kind: refuse, node: nowhere, at: 1s, for: 2s}
  - {scope: transcode, kind: fail, room: room1, rendition: 4k, at: 1s, for: 20s}
  - {scope: moon, kind: fall, at: 1s, for: 1s}
`))
	for _, want := range []string{`node "nowhere"`, `rendition "4k"`, "must lie within the duration", "unknown fault"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestLabelsStateStrength: each label carries what was injected, defaults
// included, so the ground truth says how strong the fault was.
func TestLabelsStateStrength(t *testing.T) {
	sc, err := Parse([]byte(`name: x
duration: 100s
topology:
  players: {app_versions: ["5.2.0", "5.3.0"]}
faults:
  - {scope: push, kind: throttle, room: room1, kbps: 700, at: 1s, for: 2s}
  - {scope: transcode, kind: lag, room: room1, rendition: 480p, at: 1s, for: 2s}
  - {scope: edge, kind: slow_first_byte, node: edge-a-north-1, delay: 2s, at: 1s, for: 2s}
  - {scope: edge, kind: stall, node: edge-a-north-1, at: 1s, for: 2s}
  - {scope: edge, kind: degrade, cdn: cdn-b, region: south, at: 1s, for: 2s}
  - {scope: client, kind: dns_slow, isp: isp-b, delay: 1500ms, at: 1s, for: 2s}
  - {scope: client, kind: weak_network, share: 0.25, kbps: 400, at: 1s, for: 2s}
  - {scope: client, kind: decoder_render_stall, app_version: 5.3.0, at: 1s, for: 2s}
  - {scope: rollout, kind: ramp, app_version: 6.0.0, share: 0.5, defect: first_frame_fail, at: 1s, for: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"kbps": "700", "room_id": "room1"},
		{"frame_delay_ms": "60", "rendition": "480p"},
		{"first_byte_delay_ms": "2000", "node_id": "edge-a-north-1"},
		{"stall_after_ms": "5000", "stall_ms": "4000"},
		{"first_byte_delay_ms": "1500", "stall_after_ms": "5000", "stall_ms": "3000", "cdn": "cdn-b"},
		{"dns_delay_ms": "1500", "isp": "isp-b"},
		{"share": "0.25", "kbps": "400", "network": "weak"},
		{"render_stall_every_ms": "3000", "render_stall_ms": "500", "app_version": "5.3.0"},
		{"share": "0.5", "defect": "first_frame_fail", "app_version": "6.0.0"},
	}
	l := sc.Plan(time.Now())
	for i, w := range want {
		for k, v := range w {
			if got := l.Faults[i].Dims[k]; got != v {
				t.Errorf("%s/%s: dims[%s] = %q, want %q (dims %v)", l.Faults[i].Scope, l.Faults[i].Kind, k, got, v, l.Faults[i].Dims)
			}
		}
	}
	// What apply injects is what the label states.
	if f := edgeFault(ptr(sc.Faults[4].withDefaults()), true); f.FirstByteDelay != 1500*time.Millisecond || f.StallAfter != 5*time.Second || f.StallFor != 3*time.Second {
		t.Errorf("degrade injects %+v", f)
	}
	if f := edgeFault(ptr(sc.Faults[3].withDefaults()), true); f.StallAfter != 5*time.Second || f.StallFor != 4*time.Second {
		t.Errorf("stall injects %+v", f)
	}
}

func ptr[T any](v T) *T { return &v }
