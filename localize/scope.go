package localize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

// ScopePlan decides which scope an incident's cohort failed at, from the
// server logs of the incident's span. Every threshold it judges with is a
// field here (docs/localize.md, "Verdicts").
type ScopePlan struct {
	// Margin widens the span on each side when reading server logs: they
	// report every few seconds, and a fault shows just before the first
	// affected view is counted.
	Margin time.Duration
	// History is how far before the span the plan reads for what was
	// normal: a stream's push frame rate, a node's request rate, an app
	// version's share of plays.
	History time.Duration

	// The push side collapsed when, in the span, push_stats report a frame
	// rate under PushFPSRatio × the stream's own earlier (or declared)
	// rate, a bitrate under PushBitrateRatio × its target, at least
	// PushDroppedFrames dropped frames, or a send buffer of at least
	// PushSendBufferMs.
	PushFPSRatio      float64
	PushBitrateRatio  float64
	PushDroppedFrames float64
	PushSendBufferMs  float64
	// The publisher stopped when push_stop logs a code, or its push_stats
	// and the ingest's session stats pause together for PushGapFactor ×
	// their usual interval. Both are read from PushLookBack before the span on
	// (push evidence logged late, or before a span that starts late, still
	// counts), as are the origin's and the relay's losses and errors:
	// which side failed first is told by their ts.
	PushLookBack  time.Duration
	PushGapFactor float64

	// A rendition's transcode is behind when its frame rate is under
	// TranscodeFPSRatio × the source's at the origin, or its capture to
	// output latency reaches TranscodeLatencyMs.
	TranscodeFPSRatio  float64
	TranscodeLatencyMs float64

	// Edge requests fail when at least EdgeErrorShare of them (and
	// EdgeRatio × their peers' share) end with an HTTP status ≥ 400 or an
	// error; they are slow when that share of them waits EdgeFirstByteMs
	// or more for the first byte. A node stopped answering when its share
	// of the requests for the same streams in the span (without margins)
	// falls under EdgeRequestDrop × its share before the span.
	// EdgeMinRequests is the fewest requests a share is judged on.
	EdgeErrorShare  float64
	EdgeRatio       float64
	EdgeFirstByteMs float64
	EdgeRequestDrop float64
	EdgeMinRequests float64
	// EdgeBucket cuts the span's edge_access in time: a stream's
	// back-to-source errors are compared with other streams' in the
	// buckets where it had errors.
	EdgeBucket time.Duration

	// A client cohort on at least ClientMinNodes edge nodes is not one
	// edge's problem. The cohort's failed starts blocked in one phase name
	// it when there are at least MinBlocked and, per play,
	// ClientPhaseRatio × other viewers'; the same ratio of the others'
	// average time in a first-frame phase (and ClientPhaseMs at least)
	// marks that phase slow. Stalls or render stalls are the cohort's own
	// when they come at least MinPerPlay per play and ClientPhaseRatio ×
	// other viewers'.
	ClientMinNodes   int
	MinBlocked       float64
	ClientPhaseRatio float64
	ClientPhaseMs    float64
	MinPerPlay       float64

	// An app version is rolling out when its share of first attempts to
	// play grows, by a count-based test at level RolloutAlpha on at least
	// RolloutMinStarts of its starts (rolloutTest): it appeared after the
	// history began, its absence before that unlikely at the share it
	// had since; or its share in the span is at least RolloutRamp × its
	// share before it, the span's count of it unlikely at that share.
	// A steady version, however rare, is a client group.
	RolloutAlpha     float64
	RolloutMinStarts float64
	RolloutRamp      float64

	// Confidence is multiplied by UnsupportedFactor when no server log
	// supports the verdict (it rests on the cohort alone), and by
	// AmbiguousFactor when the cohort cannot tell two scopes apart (a
	// CDN region served by one node).
	UnsupportedFactor float64
	AmbiguousFactor   float64
}

// DefaultScopePlan is tuned on the scenario runs (docs/localize.md).
var DefaultScopePlan = ScopePlan{
	Margin:             5 * time.Second,
	History:            5 * time.Minute,
	PushFPSRatio:       0.6,
	PushBitrateRatio:   0.6,
	PushDroppedFrames:  25,
	PushSendBufferMs:   300,
	PushLookBack:       30 * time.Second,
	PushGapFactor:      2.5,
	TranscodeFPSRatio:  0.8,
	TranscodeLatencyMs: 1000,
	EdgeErrorShare:     0.1,
	EdgeRatio:          3,
	EdgeFirstByteMs:    1000,
	EdgeRequestDrop:    0.3,
	EdgeMinRequests:    5,
	EdgeBucket:         5 * time.Second,
	ClientMinNodes:     2,
	MinBlocked:         2,
	ClientPhaseMs:      200,
	ClientPhaseRatio:   3,
	MinPerPlay:         0.2,
	RolloutAlpha:       0.01,
	RolloutMinStarts:   5,
	RolloutRamp:        1.5,
	UnsupportedFactor:  0.5,
	AmbiguousFactor:    0.8,
}

