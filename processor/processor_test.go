package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/broker"
	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/schemas"
)

type rig struct {
	addr  string
	st    *store.Embedded
	prod  *kafkaio.Producer
	proc  *Processor
	m     *Metrics
	stop  context.CancelFunc
	done  chan error
	count int
}

// newRig runs a processor against a real embedded broker and a real chDB.
func newRig(t *testing.T) *rig {
	t.Helper()
	addr := brokertest.Start(t, 2, schemas.Topics()...)
	ctx := context.Background()
	st := sharedStore(t)
	prod, err := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	m := NewMetrics(prometheus.NewRegistry())
	p := New(Config{Brokers: []string{addr}, Group: "g-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		FlushInterval: 200 * time.Millisecond, MaxRetryBackoff: 500 * time.Millisecond}, st, prod, m, log.NewNopLogger())
	pctx, cancel := context.WithCancel(ctx)
	r := &rig{addr: addr, st: st, prod: prod, proc: p, m: m, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(pctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func TestMain(m *testing.M) { storetest.Main(m) }

// sharedStore returns the test binary's store (one data dir per process),
// with the tables emptied.
func sharedStore(t *testing.T) *store.Embedded {
	st := storetest.Embedded(t)
	for _, tb := range []string{schemas.EventsTable, schemas.RejectedTable} {
		if err := st.Exec(context.Background(), "TRUNCATE TABLE "+tb); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// produce sends n heartbeats as the collector would forward them.
func (r *rig) produce(t *testing.T, n int) {
	t.Helper()
	now := time.Now().UnixMilli()
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		id := r.count
		r.count++
		v := fmt.Sprintf(`{"event_id":"e-%d","app_id":"a","received_at":%d,"sample_rate":1,"log_type":"heartbeat","ts":%d,"device_id":"d%d","session_id":"s%d","buffer_ms":%d}`,
			id, now, now, id%37, id%91, id%1000)
		msgs = append(msgs, kafka.Message{Topic: schemas.TopicOf("heartbeat"), Key: []byte(strconv.Itoa(id % 91)), Value: []byte(v)})
	}
	if err := r.prod.Produce(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) rows(t *testing.T, q string) int64 {
	t.Helper()
	out, err := r.st.QueryJSON(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.Number
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s → %s: %v", q, out, err)
	}
	for _, v := range m {
		n, _ := v.Int64()
		return n
	}
	return 0
}

// waitLag waits until the processor's committed lag on the heartbeat topic
// is want.
func (r *rig) waitLag(t *testing.T, want int64) {
	t.Helper()
	topic := schemas.TopicOf("heartbeat")
	deadline := time.Now().Add(30 * time.Second)
	var lag map[string]int64
	for time.Now().Before(deadline) {
		l, err := broker.Lag(context.Background(), []string{r.addr}, r.proc.Group(), []string{topic})
		if err == nil && l[topic] == want {
			return
		}
		lag = l
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("lag on %s = %v, want %d", topic, lag, want)
}

func (r *rig) waitRows(t *testing.T, q string, want int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got int64
	for time.Now().Before(deadline) {
		if got = r.rows(t, q); got >= want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %d, want %d", q, got, want)
}

// Store down: inserts fail and are retried, nothing is committed, lag grows
// and is visible; when the store is back everything arrives exactly once.
func TestStoreDownLosesNothing(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.produce(t, 3000)
	r.waitRows(t, "SELECT count() AS n FROM events", 3000)
	// Rows become visible before their offsets are committed; the lag
	// check below counts from the commit, so wait for it.
	r.waitLag(t, 0)

	if err := r.st.Exec(ctx, "DETACH TABLE events"); err != nil {
		t.Fatal(err)
	}
	// Later tests share this store: never leave it detached.
	t.Cleanup(func() { _ = r.st.Exec(context.Background(), "ATTACH TABLE events") })
	r.produce(t, 2000)
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(r.m.InsertErrors) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if testutil.ToFloat64(r.m.StoreUp) != 0 || testutil.ToFloat64(r.m.InsertErrors) < 2 {
		t.Fatalf("store down not visible: up=%v errors=%v", testutil.ToFloat64(r.m.StoreUp), testutil.ToFloat64(r.m.InsertErrors))
	}
	lag, err := broker.Lag(ctx, []string{r.addr}, r.proc.Group(), []string{schemas.TopicOf("heartbeat")})
	if err != nil {
		t.Fatal(err)
	}
	if lag[schemas.TopicOf("heartbeat")] != 2000 {
		t.Fatalf("lag while the store is down = %v, want 2000 (nothing committed)", lag)
	}

	if err := r.st.Exec(ctx, "ATTACH TABLE events"); err != nil {
		t.Fatal(err)
	}
	r.waitRows(t, "SELECT count() AS n FROM events", 5000)
	if n := r.rows(t, "SELECT uniqExact(event_id) AS n FROM events"); n != 5000 {
		t.Fatalf("%d distinct events, want 5000", n)
	}
	r.waitLag(t, 0)
	if testutil.ToFloat64(r.m.StoreUp) != 1 {
		t.Error("store_up did not return to 1")
	}
}

// What the processor itself refuses goes to the dead-letter topic and the
// rejected table; unknown fields are dropped and counted; duplicates of an
// event_id are dropped.
func TestCleaningRejectsAndDedup(t *testing.T) {
	r := newRig(t)
	now := time.Now().UnixMilli()
	vals := []string{
		fmt.Sprintf(`{"event_id":"ok-1","app_id":"a","log_type":"heartbeat","ts":%d,"device_id":"d1","session_id":"s1","buffer_ms":"250","colour":"blue"}`, now),
		fmt.Sprintf(`{"event_id":"ok-1","app_id":"a","log_type":"heartbeat","ts":%d,"device_id":"d1","session_id":"s1"}`, now),
		`{"log_type":"heartbeat","ts":`,
		fmt.Sprintf(`{"event_id":"bad-2","app_id":"a","log_type":"heartbeat","ts":%d,"device_id":"d2","session_id":"s2","buffer_ms":-4}`, now),
		fmt.Sprintf(`{"event_id":"wrong-topic","app_id":"a","log_type":"stall","ts":%d,"device_id":"d3","session_id":"s3","duration_ms":5}`, now),
	}
	var msgs []kafka.Message
	for _, v := range vals {
		msgs = append(msgs, kafka.Message{Topic: schemas.TopicOf("heartbeat"), Key: []byte("s1"), Value: []byte(v)}) // one partition: in order
	}
	if err := r.prod.Produce(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	r.waitRows(t, "SELECT count() AS n FROM rejected WHERE stage = 'processor'", 3)
	r.waitRows(t, "SELECT count() AS n FROM heartbeat", 1)
	time.Sleep(500 * time.Millisecond)
	if n := r.rows(t, "SELECT count() AS n FROM heartbeat"); n != 1 {
		t.Errorf("heartbeat rows = %d, want 1 (the duplicate dropped)", n)
	}
	if n := r.rows(t, "SELECT toInt64(buffer_ms) AS n FROM heartbeat"); n != 250 {
		t.Errorf("buffer_ms coerced to %d, want 250", n)
	}
	out, _ := r.st.QueryJSON(context.Background(), "SELECT code, device_id FROM rejected WHERE stage = 'processor' ORDER BY code")
	for _, want := range []string{`"code":"invalid_json"`, `"code":"out_of_range","device_id":"d2"`, `"code":"not_allowed","device_id":"d3"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rejected rows %s lack %s", out, want)
		}
	}
	if v := testutil.ToFloat64(r.m.UnknownFields.WithLabelValues("heartbeat", "colour")); v != 1 {
		t.Errorf("unknown field colour counted %v times", v)
	}
	if v := testutil.ToFloat64(r.m.Duplicates.WithLabelValues(schemas.TopicOf("heartbeat"))); v != 1 {
		t.Errorf("duplicates = %v", v)
	}
}

func BenchmarkRowBuilder(b *testing.B) {
	now := time.Now().UnixMilli()
	js := []byte(fmt.Sprintf(`{"event_id":"e-1","app_id":"a","received_at":%d,"sample_rate":1,"log_type":"first_frame","ts":%d,"device_id":"d1","session_id":"s1","region":"north","cdn":"a","total_ms":800,"dns_ms":20,"tcp_connect_ms":30}`, now, now))
	w := &fetcher{rows: NewRowBuilder()}
	var c schemas.Cleaner
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var err error
		w.fields, err = flatjsonParse(w.fields, js)
		if err != nil {
			b.Fatal(err)
		}
		if r := c.Clean(w.fields, &w.ev); r != nil {
			b.Fatal(r)
		}
		w.rows.Append(&w.ev, 0, int64(i))
		if i%100_000 == 99_999 {
			w.rows.Build().Release()
		}
	}
}

var flatjsonParse = flatjson.ParseObject

// TestMigrationsApplied: every checked-in migration is applied once, a rerun
// applies nothing, and 0003's merge policy and 0004's compact parts are on
// the events table.
func TestMigrationsApplied(t *testing.T) {
	st := sharedStore(t)
	ctx := context.Background()
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Query(ctx, "SELECT count() FROM schema_migrations", "TSV")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(len(ms)) {
		t.Errorf("schema_migrations has %s rows, want %d", got, len(ms))
	}
	applied, err := schemas.Migrate(ctx, st, 30)
	if err != nil || len(applied) != 0 {
		t.Errorf("rerun applied %v (err %v), want nothing", applied, err)
	}
	out, err = st.Query(ctx, "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'events'", "TSV")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"merge_selector_base = 50", "max_parts_to_merge_at_once = 30", "ttl_only_drop_parts = 1",
		"min_rows_for_wide_part = 1000000000000"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("events table lacks %q:\n%s", want, out)
		}
	}
}

// Server logs without the ids only a client has are stored, not rejected:
// an edge's 403 and its curl request without a CMCD sid. They make no trace
// session (no trace_sessions row), and their trace_key is empty, which no
// trace looks up (a session's is its session_id), so they never join one.
func TestServerLogsWithoutSessionStored(t *testing.T) {
	r := newRig(t)
	now := time.Now().UnixMilli()
	msg := func(lt, key, v string) kafka.Message {
		return kafka.Message{Topic: schemas.TopicOf(lt), Key: []byte(key), Value: []byte(v)}
	}
	msgs := []kafka.Message{
		msg("edge_access", "", fmt.Sprintf(`{"event_id":"curl-1","app_id":"nosid","log_type":"edge_access","ts":%d,"node_id":"edge-1","stream_id":"live/r1","http_status":200,"path":"/live/r1.flv"}`, now)),
		msg("edge_access", "", fmt.Sprintf(`{"event_id":"forbid-1","app_id":"nosid","log_type":"edge_access","ts":%d,"node_id":"edge-1","stream_id":"live/r1","http_status":403,"error":"bad signature"}`, now)),
		msg("edge_access", "s9", fmt.Sprintf(`{"event_id":"play-1","app_id":"nosid","log_type":"edge_access","ts":%d,"node_id":"edge-1","session_id":"s9","stream_id":"live/r1","http_status":200}`, now)),
		msg("heartbeat", "s9", fmt.Sprintf(`{"event_id":"hb-1","app_id":"nosid","log_type":"heartbeat","ts":%d,"device_id":"d9","session_id":"s9"}`, now)),
	}
	if err := r.prod.Produce(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	r.waitRows(t, "SELECT count() AS n FROM edge_access", 3)
	r.waitRows(t, "SELECT count() AS n FROM heartbeat", 1)
	if n := r.rows(t, "SELECT count() AS n FROM rejected WHERE app_id = 'nosid'"); n != 0 {
		t.Errorf("%d events rejected, want none", n)
	}
	if n := r.rows(t, "SELECT count() AS n FROM events WHERE log_type = 'edge_access' AND session_id = '' AND trace_key = '' AND node_id = 'edge-1'"); n != 2 {
		t.Errorf("%d sid-less edge rows with an empty trace key, want 2", n)
	}
	if n := r.rows(t, "SELECT count() AS n FROM edge_access WHERE http_status = 403"); n != 1 {
		t.Errorf("%d 403 rows, want 1", n)
	}
	r.waitRows(t, "SELECT count() AS n FROM "+schemas.TraceSessionsTable+" WHERE app_id = 'nosid'", 1)
	if n := r.rows(t, "SELECT count() AS n FROM "+schemas.TraceSessionsTable+" WHERE app_id = 'nosid' AND session_id != 's9'"); n != 0 {
		t.Errorf("%d trace_sessions rows of other sessions than s9: a session-less log made a session", n)
	}
	// The session's trace key finds its own edge row only.
	if n := r.rows(t, "SELECT count() AS n FROM "+schemas.TraceContextTable+" WHERE app_id = 'nosid' AND trace_key = 's9'"); n != 1 {
		t.Errorf("trace_context has %d rows under s9, want its 1 edge row", n)
	}
}
