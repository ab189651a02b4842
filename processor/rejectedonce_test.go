package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/broker"
	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// faultStore fails the next fails inserts into table, calling crash first
// (the test's kill: it cancels the processor's context, so nothing after
// the failure happens).
type faultStore struct {
	Store
	table string
	fails atomic.Int32
	crash func()
}

func (s *faultStore) InsertArrow(ctx context.Context, table string, rec arrow.RecordBatch, token string) error {
	if table == s.table && s.fails.Add(-1) >= 0 {
		s.crash()
		return errors.New("injected insert failure")
	}
	return s.Store.InsertArrow(ctx, table, rec, token)
}

// faultProducer fails the next fails produces; written says whether the
// records reach the topic first (an acknowledgement lost), crash (optional)
// is called after.
type faultProducer struct {
	Producer
	written bool
	fails   atomic.Int32
	crash   func()
}

func (p *faultProducer) Produce(ctx context.Context, msgs []kafka.Message) error {
	if p.fails.Add(-1) < 0 {
		return p.Producer.Produce(ctx, msgs)
	}
	if p.written {
		if err := p.Producer.Produce(ctx, msgs); err != nil {
			return err
		}
	}
	if p.crash != nil {
		p.crash()
	}
	return errors.New("injected dead-letter produce failure")
}

// A processor-made reject (a message that is not JSON, followed by valid
// events of its partition, all in one batch) is stored exactly once
// whichever step of a flush fails: the dead-letter produce before anything
// was written (before the fix, the events were inserted first and a restart
// skipped the message by offset: the reject was lost), after the records
// were written with the acknowledgement lost (retried: two copies on the
// topic), or the events insert after the produce (crash; the replay makes
// the record again: two copies).
func TestProcessorRejectExactlyOnce(t *testing.T) {
	for _, c := range []struct {
		name   string
		setup  func(st *faultStore, pr *faultProducer, crash func())
		crash  bool // the first run ends at the fault; a second one follows
		copies int64
	}{
		{"produce fails, nothing written", func(st *faultStore, pr *faultProducer, crash func()) {
			pr.fails.Store(1)
			pr.crash = crash
		}, true, 1},
		{"produce acknowledgement lost", func(st *faultStore, pr *faultProducer, crash func()) {
			pr.fails.Store(1)
			pr.written = true
		}, false, 2},
		{"events insert fails after the produce", func(st *faultStore, pr *faultProducer, crash func()) {
			st.table = schemas.EventsTable
			st.fails.Store(1)
			st.crash = crash
		}, true, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := brokertest.Start(t, 1, schemas.Topics()...)
			st := sharedStore(t)
			prod, err := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			hb := schemas.TopicOf("heartbeat")
			now := time.Now().UnixMilli()
			// Produced before the processor starts, so one fetch reads
			// them all into one batch.
			msgs := []kafka.Message{{Topic: hb, Key: []byte("k"), Value: []byte(`{"log_type":"heartbeat","app_id":"a","device_id":"bad"`)}}
			for i := 0; i < 5; i++ {
				msgs = append(msgs, kafka.Message{Topic: hb, Key: []byte("k"), Value: []byte(fmt.Sprintf(
					`{"event_id":"ok-%d","app_id":"a","received_at":%d,"sample_rate":1,"log_type":"heartbeat","ts":%d,"device_id":"d","session_id":"s","buffer_ms":1}`, i, now, now))})
			}
			if err := prod.Produce(context.Background(), msgs); err != nil {
				t.Fatal(err)
			}
			group := "g-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			run := func(s Store, p Producer) (*Metrics, context.CancelFunc, chan error) {
				m := NewMetrics(prometheus.NewRegistry())
				proc := New(Config{Brokers: []string{addr}, Group: group, FlushInterval: 200 * time.Millisecond,
					MaxRetryBackoff: 200 * time.Millisecond}, s, p, m, log.NewNopLogger())
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- proc.Run(ctx) }()
				return m, cancel, done
			}
			fst := &faultStore{Store: st}
			fpr := &faultProducer{Producer: prod}
			var cancel1 context.CancelFunc
			c.setup(fst, fpr, func() { cancel1() })
			m1, cancel1, done1 := run(fst, fpr)
			ms := []*Metrics{m1}
			if c.crash {
				select {
				case <-done1:
				case <-time.After(60 * time.Second):
					cancel1()
					t.Fatal("the fault did not end the first run within 60s")
				}
				m2, cancel2, done2 := run(st, prod)
				defer func() { cancel2(); <-done2 }()
				ms = append(ms, m2)
			} else {
				defer func() { cancel1(); <-done1 }()
			}
			waitQuiet(t, addr, group, st)

			dups := 0.0
			for _, m := range ms {
				dups += testutil.ToFloat64(m.Duplicates.WithLabelValues(schemas.RejectedTopic))
			}
			offs, err := broker.Offsets(context.Background(), []string{addr}, group, []string{schemas.RejectedTopic})
			if err != nil {
				t.Fatal(err)
			}
			if got := offs[schemas.RejectedTopic][0].End; got != c.copies {
				t.Errorf("%d dead-letter records produced, want %d", got, c.copies)
			}
			if n := countRows(t, st, "SELECT count() AS n FROM events"); n != 5 {
				t.Errorf("%d events stored, want 5", n)
			}
			if n := countRows(t, st, "SELECT count() AS n FROM rejected"); n != 1 {
				t.Errorf("%d rejected rows, want exactly 1", n)
			}
			if n := countRows(t, st, "SELECT count() AS n FROM rejected WHERE event_id = '"+hb+":0:0' AND stage = 'processor' AND code = 'invalid_json'"); n != 1 {
				t.Errorf("the reject of %s:0:0 stored %d times, want 1", hb, n)
			}
			if dups != float64(c.copies-1) {
				t.Errorf("duplicates dropped on the rejected topic: %v, want %d", dups, c.copies-1)
			}
		})
	}
}