// Dimension names a cohort may carry, by what they point at.
var (
	streamDims = []string{"room_id", "stream_id"}
	edgeDims   = []string{"node_id", "cdn", "region"}
	clientDims = []string{"isp", "app_version", "network", "os", "protocol", "codec"}
)

// finding is what one scope's check found: facts for it (support) and
// facts that its component was healthy (clean).
type finding struct {
	support []Evidence
	clean   []Evidence
	// ambiguous notes a scope the cohort cannot be told apart from.
	ambiguous []Evidence
	// first is when the first discrete failure (a stop, a loss, an
	// error) was logged, Unix ms, 0 for none; sustained says a component's
	// own periodic stats degraded (an uplink collapsing), which a failure
	// elsewhere does not cause.
	first     int64
	sustained bool
	// node is the one edge node of a cohort naming none (a CDN, a region)
	// that the edge logs, or the cohort's failed starts, implicate; ""
	// for none or several.
	node string
}

// Decide sets inc.Scope, inc.Evidence and inc.RuledOut from inc.Dims and
// the server logs around [inc.From, inc.To]. Candidates are the scopes the
// cohort fits, most specific first; the first one a server log supports
// wins, else the first one no log ruled out (flagged as resting on the
// cohort alone).
func (sp ScopePlan) Decide(ctx context.Context, st Store, inc *Incident) error {
	c := newCohort(inc.Dims)
	cands := c.candidates()
	if len(cands) == 0 && len(inc.Dims) > 0 {
		inc.Scope, inc.RuledOut = ScopeUnknown, nil
		inc.Evidence = []Evidence{{Scope: ScopeUnknown, Source: "cohort",
			Text: "affected cohort " + Cause{Element: inc.Dims}.String() + ": no dimension a verdict is known for"}}
		return nil
	}
	if len(cands) == 0 {
		inc.Scope = ScopeSystem
		inc.Evidence = []Evidence{{Scope: ScopeSystem, Source: "cohort",
			Text: fmt.Sprintf("every viewer at once: %.0f of %.0f views affected, no stream, node, CDN or client cohort stands out", inc.Affected, inc.Views)}}
		inc.RuledOut = nil
		return nil
	}
	f, err := sp.gather(ctx, st, inc, c, cands)
	if err != nil {
		return err
	}
	checked := map[string]finding{}
	for _, s := range cands {
		checked[s] = checks[s](sp, c, f)
	}
	verdict := fallback(cands, checked)
	for _, s := range cands {
		if len(checked[s].support) > 0 {
			verdict = s
			break
		}
	}
	why := whyOver[verdict]
	if verdict == ScopePush && sourceFirst(checked[ScopePush], checked[ScopeSource]) {
		verdict = ScopeSource
		why = fmt.Sprintf("the source failed first, at %s, and the uplink itself held up",
			time.UnixMilli(checked[ScopeSource].first).UTC().Format("15:04:05.000"))
	}
	fv := checked[verdict]
	inc.Scope = verdict
	inc.Evidence = append([]Evidence{c.cohortFact(verdict, inc)}, fv.support...)
	inc.Evidence = append(inc.Evidence, fv.ambiguous...)
	if len(fv.support) == 0 {
		inc.Evidence = append(inc.Evidence, Evidence{Scope: verdict, Source: "cohort",
			Text: "no server log shows the failure; the verdict rests on the cohort alone"})
		inc.Confidence *= sp.UnsupportedFactor
	}
	if len(fv.ambiguous) > 0 {
		inc.Confidence *= sp.AmbiguousFactor
	}
	inc.RuledOut = nil
	for _, s := range cands {
		if s == verdict {
			continue
		}
		inc.RuledOut = append(inc.RuledOut, ruleOut(s, verdict, why, checked[s])...)
	}
	for _, s := range c.outside() {
		inc.RuledOut = append(inc.RuledOut, Evidence{Scope: s, Source: "cohort", Text: c.outsideText(s, f)})
	}
	if verdict == ScopeEdge && fv.node != "" && inc.Dims != nil {
		// The node stands for its CDN region's viewers: name it, with its
		// CDN and region (addContext).
		inc.Dims["node_id"] = fv.node
		c.node = fv.node
	}
	c.addContext(inc, f)
	return nil
}

