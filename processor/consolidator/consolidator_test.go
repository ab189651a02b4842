package consolidator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/processor/consolidator"
)

func TestDue(t *testing.T) {
	const gib = 1 << 30
	c := consolidator.New(consolidator.Config{MaxBytes: gib}, nil, nil, log.NewNopLogger())
	for _, tc := range []struct {
		name          string
		d             consolidator.Day
		merge, tooBig bool
	}{
		{"three like parts", consolidator.Day{Rows: []int64{7e6, 7e6, 6e6}, Bytes: gib / 2, IdleSeconds: 3600}, true, false},
		{"one big part and late events", consolidator.Day{Rows: []int64{29e6, 4000, 120}, Bytes: gib / 2, IdleSeconds: 3600}, false, false},
		{"5% besides the largest part", consolidator.Day{Rows: []int64{95, 3, 2}, Bytes: 100, IdleSeconds: 3600}, true, false},
		{"4% besides the largest part", consolidator.Day{Rows: []int64{96, 2, 2}, Bytes: 100, IdleSeconds: 3600}, false, false},
		// The benchmark's yesterday as the merge policy left it: one part of
		// 7.25M rows and the last hours' 26 parts of 250k.
		{"one big part and many small ones", consolidator.Day{Rows: append([]int64{7_250_000}, slices.Repeat([]int64{250_000}, 26)...), Bytes: gib / 2, IdleSeconds: 3600}, true, false},
		{"still written", consolidator.Day{Rows: []int64{7e6, 7e6, 6e6}, Bytes: gib / 2, IdleSeconds: 30}, false, false},
		{"being merged", consolidator.Day{Rows: []int64{7e6, 7e6, 6e6}, Bytes: gib / 2, IdleSeconds: 3600, Merging: true}, false, false},
		{"too large", consolidator.Day{Rows: []int64{7e6, 7e6, 6e6}, Bytes: 2 * gib, IdleSeconds: 3600}, false, true},
		{"one part", consolidator.Day{Rows: []int64{7e6}, Bytes: gib / 2, IdleSeconds: 3600}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merge, tooBig := consolidator.Due(c, tc.d)
			if merge != tc.merge || tooBig != tc.tooBig {
				t.Errorf("due(%+v) = merge %v, too big %v; want %v, %v", tc.d, merge, tooBig, tc.merge, tc.tooBig)
			}
		})
	}
}

// TestConsolidate: on the real store, a closed day in several parts becomes
// one part, in events and in trace_context (a tenth of the rows are
// stream-level, which its view copies); a closed day of one part and some
// late events, and today, are left as they are.
func TestConsolidate(t *testing.T) {
	ctx := context.Background()
	st := storetest.Embedded(t)
	exec := func(q string) { mustExec(t, st, q) }
	// Background merges would merge the small test parts themselves;
	// OPTIMIZE still merges all of a partition.
	exec("ALTER TABLE events MODIFY SETTING max_parts_to_merge_at_once = 1")
	exec("ALTER TABLE trace_context MODIFY SETTING max_parts_to_merge_at_once = 1")
	insert := func(day time.Time, rows int) {
		exec(fmt.Sprintf(`INSERT INTO events (app_id, log_type, source, ts, received_at, event_id, trace_key, device_id, sample_rate)
SELECT 'a', if(number %% 10 = 0, 'push_stats', 'heartbeat'), 'client', toDateTime64('%s 12:00:00', 3) + number, now64(3), toString(generateUUIDv4()), 'd' || toString(number %% 50), 'd' || toString(number %% 50), 1
FROM numbers(%d)`, day.Format(time.DateOnly), rows))
	}
	// Days as the store counts them (its time zone is the partition key's).
	now := storeToday(t, st)
	fragmented, late, today := now.AddDate(0, 0, -2), now.AddDate(0, 0, -3), now
	for range 3 {
		insert(fragmented, 2000)
	}
	insert(late, 5000)
	insert(late, 10)
	insert(today, 2000)
	insert(today, 2000)
	id := func(d time.Time) string { return d.Format("20060102") }
	for _, table := range []string{"events", "trace_context"} {
		if got, want := partsOf(t, st, table), map[string]int{id(fragmented): 3, id(late): 2, id(today): 2}; !maps.Equal(got, want) {
			t.Fatalf("%s: parts before: %v, want %v", table, got, want)
		}
	}

	reg := prometheus.NewRegistry()
	m := consolidator.NewMetrics(reg)
	// A limit below the day's size: left alone, and counted.
	small := consolidator.New(consolidator.Config{MaxBytes: 1, Quiet: -1}, st, m, log.NewNopLogger())
	if done, err := small.Once(ctx); err != nil || len(done) != 0 {
		t.Fatalf("Once with a 1-byte limit merged %v, err %v", done, err)
	}
	if got := testutil.ToFloat64(m.Skipped); got != 2 {
		t.Errorf("skipped_days_total = %v, want 2 (events and trace_context)", got)
	}
	// Written just now: not quiet yet.
	waiting := consolidator.New(consolidator.Config{MaxBytes: 1 << 30}, st, m, log.NewNopLogger())
	if done, err := waiting.Once(ctx); err != nil || len(done) != 0 {
		t.Fatalf("Once within the quiet period merged %v, err %v", done, err)
	}

	c := consolidator.New(consolidator.Config{MaxBytes: 1 << 30, Quiet: -1}, st, m, log.NewNopLogger())
	done, err := c.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var merged []string
	for _, d := range done {
		merged = append(merged, d.Table+"/"+d.PartitionID)
	}
	if want := []string{"events/" + id(fragmented), "trace_context/" + id(fragmented)}; !slices.Equal(merged, want) {
		t.Errorf("merged %v, want only %v", merged, want)
	}
	for _, table := range []string{"events", "trace_context"} {
		if got, want := partsOf(t, st, table), map[string]int{id(fragmented): 1, id(late): 2, id(today): 2}; !maps.Equal(got, want) {
			t.Errorf("%s: parts after: %v, want %v", table, got, want)
		}
	}
	if got := testutil.ToFloat64(m.Days); got != 2 {
		t.Errorf("days_total = %v, want 2", got)
	}
	var n struct{ N int64 }
	out, err := st.QueryJSON(ctx, "SELECT toInt64(count()) AS N FROM events")
	if err != nil || json.Unmarshal(bytes.TrimSpace(out), &n) != nil || n.N != 3*2000+5010+4000 {
		t.Errorf("events after: %s (err %v), want %d", out, err, 3*2000+5010+4000)
	}
	// Nothing left to do.
	if done, err := c.Once(ctx); err != nil || len(done) != 0 {
		t.Errorf("second Once merged %v, err %v", done, err)
	}

	// A table partitioned by month: its ids (YYYYMM) are below today's
	// YYYYMMDD, but are not closed days.
	exec("CREATE TABLE monthly (d Date, x UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(d) ORDER BY x SETTINGS max_parts_to_merge_at_once = 1")
	for range 3 {
		exec(fmt.Sprintf("INSERT INTO monthly SELECT '%s', number FROM numbers(1000)", today.Format(time.DateOnly)))
	}
	mc := consolidator.New(consolidator.Config{Tables: []string{"monthly"}, MaxBytes: 1 << 30, Quiet: -1}, st, nil, log.NewNopLogger())
	if done, err := mc.Once(ctx); err != nil || len(done) != 0 {
		t.Errorf("Once on a monthly table merged %v, err %v", done, err)
	}
}

