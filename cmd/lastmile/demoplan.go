package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/media/scenario"
)

// faultView is the metrics query that shows one kind of fault: the metric
// the fault moves and the dimensions that single out its cohort.
type faultView struct {
	Metric  string
	GroupBy string
}

// faultViews is the demo's suggestion per fault, by faultKey. Failures show
// in video_start_failure_rate, stalls in rebuffering_ratio, slow starts in
// video_startup_time, frozen pictures in render_stall_ratio, a throttled
// uplink (frames dropped before the ingest) in a low frame_rate.
var faultViews = map[string]faultView{
	"push/throttle":                   {"frame_rate", "room_id"},
	"push/disconnect":                 {"video_start_failure_rate", "room_id"},
	"source/lose_stream":              {"video_start_failure_rate", "room_id"},
	"source/unreachable":              {"video_start_failure_rate", "room_id"},
	"transcode/fail":                  {"video_start_failure_rate", "room_id,rendition"},
	"transcode/lag":                   {"rebuffering_ratio", "room_id,rendition"},
	"edge/refuse":                     {"video_start_failure_rate", "node_id"},
	"edge/slow_first_byte":            {"video_startup_time", "node_id"},
	"edge/stall":                      {"rebuffering_ratio", "node_id"},
	"edge/degrade":                    {"rebuffering_ratio", "cdn,region"},
	"client/decoder_render_stall":     {"render_stall_ratio", "app_version"},
	"client/decoder_first_frame_fail": {"video_start_failure_rate", "app_version"},
	"client/dns_fail":                 {"video_start_failure_rate", "isp"},
	"client/dns_slow":                 {"video_startup_time", "isp"},
	"client/weak_network":             {"rebuffering_ratio", "network"},
	"rollout/ramp/render_stall":       {"render_stall_ratio", "app_version"},
	"rollout/ramp/first_frame_fail":   {"video_start_failure_rate", "app_version"},
}

// defaultView is for a fault the table does not know.
var defaultView = faultView{"play_success_rate", "cdn,region"}

// faultKey names a fault's kind in faultViews: scope/kind, and for a
// rollout also its defect, which decides what the rollout breaks.
func faultKey(f *scenario.Fault) string {
	k := f.Scope + "/" + f.Kind
	if f.Scope == scenario.ScopeRollout {
		k += "/" + f.Defect
	}
	return k
}

func viewOf(f *scenario.Fault) faultView {
	if v, ok := faultViews[faultKey(f)]; ok {
		return v
	}
	return defaultView
}

// demoLook is what the demo's "where to look" commands need: the API the
// pipeline answers on, the data directory holding its query token, the
// window, and the viewers to trace.
type demoLook struct {
	Addr, DataDir        string
	Since                time.Duration
	Faults               []scenario.Fault
	Affected, Unaffected []string
	// Alerts: the pipeline evaluates the alert rules (lastmile alerts).
	Alerts bool
}

// commands are the lines the demo prints, each a command that works when
// pasted into a shell (a trailing comment says what it shows).
func (l demoLook) commands() []string {
	common := fmt.Sprintf("--addr %s --data %s --since %s", shellQuote(l.Addr), shellQuote(l.DataDir), sinceArg(l.Since))
	out := []string{fmt.Sprintf("lastmile localize %s     # the incidents the live localizer finds, with their cohorts", common)}
	if l.Alerts {
		out = append(out, fmt.Sprintf("lastmile alerts %s     # the alerts the rules fired, with their scope and dimension values", common))
	}
	seen := map[faultView]bool{}
	for i := range l.Faults {
		f := &l.Faults[i]
		v := viewOf(f)
		if seen[v] {
			continue // two faults of a kind: one query shows both
		}
		seen[v] = true
		out = append(out, fmt.Sprintf("lastmile metrics %s --metric %s --group-by %s     # %s", common, v.Metric, v.GroupBy, oneLine(f.Name)))
	}
	for _, d := range l.Affected {
		out = append(out, fmt.Sprintf("lastmile trace %s --device %s     # affected by the first fault", common, shellQuote(d)))
	}
	for _, d := range l.Unaffected {
		out = append(out, fmt.Sprintf("lastmile trace %s --device %s     # not affected", common, shellQuote(d)))
	}
	return out
}

// sinceArg writes a window the API reads (whole minutes).
func sinceArg(d time.Duration) string {
	return fmt.Sprintf("%dm", max(1, int((d+time.Minute-1)/time.Minute)))
}

// oneLine keeps a fault name from ending the comment early.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,:/=@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
