package processor

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/internal/metriclabel"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// fuzzNow is the clock of the fetchers below: seeds carry fixed times.
var fuzzNow = time.UnixMilli(1795262400000)

// testFetcher is the fetcher Run builds, without a reader: add and cut are
// the real ones, with real metrics on reg.
func testFetcher(reg prometheus.Registerer) *fetcher {
	m := NewMetrics(reg)
	p := New(Config{}, nil, nil, m, log.NewNopLogger())
	w := &fetcher{
		p:      p,
		logger: p.logger,
		// A window wide enough for the fixed times of seeds whatever the date.
		cleaner:  schemas.Cleaner{MaxPast: 100 * 365 * 24 * time.Hour, MaxFuture: 100 * 365 * 24 * time.Hour},
		rows:     NewRowBuilder(),
		sessions: NewSessionIndex(1000),
		rej:      newRejectedBuilder(),
		parts:    map[topicPartition]*partState{},
		perTopic: map[string]int{},
		stored:   map[topicPartition]int64{},
		seen:     newDedup(p.cfg.DedupWindow, p.cfg.DedupMaxIDs, m.dedup, p.logger),
		topics:   map[string]*topicMetrics{},
	}
	w.rej.now = func() time.Time { return fuzzNow }
	for _, t := range p.Topics() {
		w.topics[t] = m.forTopic(t)
	}
	return w
}

// seedEvent is a valid event of lt with every catalog field set.
func seedEvent(lt *schemas.LogType, n int) []byte {
	ts := strconv.FormatInt(fuzzNow.UnixMilli(), 10)
	b := []byte(`{"event_id":"ev-` + strconv.Itoa(n) + `","app_id":"app","log_type":"` + lt.Name + `","ts":` + ts)
	for _, f := range lt.Columns() {
		switch f.Name {
		case "event_id", "log_type", "ts", "app_id", "source", "first_frame_blocked":
			continue
		}
		b = append(b, `,"`+f.Name+`":`...)
		switch f.Kind {
		case schemas.KindString, schemas.KindDim:
			v := f.Name + "-1"
			if len(f.Enum) > 0 {
				v = f.Enum[0]
			}
			b = flatjson.AppendString(b, v)
		case schemas.KindInt:
			b = strconv.AppendInt(b, int64(max(f.Min, min(f.Max, 1))), 10)
		case schemas.KindFloat:
			b = strconv.AppendFloat(b, max(f.Min, min(f.Max, 0.5)), 'g', -1, 64)
		case schemas.KindBool:
			b = append(b, "true"...)
		case schemas.KindTime:
			b = append(b, ts...)
		}
	}
	return append(b, '}')
}

// poisonEvent is issue 16's poison pill: valid but for an unknown field whose
// name is not UTF-8.
func poisonEvent(id string) []byte {
	return []byte(`{"event_id":"` + id + `","app_id":"app","log_type":"heartbeat","ts":` +
		strconv.FormatInt(fuzzNow.UnixMilli(), 10) + `,"device_id":"d1","session_id":"s1","` + "\xff\xfe" + `":1}`)
}

func heartbeatMsg(v []byte, off int64) kafka.Message {
	return kafka.Message{Topic: schemas.TopicOf("heartbeat"), Partition: 0, Offset: off, Value: v}
}

// dlqCodes returns the codes of the dead-letter records a fetcher holds.
func dlqCodes(t *testing.T, w *fetcher) []schemas.RejectedRecord {
	t.Helper()
	var out []schemas.RejectedRecord
	for _, m := range w.dlq {
		var r schemas.RejectedRecord
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatalf("dead-letter record %q: %v", m.Value, err)
		}
		out = append(out, r)
	}
	return out
}

