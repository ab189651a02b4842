package localize

import (
	"encoding/json"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// Log types by who writes them: the publisher and the ingest (push side),
// the rest of the server side, and the viewers' players.
var (
	pushLogs   = []string{"push_start", "push_stats", "push_stop", "ingest_session"}
	serverLogs = []string{"push_start", "push_stats", "push_stop", "ingest_session", "relay", "origin_stream", "transcode", "edge_access"}
	clientLogs = []string{"play_start", "first_frame", "play_stop", "stall", "render_stall", "heartbeat"}
)

// dumpTS is the time layout of a dump's ts column.
const dumpTS = "2006-01-02 15:04:05.000"

// perturbation changes a dump's rows as a loaded machine does: a
// component that reports late (its ts later than the event), rows lost.
type perturbation struct {
	name string
	// shift moves the ts of the rows of these log types by delay.
	shift []string
	delay time.Duration
	// drop loses this share of the rows of the log types in dropOf.
	drop   float64
	dropOf []string
}

// apply is the row transform of loadDumpVia.
func (p perturbation) apply(line []byte) []byte {
	var row map[string]any
	if err := json.Unmarshal(line, &row); err != nil {
		return line
	}
	lt, _ := row["log_type"].(string)
	if p.drop > 0 && slices.Contains(p.dropOf, lt) {
		h := fnv.New32a()
		id, _ := row["event_id"].(string)
		h.Write([]byte(id))
		if float64(h.Sum32()%1000) < 1000*p.drop {
			return nil
		}
	}
	if p.delay != 0 && slices.Contains(p.shift, lt) {
		ts, err := time.Parse(dumpTS, row["ts"].(string))
		if err != nil {
			return line
		}
		row["ts"] = ts.Add(p.delay).Format(dumpTS)
	}
	out, err := json.Marshal(row)
	if err != nil {
		return line
	}
	return out
}

// perturbations simulate the load of a CI run (2 cores shared with ffmpeg
// and the players): the push side logging late, the viewers' reports late
// (which moves the incidents' spans), server rows lost.
var perturbations = []perturbation{
	{name: "push side 3 s late", shift: pushLogs, delay: 3 * time.Second},
	{name: "push side 8 s late", shift: pushLogs, delay: 8 * time.Second},
	{name: "viewers 8 s late", shift: clientLogs, delay: 8 * time.Second},
	{name: "a third of server rows lost", drop: 0.33, dropOf: serverLogs},
}

// TestLiveScenarioPerturbed runs the scenario dumps through each
// perturbation and reports the accuracy; the verdicts the e2e scenario
// tests require (e2e/localize_test.go) must hold under each. Skipped
// without the dumps.
func TestLiveScenarioPerturbed(t *testing.T) {
	st := storetest.Embedded(t)
	var lines []string
	for _, p := range perturbations {
		t.Run(strings.ReplaceAll(p.name, " ", "_"), func(t *testing.T) {
			d := scoreDumps(t, st, DefaultLivePlan, p.apply)
			lines = append(lines, p.name+": "+d.String())
			for _, name := range requiredScope {
				if got, ok := d.byName[name]; ok && !strings.HasSuffix(got, "scope ok") {
					t.Errorf("%s: %s came out %q, want its cohort with the labelled scope", p.name, name, got)
				}
			}
		})
	}
	for _, l := range lines {
		t.Log(l)
	}
}

// requiredScope are the faults the e2e scenario tests require with their
// labelled scope (e2e/scenario_kinds_test.go, e2e/push_test.go), those
// of the dumps at hand.
var requiredScope = []string{
	"edge-a-south-1 refuses", "cdn-b north degraded", "edge-b-south-1 first byte 2 s late",
	"room2 uplink capped at 700 kbit/s",
	"room1 480p worker down",
	"origin unreachable for room2", "origin lost room1", "room2 publisher disconnected",
	"isp-c dns down", "isp-b dns 2 s late", "5.3.0 renderer freezes",
	"6.0.0 rollout", "6.1.0 rollout",
}
