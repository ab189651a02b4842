package trace

import (
	"context"
	"time"
)

// Plan is how trace search goes about a lookup: which source finds the page
// of sessions and which form each fetch of round 2 takes. Every choice is a
// threshold here, so the strategy is one visible value; DefaultPlan is what
// the API uses, and tests narrow it to reach each branch with little data.
//
// The page, by what is looked up:
//   - device or user: the trace_sessions rows of the id, grouped in Go up to
//     IndexRows rows, else grouped by the store;
//   - session: its client events straight from the events table up to
//     DirectRows rows (the page is cut in Go and they are round 2's client
//     rows), else the sessions query over the events;
//   - room or stream: the sessions query over the events (bloom filters).
//
// Round 2's fetches:
//   - client events: one range of the sort key per trace key up to
//     MaxSpanTerms keys, else the keys over the whole window;
//   - stream events: trace_context by (app, stream, 10-min bucket) up to
//     MaxStreamBuckets buckets, else the streams over the spans' hull;
//   - edge events: trace_context by session over the window ± Margin.
type Plan struct {
	// DirectRows bounds the rows a session lookup fetches before it knows
	// its page; a busier session has the store find the page first.
	DirectRows int
	// IndexRows bounds the trace_sessions rows a device or user lookup
	// groups in Go (a session has a row per insert and day until parts
	// merge); a busier id (a TV left playing for weeks, a shared test
	// account) has the store group them and find the page.
	IndexRows int
	// MaxSpanTerms bounds the per-key span terms of the client query. Each
	// costs ~1–2 ms of planning: past it, a read of the keys over the
	// window is cheaper.
	MaxSpanTerms int
	// MaxStreamBuckets bounds the (app_id, trace_key, bucket) set of the
	// stream query: 144 buckets are a day of one stream.
	MaxStreamBuckets int
	// Margin widens a session's span when joining stream-level events:
	// stream stats are periodic, and the one just before a play began often
	// explains it.
	Margin time.Duration
	// MaxRows bounds the rows one answer carries per kind of row; past it
	// the answer says truncated and the caller narrows the window or page.
	MaxRows int
	// MaxRejected bounds the rejected events listed (the latest ones).
	MaxRejected int
	// Diagnosis judges each play session (diagnosis.go).
	Diagnosis DiagnosisPlan
}

// DefaultPlan is the plan of the API.
var DefaultPlan = Plan{
	DirectRows:       5000,
	IndexRows:        5000,
	MaxSpanTerms:     32,
	MaxStreamBuckets: 2048,
	Margin:           30 * time.Second,
	MaxRows:          100_000,
	MaxRejected:      1000,
	Diagnosis:        DefaultDiagnosisPlan,
}

// Search runs a lookup on st.
func (p Plan) Search(ctx context.Context, st Store, req *Request) (*Response, error) {
	return (&searcher{Plan: p, store: st}).trace(ctx, req)
}

// searcher is one lookup's plan and store.
type searcher struct {
	Plan
	store Store
}
