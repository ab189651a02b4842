package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/scenario"
	"github.com/lastmile-qoe/lastmile/media/scenarios"
)

func TestFaultViews(t *testing.T) {
	for _, c := range []struct {
		f               scenario.Fault
		metric, groupBy string
	}{
		{scenario.Fault{Scope: "edge", Kind: "refuse"}, "video_start_failure_rate", "node_id"},
		{scenario.Fault{Scope: "edge", Kind: "slow_first_byte"}, "video_startup_time", "node_id"},
		{scenario.Fault{Scope: "edge", Kind: "stall"}, "rebuffering_ratio", "node_id"},
		{scenario.Fault{Scope: "edge", Kind: "degrade"}, "rebuffering_ratio", "cdn,region"},
		{scenario.Fault{Scope: "transcode", Kind: "fail"}, "video_start_failure_rate", "room_id,rendition"},
		{scenario.Fault{Scope: "transcode", Kind: "lag"}, "rebuffering_ratio", "room_id,rendition"},
		{scenario.Fault{Scope: "push", Kind: "throttle"}, "frame_rate", "room_id"},
		{scenario.Fault{Scope: "push", Kind: "disconnect"}, "video_start_failure_rate", "room_id"},
		{scenario.Fault{Scope: "source", Kind: "lose_stream"}, "video_start_failure_rate", "room_id"},
		{scenario.Fault{Scope: "source", Kind: "unreachable"}, "video_start_failure_rate", "room_id"},
		{scenario.Fault{Scope: "client", Kind: "decoder_render_stall"}, "render_stall_ratio", "app_version"},
		{scenario.Fault{Scope: "client", Kind: "decoder_first_frame_fail"}, "video_start_failure_rate", "app_version"},
		{scenario.Fault{Scope: "client", Kind: "dns_fail"}, "video_start_failure_rate", "isp"},
		{scenario.Fault{Scope: "client", Kind: "dns_slow"}, "video_startup_time", "isp"},
		{scenario.Fault{Scope: "client", Kind: "weak_network"}, "rebuffering_ratio", "network"},
		{scenario.Fault{Scope: "rollout", Kind: "ramp", Defect: "render_stall"}, "render_stall_ratio", "app_version"},
		{scenario.Fault{Scope: "rollout", Kind: "ramp", Defect: "first_frame_fail"}, "video_start_failure_rate", "app_version"},
		{scenario.Fault{Scope: "edge", Kind: "something_new"}, "play_success_rate", "cdn,region"},
	} {
		if v := viewOf(&c.f); v.Metric != c.metric || v.GroupBy != c.groupBy {
			t.Errorf("%s: %s by %s, want %s by %s", faultKey(&c.f), v.Metric, v.GroupBy, c.metric, c.groupBy)
		}
	}
}

// TestFaultViewsCoverScenarios: every fault of a built-in scenario has its
// own view, not the fallback.
func TestFaultViewsCoverScenarios(t *testing.T) {
	for _, name := range scenarios.Names() {
		sc, err := loadScenario(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range sc.Faults {
			if _, ok := faultViews[faultKey(&sc.Faults[i])]; !ok {
				t.Errorf("scenario %s: fault %s has no view", name, faultKey(&sc.Faults[i]))
			}
		}
	}
}

// TestDemoCommands: the printed commands carry the address, the data
// directory and the window, one metrics command per distinct view, and
// survive a shell even for a data directory with blanks and quotes.
func TestDemoCommands(t *testing.T) {
	dir := "/tmp/my demo's data"
	look := demoLook{Addr: "http://127.0.0.1:18080", DataDir: dir, Since: 3*time.Minute + 10*time.Minute,
		Faults: []scenario.Fault{
			{Name: "cdn-b south degraded", Scope: "edge", Kind: "degrade"},
			{Name: "room1 480p down", Scope: "transcode", Kind: "fail"},
			{Name: "again", Scope: "edge", Kind: "degrade"},
		},
		Affected: []string{"dev-x-viewer-0001"}, Unaffected: []string{"dev-x-viewer-0002"}, Alerts: true}
	got := look.commands()
	want := []string{
		"lastmile localize --addr http://127.0.0.1:18080 --data '/tmp/my demo'\\''s data' --since 13m     # the incidents the live localizer finds, with their cohorts",
		"lastmile alerts --addr http://127.0.0.1:18080 --data '/tmp/my demo'\\''s data' --since 13m     # the alerts the rules fired, with their scope and dimension values",
		"lastmile metrics --addr http://127.0.0.1:18080 --data '/tmp/my demo'\\''s data' --since 13m --metric rebuffering_ratio --group-by cdn,region     # cdn-b south degraded",
		"lastmile metrics --addr http://127.0.0.1:18080 --data '/tmp/my demo'\\''s data' --since 13m --metric video_start_failure_rate --group-by room_id,rendition     # room1 480p down",
		"lastmile trace --addr http://127.0.0.1:18080 --data '/tmp/my demo'\\''s data' --since 13m --device dev-x-viewer-0001     # affected by the first fault",
		"lastmile trace --addr http://127.0.0.1:18080 --data '/tmp/my demo'\\''s data' --since 13m --device dev-x-viewer-0002     # not affected",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The shell gives the commands back their arguments.
	out, err := exec.Command("sh", "-c", `printf '%s\n' `+shellQuote(dir)+" "+shellQuote("a'b c")+" "+shellQuote("plain-1")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != dir+"\na'b c\nplain-1\n" {
		t.Fatalf("sh read %q", out)
	}
}
