package topology

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	top, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(top.Edges()); n != 4 {
		t.Errorf("default has %d edges, want 4 (2 regions × 2 CDNs)", n)
	}
}

func TestParse(t *testing.T) {
	top, err := Parse([]byte("players:\n  count: 5\n  watch: 3s\nrooms:\n  - {name: r9, bitrate_kbps: 1000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if top.Players.Count != 5 || top.Players.Watch != 3*time.Second || top.Rooms[0].Name != "r9" {
		t.Errorf("parsed %+v", top)
	}
	if len(top.Players.Regions) == 0 {
		t.Error("defaults lost for keys absent from the file")
	}
	for _, tc := range []struct{ yaml, want string }{
		{"playerz: {}\n", "playerz"},
		{"rooms: [{name: r, bitrate_kbps: 0}]\n", "bitrate_kbps must be positive"},
		{"origin: {transcode: gpu}\n", "want synthetic or ffmpeg"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
}

func TestSecrets(t *testing.T) {
	noEnv := func(string) string { return "" }
	top := Default()
	if top.Scheduler.Secret != "" || top.Scheduler.PushToken != "" {
		t.Fatalf("the default topology carries a secret: %+v", top.Scheduler)
	}
	if _, err := top.Secrets(noEnv, false, NeedSecret, NeedPushToken); err == nil ||
		!strings.Contains(err.Error(), "scheduler.secret is not set") || !strings.Contains(err.Error(), "scheduler.push_token is not set") {
		t.Errorf("both missing: %v", err)
	}
	if _, err := top.Secrets(noEnv, false); err != nil {
		t.Errorf("a role that needs none: %v", err)
	}
	env := map[string]string{EnvSecret: "from-env", EnvPushToken: "tok-env"}
	top.Scheduler.Secret = "from-file"
	if _, err := top.Secrets(func(k string) string { return env[k] }, false, NeedSecret, NeedPushToken); err != nil ||
		top.Scheduler.Secret != "from-env" || top.Scheduler.PushToken != "tok-env" {
		t.Errorf("environment over the file: %v %+v", err, top.Scheduler)
	}
	a, b := Default(), Default()
	ga, err := a.Secrets(noEnv, true)
	b.Secrets(noEnv, true)
	if err != nil || len(ga) != 2 || len(a.Scheduler.Secret) != 64 || a.Scheduler.Secret == b.Scheduler.Secret || a.Scheduler.PushToken == a.Scheduler.Secret {
		t.Errorf("generated %v: %q %q, another run %q", ga, a.Scheduler.Secret, a.Scheduler.PushToken, b.Scheduler.Secret)
	}
}

// TestEdgeNodeOverride: edge.nodes changes one node's quick start and GOP
// cache, the others keep the shared values, and an unknown node is an error.
func TestEdgeNodeOverride(t *testing.T) {
	top, err := Parse([]byte("edge:\n  quick_start: 1s\n  nodes:\n    edge-a-north-1: {quick_start: 3s, cache_gops: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e := top.Edge.For("edge-a-north-1"); e.QuickStart != 3*time.Second || e.CacheGOPs != 5 || e.QueueBytes != top.Edge.QueueBytes {
		t.Errorf("overridden node: %+v", e)
	}
	if e := top.Edge.For("edge-b-north-1"); e.QuickStart != time.Second || e.CacheGOPs != 2 {
		t.Errorf("other node: %+v, want the shared 1s and 2 GOPs", e)
	}
	if _, err := Parse([]byte("edge:\n  nodes:\n    edge-x-1: {quick_start: 3s}\n")); err == nil {
		t.Error("an override of an unknown node was accepted")
	}
}