// The poison pill is stored, and its unknown field counted under a cleaned
// name; on affb068 add panicked in the unknown-field counter.
func TestPoisonFieldNameCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := testFetcher(reg)
	w.add(heartbeatMsg(poisonEvent("p1"), 0))
	w.add(heartbeatMsg(seedEvent(schemas.Lookup("heartbeat"), 2), 1))
	if w.nrows != 2 || len(w.dlq) != 0 {
		t.Fatalf("rows %d, dead-lettered %d; want 2 rows, none dead-lettered", w.nrows, len(w.dlq))
	}
	if v := testutil.ToFloat64(w.p.metrics.UnknownFields.WithLabelValues("heartbeat", "\uFFFD")); v != 1 {
		t.Errorf("unknown field counted %v times under %q, want 1", v, "\uFFFD")
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
	b := w.cut()
	defer b.events.Release()
	if b.events.NumRows() != 2 {
		t.Fatalf("record has %d rows", b.events.NumRows())
	}
}

// A name longer than a label may be is cut, and the names kept are bounded.
func TestUnknownFieldNamesBounded(t *testing.T) {
	w := testFetcher(prometheus.NewRegistry())
	long := strings.Repeat("n", 10_000)
	ev := `{"app_id":"app","log_type":"heartbeat","ts":` + strconv.FormatInt(fuzzNow.UnixMilli(), 10) + `,"device_id":"d","session_id":"s"`
	for i := 0; i < 2*maxUnknownFieldNames; i++ {
		w.add(heartbeatMsg([]byte(ev+`,"event_id":"e`+strconv.Itoa(i)+`","`+long+strconv.Itoa(i)+`":1}`), int64(i)))
	}
	m := w.p.metrics
	if len(m.unknowns) > maxUnknownFieldNames {
		t.Errorf("%d unknown field names kept, at most %d", len(m.unknowns), maxUnknownFieldNames)
	}
	for k := range m.unknowns {
		if len(k) > len("heartbeat\x00")+metriclabel.MaxLen+len(metriclabel.Mark) {
			t.Fatalf("unknown field key of %d bytes kept", len(k))
		}
	}
	if w.nrows != 2*maxUnknownFieldNames {
		t.Errorf("%d rows, want %d", w.nrows, 2*maxUnknownFieldNames)
	}
}

// A panic while handling one message dead-letters it with internal_error and
// the panic text, counts it, and the next message is handled as usual.
func TestPanicDeadLettersMessage(t *testing.T) {
	w := testFetcher(prometheus.NewRegistry())
	seen := w.seen
	w.seen = nil // dedup is reached after cleaning: add panics on a nil map holder
	w.addGuarded(heartbeatMsg(seedEvent(schemas.Lookup("heartbeat"), 1), 0))
	w.seen = seen
	w.addGuarded(heartbeatMsg(seedEvent(schemas.Lookup("heartbeat"), 2), 1))

	recs := dlqCodes(t, w)
	if len(recs) != 1 {
		t.Fatalf("%d dead-letter records, want 1", len(recs))
	}
	r := recs[0]
	if r.Code != schemas.ReasonInternalError || !strings.Contains(r.Reason, "nil pointer") ||
		r.DeviceID != "device_id-1" || r.EventID != schemas.TopicOf("heartbeat")+":0:0" || r.Stage != "processor" {
		t.Errorf("dead-letter record %+v", r)
	}
	if v := testutil.ToFloat64(w.p.metrics.Panics.WithLabelValues(schemas.TopicOf("heartbeat"))); v != 1 {
		t.Errorf("panics counted %v", v)
	}
	if v := testutil.ToFloat64(w.p.metrics.Rejected.WithLabelValues(schemas.TopicOf("heartbeat"), schemas.ReasonInternalError)); v != 1 {
		t.Errorf("internal_error rejects counted %v", v)
	}
	if w.nrows != 1 {
		t.Fatalf("%d rows after the panic, want 1", w.nrows)
	}
	b := w.cut()
	defer b.events.Release()
	if len(b.commits) != 1 || b.commits[0].Offset != 1 {
		t.Errorf("commits %v, want offset 1 (the dead-lettered message committed with the batch)", b.commits)
	}
	if got := b.events.Column(schemas.ColEventID).(*array.String).Value(0); got != "ev-2" {
		t.Errorf("stored %s, want ev-2", got)
	}
}

