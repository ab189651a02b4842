package localize

import (
	"context"
	"time"
)

// Store is what the live localizer reads: the analytics store's SELECTs as
// JSONEachRow (query.Store and store.Reader have this method).
type Store interface {
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
}

// Scopes a verdict can name. They are the scenario labels' vocabulary
// (media/scenario), plus system (everyone at once) and unknown.
const (
	ScopePush      = "push"      // the anchor's uplink or publisher
	ScopeSource    = "source"    // ingest, relay or origin: every viewer of a stream on every CDN
	ScopeTranscode = "transcode" // one rendition of a stream
	ScopeEdge      = "edge"      // an edge node, or a CDN in a region, or a CDN
	ScopeClient    = "client"    // an ISP, an app version, a network, an OS
	ScopeRollout   = "rollout"   // a new app version (or everyone) from a moment on
	ScopeSystem    = "system"    // every anchor and viewer
	ScopeUnknown   = "unknown"
)

// KPIs the live localizer watches. Each is a ratio of counts over a cohort.
const (
	KPIStartFailure    = "start_failure"    // attempts failed before the first frame / attempts ended
	KPIPlaybackFailure = "playback_failure" // plays failed after the first frame / plays ended
	KPISlowStart       = "slow_start"       // slow first frames / first frames
	KPIRebuffering     = "rebuffering"      // plays with a stall / plays ended
	KPIRenderStall     = "render_stall"     // plays with a render stall / plays ended
)

// Incident is one anomaly the live localizer found: when, which KPI, which
// cohort (the dimension values of the cause), how bad against what was
// expected, and the verdict on which scope failed with its evidence.
type Incident struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	KPI  string    `json:"kpi"`
	// Dims is the cohort: dimension → value (e.g. {"cdn": "cdn-b",
	// "region": "south"}); empty for everyone (system).
	Dims map[string]string `json:"dims"`
	// Views is the cohort's denominator in the span (sampling weights
	// applied), Affected its numerator (failed, slow, stalled views).
	Views    float64 `json:"views"`
	Affected float64 `json:"affected"`
	// Value is the cohort's KPI in the span; Expected what its baseline
	// (own history, else its peers) predicts. Both are ratios 0..1.
	Value    float64 `json:"value"`
	Expected float64 `json:"expected"`
	// Share is the part of the KPI's excess in the span this cohort
	// explains; Confidence is 0..1 (docs/localize.md).
	Share      float64 `json:"share"`
	Confidence float64 `json:"confidence"`
	// Score ranks incidents (higher first).
	Score float64 `json:"score"`

	// Scope is the verdict; Evidence supports it; RuledOut says why each
	// other scope that could fit the cohort does not.
	Scope    string     `json:"scope"`
	Evidence []Evidence `json:"evidence"`
	RuledOut []Evidence `json:"ruled_out"`

	// Sessions are a few affected viewers, Traces the commands that show them.
	Sessions []SessionRef `json:"sessions,omitempty"`
	Traces   []string     `json:"traces,omitempty"`
}

// Evidence is one fact for or against a scope.
type Evidence struct {
	Scope  string `json:"scope"`  // the scope it supports or rules out
	Source string `json:"source"` // where it comes from: a log_type, or "cohort"
	Text   string `json:"text"`   // the fact in words, with its figures
}

// SessionRef names an affected viewer's session.
type SessionRef struct {
	DeviceID  string `json:"device_id"`
	SessionID string `json:"session_id"`
}
