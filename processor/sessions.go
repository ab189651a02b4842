package processor

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/cespare/xxhash/v2"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// SessionsSchema is the Arrow schema of the rows SessionIndex writes to
// trace_sessions (its day column is filled by the table).
var SessionsSchema = arrow.NewSchema([]arrow.Field{
	{Name: "lookup", Type: arrow.BinaryTypes.String},
	{Name: "lookup_id", Type: arrow.BinaryTypes.String},
	{Name: "app_id", Type: arrow.BinaryTypes.String},
	{Name: "session_id", Type: arrow.BinaryTypes.String},
	{Name: schemas.ColTraceKey, Type: arrow.BinaryTypes.String},
	{Name: "stream_id", Type: arrow.BinaryTypes.String},
	{Name: "rendition", Type: arrow.BinaryTypes.String},
	{Name: "first_ts", Type: schemas.ArrowType(schemas.KindTime)},
	{Name: "last_ts", Type: schemas.ArrowType(schemas.KindTime)},
}, nil)

// SessionIndex turns play events into the rows of trace_sessions: a
// session's rows (one by device, one by user) when it is first seen, when an
// event comes before the first_ts written, when one comes more than
// schemas.TraceSessionQuantum after the last_ts written, and when an event
// brings a user_id the session did not have. So the index costs a few rows
// per session, not one per event, and still bounds every event: first_ts is
// exact, and no event is more than the quantum past last_ts. A session's
// user row spans all of it, also the events before the user_id came (a
// player that logs in while playing): a lookup by user shows the session
// from its start.
//
// It remembers the spans it wrote in two generations of at most capacity/2
// sessions each; a session it has forgotten gets a row again, which the
// table's min/max fold away.
type SessionIndex struct {
	quantum   int64 // ms
	capacity  int
	cur, prev map[uint64]sessionSpan
	h         xxhash.Digest
	b         *array.RecordBuilder
	str       [7]*array.StringBuilder
	ts        [2]*array.TimestampBuilder
	rows      int
}

type sessionSpan struct {
	first, last int64
	user        string // the user_id the rows were written for, "" for none
}

// NewSessionIndex returns an index builder remembering up to capacity
// sessions.
func NewSessionIndex(capacity int) *SessionIndex {
	b := array.NewRecordBuilder(memory.DefaultAllocator, SessionsSchema)
	x := &SessionIndex{quantum: schemas.TraceSessionQuantum.Milliseconds(), capacity: max(capacity, 2),
		cur: map[uint64]sessionSpan{}, prev: map[uint64]sessionSpan{}, b: b}
	for i := range x.str {
		x.str[i] = b.Field(i).(*array.StringBuilder)
	}
	x.ts[0] = b.Field(7).(*array.TimestampBuilder)
	x.ts[1] = b.Field(8).(*array.TimestampBuilder)
	return x
}

// Observe takes one cleaned event; only play events with a session_id
// count (the log types whose trace key is the device).
func (x *SessionIndex) Observe(ev *schemas.Event) {
	if ev.Type.Source != "client" || ev.Type.TraceKey != "device_id" {
		return
	}
	v := ev.Vals
	session := v[schemas.ColSessionID].S
	if len(session) == 0 {
		return
	}
	ts := v[schemas.ColTs].I
	day := ts / int64(24*time.Hour/time.Millisecond)
	key := v[ev.Type.TraceKeyCol()].S
	user := v[schemas.ColUserID].S
	k := x.key(v, key, day)

	sp, ok := x.cur[k]
	if !ok {
		if sp, ok = x.prev[k]; ok {
			x.remember(k, sp)
		}
	}
	newUser := len(user) > 0 && string(user) != sp.user
	if ok && ts >= sp.first && ts <= sp.last+x.quantum && !newUser {
		return
	}
	if !ok {
		sp = sessionSpan{first: ts, last: ts}
		// A session's user_id outlives the day: its rows of the next day are
		// written by user too, though the events after the day change carry no
		// user_id (a player that logged in while playing sends it once).
		if prev, seen := x.lookup(x.key(v, key, day-1)); seen {
			sp.user = prev.user
		}
	}
	sp.first, sp.last = min(sp.first, ts), max(sp.last, ts)
	if newUser {
		sp.user = string(user)
	}
	x.remember(k, sp)
	x.appendRow("device_id", v[schemas.ColDeviceID].S, v, key, &sp)
	if sp.user != "" {
		x.appendRow("user_id", []byte(sp.user), v, key, &sp)
	}
}

// key identifies a session's rows of one (UTC) day.
func (x *SessionIndex) key(v []schemas.Value, key []byte, day int64) uint64 {
	x.h.Reset()
	for _, s := range [...][]byte{v[schemas.ColAppID].S, v[schemas.ColSessionID].S, key, v[schemas.ColDeviceID].S,
		v[schemas.ColStreamID].S, v[schemas.ColRendition].S} {
		x.h.Write(s)
		x.h.Write([]byte{0})
	}
	var d [8]byte
	for i := range d {
		d[i] = byte(day >> (8 * i))
	}
	x.h.Write(d[:])
	return x.h.Sum64()
}

// lookup finds a remembered span without refreshing it.
func (x *SessionIndex) lookup(k uint64) (sessionSpan, bool) {
	if sp, ok := x.cur[k]; ok {
		return sp, true
	}
	sp, ok := x.prev[k]
	return sp, ok
}

func (x *SessionIndex) appendRow(lookup string, id []byte, v []schemas.Value, key []byte, sp *sessionSpan) {
	if len(id) == 0 {
		return
	}
	x.str[0].Append(lookup)
	x.str[1].BinaryBuilder.Append(id)
	x.str[2].BinaryBuilder.Append(v[schemas.ColAppID].S)
	x.str[3].BinaryBuilder.Append(v[schemas.ColSessionID].S)
	x.str[4].BinaryBuilder.Append(key)
	x.str[5].BinaryBuilder.Append(v[schemas.ColStreamID].S)
	x.str[6].BinaryBuilder.Append(v[schemas.ColRendition].S)
	x.ts[0].Append(arrow.Timestamp(sp.first))
	x.ts[1].Append(arrow.Timestamp(sp.last))
	x.rows++
}

func (x *SessionIndex) remember(k uint64, sp sessionSpan) {
	if _, ok := x.cur[k]; !ok && len(x.cur) >= x.capacity/2 {
		x.prev, x.cur = x.cur, make(map[uint64]sessionSpan, x.capacity/2)
	}
	x.cur[k] = sp
}

// consistent checks that every column holds the same rows.
func (x *SessionIndex) consistent() error {
	for i := 0; i < x.b.Schema().NumFields(); i++ {
		if n := x.b.Field(i).Len(); n != x.rows {
			return fmt.Errorf("trace_sessions column %s holds %d values, want %d", SessionsSchema.Field(i).Name, n, x.rows)
		}
	}
	return nil
}

// Rows is the number of rows since the last Build.
func (x *SessionIndex) Rows() int { return x.rows }

// Build returns the rows since the last Build, nil when there are none.
func (x *SessionIndex) Build() arrow.RecordBatch {
	if x.rows == 0 {
		return nil
	}
	x.rows = 0
	return x.b.NewRecordBatch()
}
