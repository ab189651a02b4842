package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/lastmile-qoe/lastmile/trace"
)

// printDiagnosis prints a play session's diagnosis: the verdict line, then
// its evidence, one fact a line.
func printDiagnosis(w io.Writer, d *trace.Diagnosis) {
	if d == nil {
		return
	}
	parts := []string{strings.ReplaceAll(d.Verdict, "_", " ")}
	if d.Phase != "" {
		ph := "at " + d.Phase
		if d.PhaseMs != nil {
			ph += " " + trace.Thousands(*d.PhaseMs) + " ms"
			if d.MedianMs != nil {
				ph += " (cohort median " + trace.Thousands(*d.MedianMs) + " ms: " + d.Cohort + ")"
			}
		}
		parts[0] += " " + ph
	}
	if d.Code != nil {
		parts = append(parts, fmt.Sprintf("code %d", *d.Code))
	}
	if d.NodeID != "" && d.Verdict != trace.VerdictFine {
		parts = append(parts, "on "+d.NodeID)
	}
	if d.Recovered {
		parts = append(parts, "recovered on retry")
	}
	if d.Scope != "" {
		parts = append(parts, "scope "+d.Scope)
	}
	fmt.Fprintf(w, "   diagnosis: %s\n", strings.Join(parts, " · "))
	if d.Reason != "" {
		fmt.Fprintf(w, "     reason: %s\n", traceClip(d.Reason, 200))
	}
	for _, e := range d.Evidence {
		fmt.Fprintf(w, "     %s: %s\n", e.Source, e.Text)
	}
}

// traceComponents orders the components of a session's context and says
// which log types make each.
var traceComponents = []struct {
	name  string
	types []string
}{
	{"push", []string{"push_start", "push_stats", "push_stop"}},
	{"ingest", []string{"ingest_session"}},
	{"relay", []string{"relay"}},
	{"origin", []string{"origin_stream"}},
	{"transcode", []string{"transcode"}},
	{"edge", []string{"edge_access"}},
}

// foldContext writes one line per component of the context: "push ok
// 1,560 kbps · 25 fps · 0 dropped" when none of its events is abnormal,
// else how many are (they are printed with the events).
func foldContext(evs []*trace.Event, bestFPS float64) []string {
	var out []string
	for _, c := range traceComponents {
		var mine []*trace.Event
		bad := 0
		for _, e := range evs {
			if slices.Contains(c.types, e.LogType) {
				mine = append(mine, e)
				if trace.DefaultDiagnosisPlan.Abnormal(e, bestFPS) != "" {
					bad++
				}
			}
		}
		if len(mine) == 0 {
			continue
		}
		if bad > 0 {
			out = append(out, fmt.Sprintf("%-9s ABNORMAL: %d of %d events, shown below", c.name, bad, len(mine)))
			continue
		}
		out = append(out, strings.TrimSpace(fmt.Sprintf("%-9s ok %s", c.name, strings.Join(foldFigures(c.name, mine), " · "))))
	}
	return out
}

// foldFigures sums up a fine component's events in a few rounded figures.
func foldFigures(component string, evs []*trace.Event) []string {
	avg := func(name, unit string) string {
		sum, n := 0.0, 0
		for _, e := range evs {
			if f, ok := e.Float(name); ok {
				sum, n = sum+f, n+1
			}
		}
		if n == 0 {
			return ""
		}
		return trace.Round1(sum/float64(n)) + " " + unit
	}
	total := func(name, unit string) string {
		var sum int64
		seen := false
		for _, e := range evs {
			if v, ok := e.Int(name); ok {
				sum, seen = sum+v, true
			}
		}
		if !seen {
			return ""
		}
		return trace.Thousands(sum) + " " + unit
	}
	most := func(name, label string) string {
		var m int64
		seen := false
		for _, e := range evs {
			if v, ok := e.Int(name); ok && (!seen || v > m) {
				m, seen = v, true
			}
		}
		if !seen {
			return ""
		}
		return label + " " + trace.Thousands(m) + " ms"
	}
	distinct := func(name string) string {
		var vs []string
		for _, e := range evs {
			if v := e.Str(name); v != "" && !slices.Contains(vs, v) {
				vs = append(vs, v)
			}
		}
		return strings.Join(vs, ",")
	}
	var figs []string
	switch component {
	case "push", "ingest":
		figs = []string{avg("bitrate_kbps", "kbps"), avg("fps", "fps"), total("dropped_frames", "dropped")}
	case "relay":
		figs = []string{most("latency_ms", "latency ≤")}
	case "origin":
		figs = []string{avg("bitrate_kbps", "kbps"), avg("fps", "fps")}
	case "transcode":
		figs = []string{distinct("rendition"), avg("fps", "fps"), most("latency_ms", "latency ≤")}
	case "edge":
		figs = []string{distinct("node_id"), fmt.Sprintf("%d requests", len(evs)), "status " + distinct("http_status"), most("first_byte_ms", "first byte ≤")}
	}
	return slices.DeleteFunc(figs, func(s string) bool { return s == "" })
}
