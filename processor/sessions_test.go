package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// TestSessionIndex: a session gets rows when first seen, when an event comes
// before its first_ts, and when one comes more than the quantum after the
// last_ts written; never for events inside that; and every event lies in
// [min first_ts, max last_ts + quantum] of the rows written.
func TestSessionIndex(t *testing.T) {
	q := schemas.TraceSessionQuantum
	base := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	type ev struct {
		at      time.Duration
		session string
		user    string
		rows    int // rows this event writes
	}
	for _, c := range []struct {
		name     string
		capacity int
		events   []ev
	}{
		{"one session, heartbeats within the quantum", 100, []ev{
			{0, "s1", "u1", 2}, {10 * time.Second, "s1", "u1", 0}, {q, "s1", "u1", 0}, {q + time.Second, "s1", "u1", 2},
			{q + 2*time.Second, "s1", "u1", 0}, {2*q + time.Second, "s1", "u1", 0}, {2*q + 2*time.Second, "s1", "u1", 2},
		}},
		{"an event before the first", 100, []ev{
			{time.Minute, "s1", "u1", 2}, {30 * time.Second, "s1", "u1", 2}, {45 * time.Second, "s1", "u1", 0},
		}},
		{"no user: rows by device only", 100, []ev{{0, "s1", "", 1}, {time.Second, "s1", "", 0}}},
		// A player that logs in while playing: the user's row covers the
		// session from its start, and goes on after events without user_id.
		{"the user_id comes later", 100, []ev{
			{0, "s1", "", 1}, {10 * time.Second, "s1", "u1", 2}, {20 * time.Second, "s1", "", 0}, {q + 11*time.Second, "s1", "", 2},
			{q + 12*time.Second, "s1", "u1", 0},
		}},
		{"two sessions", 100, []ev{{0, "s1", "u1", 2}, {0, "s2", "u1", 2}, {time.Second, "s1", "u1", 0}, {time.Second, "s2", "u1", 0}}},
		{"a new day is a new row", 100, []ev{{0, "s1", "u1", 2}, {14 * time.Hour, "s1", "u1", 2}, {14*time.Hour + time.Second, "s1", "u1", 0}}},
		// The user_id came once before midnight (UTC): the session's rows of
		// the next day are by user too.
		{"the user goes on into the next day", 100, []ev{
			{13*time.Hour + 50*time.Minute, "s1", "", 1}, {13*time.Hour + 51*time.Minute, "s1", "u1", 2},
			{14*time.Hour + 2*time.Minute, "s1", "", 2}, {14*time.Hour + 3*time.Minute, "s1", "", 0},
		}},
		// capacity 2: one session per generation; s1 is remembered while
		// in the previous one, forgotten after two more sessions.
		{"forgotten sessions are written again", 2, []ev{
			{0, "s1", "u1", 2}, {0, "s2", "u1", 2}, {time.Second, "s1", "u1", 0}, {0, "s3", "u1", 2}, {0, "s4", "u1", 2},
			{2 * time.Second, "s1", "u1", 2},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := NewSessionIndex(c.capacity)
			var cl schemas.Cleaner
			cl.At = base.Add(15 * time.Hour)
			var e schemas.Event
			lo, hi := map[string]int64{}, map[string]int64{} // per session and lookup: the rows' span
			users := map[string]string{}                     // per session: its user_id, once known
			var all []ev
			for i, v := range c.events {
				js := fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"app_id":"a","device_id":"d1","session_id":%q,"user_id":%q,"stream_id":"live/1","rendition":"720p"}`,
					base.Add(v.at).UnixMilli(), v.session, v.user)
				fs, err := flatjson.ParseObject(nil, []byte(js))
				if err != nil {
					t.Fatal(err)
				}
				if r := cl.Clean(fs, &e); r != nil {
					t.Fatal(r)
				}
				x.Observe(&e)
				if got := x.Rows(); got != v.rows {
					t.Fatalf("event %d (%v): %d rows, want %d", i, v.at, got, v.rows)
				}
				if rec := x.Build(); rec != nil {
					cols := map[string]int{}
					for j, f := range rec.Schema().Fields() {
						cols[f.Name] = j
					}
					str := func(name string, r int) string { return rec.Column(cols[name]).(*array.String).Value(r) }
					for r := 0; r < int(rec.NumRows()); r++ {
						if str("session_id", r) != v.session || str("trace_key", r) != "d1" || str("stream_id", r) != "live/1" || str("rendition", r) != "720p" {
							t.Errorf("row %d: %s %s %s %s", r, str("session_id", r), str("trace_key", r), str("stream_id", r), str("rendition", r))
						}
						if v.user != "" {
							users[v.session] = v.user
						}
						lk := []string{"device_id", "user_id"}[r]
						if str("lookup", r) != lk || str("lookup_id", r) != map[string]string{"device_id": "d1", "user_id": users[v.session]}[lk] {
							t.Errorf("row %d: lookup %s=%s", r, str("lookup", r), str("lookup_id", r))
						}
						first := int64(rec.Column(cols["first_ts"]).(*array.Timestamp).Value(r))
						last := int64(rec.Column(cols["last_ts"]).(*array.Timestamp).Value(r))
						sk := v.session + "/" + lk
						if l, ok := lo[sk]; !ok || first < l {
							lo[sk] = first
						}
						hi[sk] = max(hi[sk], last)
					}
					rec.Release()
				}
				if v.session != "" {
					all = append(all, v)
				}
			}
			// Every event is inside its session's span by device, and by
			// user when the session has a user.
			for _, v := range all {
				ts := base.Add(v.at).UnixMilli()
				for _, lk := range []string{"device_id", "user_id"} {
					sk := v.session + "/" + lk
					if lk == "user_id" && users[v.session] == "" {
						continue
					}
					if ts < lo[sk] || ts > hi[sk]+q.Milliseconds() {
						t.Errorf("event at %v of %s outside the index's span by %s [%d, %d+quantum]", v.at, v.session, lk, lo[sk], hi[sk])
					}
				}
			}
		})
	}
}

// BenchmarkSessionIndex: the cost per play event of a session already
// indexed (the common case: heartbeats).
func BenchmarkSessionIndex(b *testing.B) {
	x := NewSessionIndex(DefaultSessionCache)
	var cl schemas.Cleaner
	now := time.Now()
	cl.At = now
	evs := make([]schemas.Event, 1000)
	for i := range evs {
		js := fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"app_id":"a","device_id":"dev-%d","session_id":"sess-%d","user_id":"user-%d","stream_id":"live/room-%d","rendition":"720p"}`,
			now.UnixMilli(), i, i, i, i%50)
		fs, _ := flatjson.ParseObject(nil, []byte(js))
		if r := cl.Clean(fs, &evs[i]); r != nil {
			b.Fatal(r)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.Observe(&evs[i%len(evs)])
		if x.Rows() > 10_000 {
			x.Build().Release()
		}
	}
}
