package processor

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lastmile-qoe/lastmile/internal/broker"
	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// runOn starts a processor of group on the broker at addr over st, with a
// fresh registry, until the test ends or stop is called.
func runOn(t *testing.T, r *rig, addr, group string) (stop func()) {
	t.Helper()
	prod, err := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r.addr, r.prod = addr, prod
	r.m = NewMetrics(prometheus.NewRegistry())
	r.proc = New(Config{Brokers: []string{addr}, Group: group,
		FlushInterval: 200 * time.Millisecond, MaxRetryBackoff: 500 * time.Millisecond}, r.st, prod, r.m, log.NewNopLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.proc.Run(ctx) }()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			prod.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

// A topic recreated empty (here: a new broker, the same store) starts its
// offsets at 0 again. The processor must store its messages, not skip them
// as replays of the rows already stored at those offsets, and must say so.
func TestOffsetResetIsStoredAndCounted(t *testing.T) {
	r := &rig{st: sharedStore(t)}
	group := "g-reset-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	stop := runOn(t, r, brokertest.Start(t, 1, schemas.Topics()...), group)
	r.produce(t, 300)
	r.waitRows(t, "SELECT count() AS n FROM events", 300)
	stop()

	runOn(t, r, brokertest.Start(t, 1, schemas.Topics()...), group)
	r.produce(t, 100)
	r.waitRows(t, "SELECT count() AS n FROM events", 400)
	if got := testutil.ToFloat64(r.m.offsets.resets.WithLabelValues(schemas.TopicOf("heartbeat"))); got != 1 {
		t.Errorf("resets of the heartbeat topic: %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.m.Replayed.WithLabelValues(schemas.TopicOf("heartbeat"))); got != 0 {
		t.Errorf("%v messages of the new log skipped as replays", got)
	}
	if got := r.rows(t, "SELECT uniqExact(event_id) AS n FROM events"); got != 400 {
		t.Errorf("%d distinct events stored, want 400", got)
	}
}

// Messages removed by retention before the processor read them are lost;
// at the next start that shows as a gap of exactly their number.
func TestOffsetGapAtStartIsCounted(t *testing.T) {
	r := &rig{st: sharedStore(t)}
	b, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Partitions: 1,
		Retention: 5 * time.Second, RetentionCheckInterval: 50 * time.Millisecond}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := schemas.TopicOf("heartbeat")
	if err := broker.EnsureTopics(ctx, []string{b.Addr()}, []broker.TopicSpec{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	group := "g-gap-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	stop := runOn(t, r, b.Addr(), group)
	r.produce(t, 100)
	r.waitRows(t, "SELECT count() AS n FROM events", 100)
	stop()

	// 50 more arrive while the processor is down, and are gone before it
	// comes back: retention is 5 s here (long enough for the first 100 to
	// be read), and then the log start moves to the high watermark.
	prod, err := kafkaio.NewProducer([]string{b.Addr()}, kafkaio.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r.prod = prod
	r.produce(t, 50)
	prod.Close()
	var last any
	for wait := time.Now().Add(60 * time.Second); ; {
		octx, ocancel := context.WithTimeout(context.Background(), 5*time.Second)
		offs, err := broker.Offsets(octx, []string{b.Addr()}, group, []string{topic})
		ocancel()
		if err == nil && len(offs[topic]) == 1 {
			// The commit of the 100 may be lost if the stop came between
			// insert and commit; the processor then resumes past the rows
			// stored, at 100 too.
			if po := offs[topic][0]; po.Start == 150 && (po.Committed == 100 || po.Committed == -1) {
				break
			}
			last = offs[topic][0]
		} else {
			last = err
		}
		if time.Now().After(wait) {
			t.Fatalf("retention never removed the 50 unread messages: %+v", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	runOn(t, r, b.Addr(), group)
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(r.m.offsets.gapMessages.WithLabelValues(topic)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := testutil.ToFloat64(r.m.offsets.gapMessages.WithLabelValues(topic)); got != 50 {
		t.Errorf("lost messages counted: %v, want 50", got)
	}
	if got := testutil.ToFloat64(r.m.offsets.gaps.WithLabelValues(topic)); got != 1 {
		t.Errorf("gaps counted: %v, want 1", got)
	}
}