// A half-appended row cannot be dead-lettered: the guard refuses to go on.
func TestPanicWithHalfRowIsFatal(t *testing.T) {
	w := testFetcher(prometheus.NewRegistry())
	w.rows.builder[0].AppendNull()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "holds 1 values, want 0") {
			t.Fatalf("recovered %v, want the inconsistency", r)
		}
	}()
	w.poisoned(heartbeatMsg([]byte(`{}`), 0), "boom")
}

func TestRejectedAppendBounds(t *testing.T) {
	rb := newRejectedBuilder()
	rb.now = func() time.Time { return fuzzNow }
	huge := strings.Repeat("\xff", 1<<20)
	rec, _ := json.Marshal(schemas.RejectedRecord{ReceivedAt: 1 << 60, Reason: huge, Raw: huge, DeviceID: huge, EventIndex: 1 << 40})
	if !rb.Append(rec, 0, 1) {
		t.Fatal("a valid record was taken as invalid")
	}
	if rb.Append([]byte("not json \xff"+huge), 0, 2) {
		t.Fatal("invalid JSON taken as valid")
	}
	r := rb.Build()
	defer r.Release()
	checkRejectedRecord(t, r)
	if ts := r.Column(0).(*array.Timestamp).Value(0); int64(ts) != fuzzNow.UnixMilli() {
		t.Errorf("received_at %d kept, want now", ts)
	}
	if ei := r.Column(11).(*array.Int32).Value(0); ei != -1 {
		t.Errorf("event_index %d, want -1", ei)
	}
}

// checkRejectedRecord: every string valid UTF-8 and bounded, received_at in
// the window.
func checkRejectedRecord(t *testing.T, r arrow.RecordBatch) {
	t.Helper()
	for c := 1; c <= 13; c++ {
		col, ok := r.Column(c).(*array.String)
		if !ok {
			continue
		}
		limit := maxRejectedString
		switch rejectedSchema.Field(c).Name {
		case "raw":
			limit = maxRejectedRaw
		case "reason":
			limit = maxRejectedReason
		}
		limit += len("…[truncated]")
		for i := 0; i < col.Len(); i++ {
			if s := col.Value(i); !utf8.ValidString(s) || len(s) > limit {
				t.Fatalf("%s[%d]: %d bytes (max %d), valid UTF-8 %v", rejectedSchema.Field(c).Name, i, len(s), limit, utf8.ValidString(s))
			}
		}
	}
	ts := r.Column(0).(*array.Timestamp)
	for i := 0; i < ts.Len(); i++ {
		t0 := time.UnixMilli(int64(ts.Value(i)))
		if t0.Before(fuzzNow.Add(-rejectedMaxAge)) || t0.After(fuzzNow.Add(rejectedMaxAhead)) {
			t.Fatalf("received_at %v out of the window", t0)
		}
	}
}

