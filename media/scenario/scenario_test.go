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