// TestConsolidateStopsForShutdown: a merge under way when the context ends
// is stopped (the store's call cannot be interrupted, and a large day takes
// minutes), the day keeps its parts and rows, and the next look merges it.
func TestConsolidateStopsForShutdown(t *testing.T) {
	ctx := context.Background()
	st := storetest.Embedded(t)
	exec := func(q string) { mustExec(t, st, q) }
	exec("CREATE TABLE big (d Date, x UInt64, s String) ENGINE = MergeTree PARTITION BY toYYYYMMDD(d) ORDER BY x SETTINGS max_parts_to_merge_at_once = 1")
	day := storeToday(t, st).AddDate(0, 0, -2)
	const rows = 5_000_000
	for range 2 {
		exec(fmt.Sprintf("INSERT INTO big SELECT '%s', number, toString(rand64()) FROM numbers(%d)", day.Format(time.DateOnly), rows))
	}
	before := partsOf(t, st, "big")[day.Format("20060102")]

	reg := prometheus.NewRegistry()
	m := consolidator.NewMetrics(reg)
	c := consolidator.New(consolidator.Config{Tables: []string{"big"}, MaxBytes: 1 << 40, Quiet: -1, StopMerges: true}, st, m, log.NewNopLogger())
	cctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		_, err := c.Once(cctx)
		res <- err
	}()
	// Stop it once the merge runs.
	for {
		out, err := st.QueryJSON(ctx, "SELECT 1 FROM system.merges WHERE table = 'big'")
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(out)) > 0 {
			break
		}
		select {
		case err := <-res:
			t.Fatalf("Once returned before its merge showed in system.merges: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("Once after cancel: %v, want context.Canceled", err)
	}
	if got := partsOf(t, st, "big")[day.Format("20060102")]; got != before {
		t.Errorf("parts after the stopped merge: %d, want %d as before", got, before)
	}
	if got := testutil.ToFloat64(m.Days) + testutil.ToFloat64(m.Errors); got != 0 {
		t.Errorf("days_total + errors_total = %v after a stopped merge, want 0", got)
	}
	if done, err := c.Once(ctx); err != nil || len(done) != 1 {
		t.Fatalf("next Once: merged %v, err %v; want the day", done, err)
	}
	if got := partsOf(t, st, "big")[day.Format("20060102")]; got != 1 {
		t.Errorf("parts after the next look: %d, want 1", got)
	}
	var n struct{ N int64 }
	out, err := st.QueryJSON(ctx, "SELECT toInt64(count()) AS N FROM big")
	if err != nil || json.Unmarshal(bytes.TrimSpace(out), &n) != nil || n.N != 2*rows {
		t.Errorf("rows: %s (err %v), want %d", out, err, 2*rows)
	}
}

func TestMain(m *testing.M) { storetest.Main(m) }

func mustExec(t *testing.T, st *store.Embedded, q string) {
	t.Helper()
	if err := st.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// storeToday is today's date in the store's time zone. Too close to its
// midnight, the test is skipped: today would close while it runs.
func storeToday(t *testing.T, st *store.Embedded) time.Time {
	t.Helper()
	out, err := st.QueryJSON(context.Background(), "SELECT toString(today()) AS d, toUInt32(86400 - (toUnixTimestamp(now()) - toUnixTimestamp(toStartOfDay(now())))) AS left")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		D    string
		Left int
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if r.Left < 300 {
		t.Skip("too close to the store's midnight: today would close during the test")
	}
	d, err := time.Parse(time.DateOnly, r.D)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// partsOf counts the active parts of each partition of table.
func partsOf(t *testing.T, st *store.Embedded, table string) map[string]int {
	t.Helper()
	out, err := st.QueryJSON(context.Background(), fmt.Sprintf(
		"SELECT partition_id AS p, toInt64(count()) AS n FROM system.parts WHERE database = currentDatabase() AND table = '%s' AND active GROUP BY p", table))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for line := range bytes.SplitSeq(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r struct {
			P string
			N int
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		m[r.P] = r.N
	}
	return m
}