// FuzzProcessMessage feeds any bytes as a Kafka message through the real
// message-to-row path: parse, clean, unknown-field metrics (real, on a
// registry), dedup, RowBuilder, SessionIndex, dead-lettering, then the Arrow
// records of the batch. It must never panic; every dead-letter record it
// writes must read back as a valid rejected row.
func FuzzProcessMessage(f *testing.F) {
	for i := range schemas.Catalog {
		f.Add(uint8(i), seedEvent(&schemas.Catalog[i], i))
	}
	hb := uint8(0)
	for i := range schemas.Catalog {
		if schemas.Catalog[i].Name == "heartbeat" {
			hb = uint8(i)
		}
	}
	for _, s := range []string{
		string(poisonEvent("p")),
		`{"log_type":"heartbeat","ts":1795262400000,"device_id":"d` + "\xff" + `","session_id":"s"}`,
		`{"log_type":"heartbeat","ts":"2026-11-18T12:00:00Z","device_id":"\u00e9\ud800","session_id":"s","buffer_ms":1e308}`,
		`{"log_type":"heartbeat","ts":1795262400000,"device_id":"d","session_id":"s","buffer_ms":9223372036854775808}`,
		`{"log_type":"heartbeat","ts":1795262400000,"device_id":"d","session_id":"s","x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
		`{"log_type":"heartbeat","ts":1,"log_type":"stall"}`,
		`{"log_type":"he` + "\x00" + `artbeat"}`,
		`[1,2]`, `"x"`, `{"a":`, ``, `{}`,
	} {
		f.Add(hb, []byte(s))
	}
	rec, _ := json.Marshal(schemas.RejectedRecord{ReceivedAt: fuzzNow.UnixMilli(), Code: "invalid_json", Raw: "{", EventIndex: 3})
	f.Add(uint8(255), rec)

	reg := prometheus.NewRegistry()
	w := testFetcher(reg)
	topics := w.p.Topics()
	var off int64
	f.Fuzz(func(t *testing.T, topic uint8, value []byte) {
		off++
		msg := kafka.Message{Topic: topics[int(topic)%len(topics)], Partition: int(topic) % 3, Offset: off, Value: value}
		w.add(msg)
		if err := w.consistent(); err != nil {
			t.Fatal(err)
		}
		dlq := w.dlq
		b := w.cut()
		if b == nil {
			t.Fatal("no batch after a message")
		}
		for _, r := range []arrow.RecordBatch{b.events, b.sessions, b.rejected} {
			if r != nil {
				r.Release()
			}
		}
		// What the processor dead-letters must be a valid record.
		for _, m := range dlq {
			if !w.rej.Append(m.Value, 0, 0) {
				t.Fatalf("dead-letter record %q does not read back", m.Value)
			}
		}
		if r := w.rej.Build(); r != nil {
			checkRejectedRecord(t, r)
			r.Release()
		}
		if off%512 == 0 {
			if _, err := reg.Gather(); err != nil {
				t.Fatalf("metrics do not gather: %v", err)
			}
		}
	})
}

// FuzzRejectedAppend: anything on the dead-letter topic becomes one bounded,
// valid row of the rejected table.
func FuzzRejectedAppend(f *testing.F) {
	for _, r := range []schemas.RejectedRecord{
		{ReceivedAt: fuzzNow.UnixMilli(), AppID: "app", LogType: "heartbeat", DeviceID: "d1", Stage: "collector",
			Code: "out_of_range", Field: "buffer_ms", Reason: "buffer_ms -4 ms is out of range [0, 3600000]", Raw: `{"buffer_ms":-4}`, EventIndex: 2, RequestID: "r1", EventID: "abc"},
		{ReceivedAt: fuzzNow.UnixMilli(), Stage: "processor", Code: "invalid_json", Reason: "invalid JSON at byte 3", Raw: "{\"a", EventIndex: -1, EventID: "lastmile.heartbeat:0:7"},
		{ReceivedAt: -1, EventIndex: 1 << 40, Raw: "\xff\xfe"},
	} {
		v, _ := json.Marshal(r)
		f.Add(v)
	}
	f.Add([]byte(`{"received_at":1e300}`))
	f.Add([]byte(`{"raw":"\ud800","event_index":-2147483649}`))
	f.Add([]byte("\xff\xfe not json"))
	f.Add([]byte(`null`))
	rb := newRejectedBuilder()
	rb.now = func() time.Time { return fuzzNow }
	f.Fuzz(func(t *testing.T, value []byte) {
		ok := rb.Append(value, 1, 2)
		if ok != json.Valid(value) && ok {
			t.Fatalf("invalid JSON %q accepted", value)
		}
		if err := rb.consistent(); err != nil {
			t.Fatal(err)
		}
		r := rb.Build()
		defer r.Release()
		if r.NumRows() != 1 {
			t.Fatalf("%d rows for one record", r.NumRows())
		}
		checkRejectedRecord(t, r)
	})
}
