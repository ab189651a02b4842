package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAlertRulesRefusedAtStart: an invalid rules file stops `lastmile
// alert` (and run) before anything starts, naming the file, line and
// reason of every problem.
func TestAlertRulesRefusedAtStart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(p, []byte(`rules:
  - name: NodeFailures
    scope: edge
    metric: video_start_failure_rate
    group_by: [node_id]
    baseline: 30m
    window: 15s
    fire: {ratio: 3}
  - name: Other
    scope: cdn
    metric: rebuffering_ratio
    window: 1m
    baseline: 30m
    fire: {ratio: 2}
`), 0o644)
	for _, cmd := range []string{"alert", "run"} {
		var out, errb bytes.Buffer
		code := run([]string{cmd, "--rules", p, "--data", t.TempDir()}, &out, &errb)
		got := errb.String()
		if code != 2 || !strings.Contains(got, p+":7: window 15s must be a whole number of 10s") ||
			!strings.Contains(got, p+`:10: scope "cdn": want one of`) {
			t.Errorf("lastmile %s: exit %d, stderr %q", cmd, code, got)
		}
	}
}