// waitQuiet waits until the group has committed everything on every topic.
func waitQuiet(t *testing.T, addr, group string, st *store.Embedded) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lag, err := broker.Lag(context.Background(), []string{addr}, group, schemas.Topics())
		var sum int64
		for _, l := range lag {
			sum += l
		}
		if err == nil && sum == 0 && countRows(t, st, "SELECT count() AS n FROM events") > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the processor did not commit everything within 60s: lag %v, %v", lag, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countRows(t *testing.T, st *store.Embedded, q string) int64 {
	t.Helper()
	out, err := st.QueryJSON(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		N json.Number `json:"n"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s → %s: %v", q, out, err)
	}
	n, _ := r.N.Int64()
	return n
}

// A dead-letter record read again (same app and event_id, another offset)
// is dropped and counted; a record with the same ids as an event is not.
func TestRejectedTopicDedup(t *testing.T) {
	w := testFetcher(prometheus.NewRegistry())
	rec := func(app, id, reason string) []byte {
		v, _ := json.Marshal(schemas.RejectedRecord{ReceivedAt: fuzzNow.UnixMilli(), AppID: app, Stage: "collector",
			Code: "invalid_json", Reason: reason, Raw: "{", EventIndex: 1, EventID: id})
		return v
	}
	for i, v := range [][]byte{
		rec("a", "r1", "first"), rec("a", "r1", "retry: another reason, same ids"), rec("b", "r1", "another app"),
		rec("a", "r2", "another id"), []byte("not json"), []byte("not json"),
	} {
		w.add(kafka.Message{Topic: schemas.RejectedTopic, Partition: 0, Offset: int64(i), Value: v})
	}
	// An event with app a and event_id r2 is another record.
	w.add(heartbeatMsg([]byte(`{"event_id":"r2","app_id":"a","log_type":"heartbeat","ts":`+
		strconv.FormatInt(fuzzNow.UnixMilli(), 10)+`,"device_id":"d","session_id":"s"}`), 0))
	b := w.cut()
	defer func() {
		for _, r := range []arrow.RecordBatch{b.events, b.sessions, b.rejected} {
			if r != nil {
				r.Release()
			}
		}
	}()
	if b.rejected == nil || b.rejected.NumRows() != 4 {
		t.Fatalf("rejected rows %v, want 4 (a/r1, b/r1, a/r2, one of the two identical invalid records)", b.rejected)
	}
	if b.events == nil || b.events.NumRows() != 1 {
		t.Fatalf("events %v, want 1", b.events)
	}
	if d := testutil.ToFloat64(w.p.metrics.Duplicates.WithLabelValues(schemas.RejectedTopic)); d != 2 {
		t.Errorf("duplicates on the rejected topic %v, want 2", d)
	}
}

// loadSeen reads back the rejected table's ids of the window too, keyed
// apart from the events' ids.
func TestDedupLoadRejected(t *testing.T) {
	st := sharedStore(t)
	ctx := context.Background()
	ins := func(table, prefix string, n int, age time.Duration) {
		t.Helper()
		cols := "event_id, app_id, received_at"
		vals := fmt.Sprintf("concat('%s', toString(number)), 'a', now64(3) - toIntervalMillisecond(%d)", prefix, age.Milliseconds())
		if table == schemas.EventsTable {
			cols += ", log_type, ts, device_id"
			vals += fmt.Sprintf(", 'heartbeat', now64(3) - toIntervalMillisecond(%d), 'd'", age.Milliseconds())
		}
		if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM numbers(%d)", table, cols, vals, n)); err != nil {
			t.Fatal(err)
		}
	}
	ins(schemas.RejectedTable, "rj-", 300, time.Minute)
	ins(schemas.RejectedTable, "old-", 50, 2*time.Hour) // past the window
	ins(schemas.EventsTable, "ev-", 200, time.Minute)
	p := New(Config{}, st, nil, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	w := &fetcher{p: p, logger: log.NewNopLogger(), seen: newDedup(time.Hour, 1<<20, p.metrics.dedup, nil)}
	if err := w.loadSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(p.metrics.dedup.loaded); n != 500 {
		t.Fatalf("loaded %v ids, want 500 (300 rejected, 200 events)", n)
	}
	var buf []byte
	for _, c := range []struct {
		salt uint64
		id   string
		want bool
	}{
		{rejectedSalt, "rj-0", true}, {rejectedSalt, "rj-299", true}, {rejectedSalt, "old-1", false},
		{rejectedSalt, "ev-1", false}, {eventsSalt, "ev-1", true}, {eventsSalt, "rj-1", false},
	} {
		if got := w.seen.seen(dedupKey(&buf, c.salt, []byte("a"), []byte(c.id))); got != c.want {
			t.Errorf("salt %x id %q: seen %v, want %v", c.salt, c.id, got, c.want)
		}
	}
}