// fallback is the verdict when no server log supports any candidate: the
// first one no log ruled out, else the first. A rollout is a client group
// shown to be new, never a verdict without that support.
func fallback(cands []string, checked map[string]finding) string {
	rest := slices.DeleteFunc(slices.Clone(cands), func(s string) bool { return s == ScopeRollout })
	if len(rest) == 0 {
		return cands[0]
	}
	for _, s := range rest {
		if len(checked[s].clean) == 0 {
			return s
		}
	}
	return rest[0]
}

// whyOver says why a verdict explains a rival that a server log also
// supports.
var whyOver = map[string]string{
	ScopeTranscode: "only that rendition suffers",
	ScopeEdge:      "the cohort is an edge's viewers",
	ScopePush:      "the uplink failed first, and upstream of it",
	ScopeSource:    "the source failed upstream of it",
	ScopeRollout:   "the version is new",
	ScopeClient:    "the cohort is a client group",
}

// sourceFirst says a push-side failure is the source's doing: a publisher
// refused or cut because the origin lost its stream logs push_stop errors
// too, but after the origin or relay failed, and with its uplink stats
// intact. source.first comes from the origin's and relay's own logs only:
// the edges' back-to-source errors follow a publisher's stop as closely as
// a source's failure, so their order against the push side tells nothing.
func sourceFirst(push, source finding) bool {
	return len(source.support) > 0 && !push.sustained && source.first > 0 && (push.first == 0 || source.first < push.first)
}

// ruleOut says why a candidate lost: its component was healthy, or (when
// it too had support) why the verdict explains it.
func ruleOut(s, verdict, why string, fs finding) []Evidence {
	if len(fs.support) > 0 {
		return []Evidence{{Scope: s, Source: fs.support[0].Source,
			Text: fmt.Sprintf("%s (but the %s failure explains it: %s)", fs.support[0].Text, verdict, why)}}
	}
	if len(fs.clean) > 0 {
		return fs.clean
	}
	return []Evidence{{Scope: s, Source: "cohort", Text: "no server log shows a failure there"}}
}

// checks are each candidate scope's check.
var checks = map[string]func(ScopePlan, *cohort, *facts) finding{
	ScopePush:      ScopePlan.checkPush,
	ScopeSource:    ScopePlan.checkSource,
	ScopeTranscode: ScopePlan.checkTranscode,
	ScopeEdge:      ScopePlan.checkEdge,
	ScopeRollout:   ScopePlan.checkRollout,
	ScopeClient:    ScopePlan.checkClient,
}

// cohort is an incident's dims sorted by what they point at.
type cohort struct {
	streams   []string // stream_id values (of the rooms, when it names rooms)
	rooms     []string // room_id values, when it names no stream
	rendition string   // a transcoded rendition ("" or "source": none)
	node      string
	cdn       string
	region    string
	client    map[string]string
}

func newCohort(dims map[string]string) *cohort {
	c := &cohort{client: map[string]string{}}
	c.streams = splitList(dims["stream_id"])
	if len(c.streams) == 0 {
		c.rooms = splitList(dims["room_id"]) // their streams are read from the logs (gather)
	}
	if r := dims["rendition"]; r != "source" {
		c.rendition = r
	}
	c.node, c.cdn, c.region = dims["node_id"], dims["cdn"], dims["region"]
	for _, k := range clientDims {
		if v := dims[k]; v != "" {
			c.client[k] = v
		}
	}
	return c
}

// splitList reads a dimension value that may list several values
// ("live/room1,live/room2", as a labels file writes several rooms).
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// streamOf says a stream is one of the cohort's (any, when it names none).
func (c *cohort) streamOf(s string) bool {
	if len(c.streams) == 0 {
		return true
	}
	for _, x := range c.streams {
		if x == s {
			return true
		}
	}
	return false
}

func (c *cohort) hasEdge() bool   { return c.node != "" || c.cdn != "" || c.region != "" }
func (c *cohort) hasStream() bool { return len(c.streams) > 0 || len(c.rooms) > 0 }

// candidates are the scopes the cohort fits, most specific first: a
// rendition before its stream, an edge before the streams it serves, the
// push side before the source (a collapsed uplink starves the origin
// too), a new version before the client.
func (c *cohort) candidates() []string {
	var out []string
	if c.rendition != "" {
		out = append(out, ScopeTranscode)
	}
	if c.hasEdge() && !(c.region != "" && c.node == "" && c.cdn == "" && len(c.client) > 0) {
		out = append(out, ScopeEdge)
	}
	if c.hasStream() {
		out = append(out, ScopePush, ScopeSource)
	}
	if c.client["app_version"] != "" {
		out = append(out, ScopeRollout)
	}
	if len(c.client) > 0 || (c.region != "" && c.node == "" && c.cdn == "") {
		out = append(out, ScopeClient)
	}
	return out
}

// outside are the scopes the cohort does not fit at all, for which the
// cohort itself is the ruling-out fact.
func (c *cohort) outside() []string {
	var out []string
	in := map[string]bool{}
	for _, s := range c.candidates() {
		in[s] = true
	}
	for _, s := range []string{ScopePush, ScopeSource, ScopeTranscode, ScopeEdge, ScopeClient} {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}

func (c *cohort) outsideText(scope string, f *facts) string {
	in := f.cohortSet(func(p playRow) string { return p.Stream })
	nodes := f.cohortSet(func(p playRow) string { return p.Node })
	cdns := f.cohortSet(func(p playRow) string { return p.CDN })
	switch scope {
	case ScopePush, ScopeSource:
		return fmt.Sprintf("the cohort is not a stream's audience: it watched %s; %s", strings.Join(keys(in), ", "),
			f.peersText("other viewers of the same streams", func(p playRow) bool { return in[p.Stream] }))
	case ScopeTranscode:
		return "the cohort is not one transcoded rendition of a stream"
	case ScopeEdge:
		return fmt.Sprintf("the cohort is not one edge: its plays were on %d nodes of %d CDNs; %s", len(nodes), len(cdns),
			f.peersText("other viewers on those nodes", func(p playRow) bool { return nodes[p.Node] }))
	default:
		isps, versions := map[string]bool{}, map[string]bool{}
		for _, p := range f.plays {
			if p.InCohort == 1 {
				for _, v := range p.ISPs {
					isps[v] = true
				}
				for _, v := range p.Versions {
					versions[v] = true
				}
			}
		}
		return fmt.Sprintf("the cohort is not a client group: its viewers used %d ISPs and %d app versions", len(isps), len(versions))
	}
}

// cohortFact states the cohort as the first piece of evidence.
func (c *cohort) cohortFact(scope string, inc *Incident) Evidence {
	text := "affected cohort " + Cause{Element: inc.Dims}.String()
	if inc.Views > 0 {
		text += fmt.Sprintf(": %.0f of %.0f views (%s %.1f%% against %.1f%% expected)",
			inc.Affected, inc.Views, inc.KPI, 100*inc.Value, 100*inc.Expected)
	}
	return Evidence{Scope: scope, Source: "cohort", Text: text}
}

// addContext adds an edge node's CDN and region, and a stream's room (or
// a room's stream), when the cohort names only one of them.
func (c *cohort) addContext(inc *Incident, f *facts) {
	if inc.Dims == nil {
		return
	}
	if c.node != "" {
		for _, e := range f.edge {
			if e.Node == c.node && e.CDN != "" {
				setIfEmpty(inc.Dims, "cdn", e.CDN)
				setIfEmpty(inc.Dims, "region", e.Region)
				break
			}
		}
	}
	if len(c.streams) == 1 {
		for _, s := range f.streams {
			if s.Stream == c.streams[0] && s.Room != "" {
				setIfEmpty(inc.Dims, "room_id", s.Room)
				setIfEmpty(inc.Dims, "stream_id", s.Stream)
				break
			}
		}
	}
}

func setIfEmpty(m map[string]string, k, v string) {
	if m[k] == "" && v != "" {
		m[k] = v
	}
}

// decodeRows reads JSONEachRow output into T values.
func decodeRows[T any](b []byte, what string) ([]T, error) {
	var out []T
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var row T
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("decode %s rows: %w", what, err)
		}
		out = append(out, row)
	}
	return out, nil
}

// cohortCond is the SQL condition of the cohort's dims (known dimension
// columns only; a value list matches any of its values).
func cohortCond(dims map[string]string) string {
	known := append(append(append([]string{"rendition"}, streamDims...), edgeDims...), clientDims...)
	var conds []string
	for _, k := range known {
		if vals := splitList(dims[k]); len(vals) > 0 {
			conds = append(conds, inList(k, vals))
		}
	}
	if len(conds) == 0 {
		return "1"
	}
	sort.Strings(conds)
	return strings.Join(conds, " AND ")
}

// inList is the SQL condition "column is one of vals", quoted.
func inList(col string, vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = store.QuoteString(v)
	}
	return fmt.Sprintf("%s IN (%s)", store.QuoteIdent(col), strings.Join(q, ", "))
}

func pct(n, d float64) float64 {
	if d <= 0 {
		return 0
	}
	return 100 * n / d
}

func share(n, d float64) float64 {
	if d <= 0 {
		return 0
	}
	return n / d
}
