package collector

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// newPairingCollector runs a collector and its pairing stage against a
// real embedded broker.
func newPairingCollector(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	addr := brokertest.Start(t, 2, append(schemas.Topics(), CMCDReportsTopic)...)
	p, err := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sampling.DefaultConfig()), p, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.NewPairer(PairPlan{Brokers: []string{addr}}).Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done }) // before the broker stops
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv, addr
}

// pairMem runs the reports prod holds through one partition of c's
// pairing stage, in order, as Kafka delivers them, and returns the
// records that produced.
func pairMem(t testing.TB, c *Collector, prod *memProducer) []kafka.Message {
	t.Helper()
	prod.mu.Lock()
	msgs := slices.Clone(prod.msgs)
	prod.mu.Unlock()
	p := c.NewPairer(PairPlan{})
	pp := newPairPart()
	b := &batch{cleaner: c.cfg.Cleaner}
	for i, m := range msgs {
		if m.Topic == CMCDReportsTopic {
			m.Offset = int64(i)
			p.pair(pp, m, b)
		}
	}
	if err := c.produce(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	prod.mu.Lock()
	defer prod.mu.Unlock()
	return slices.Clone(prod.msgs[len(msgs):])
}

// The commit point of a partition: the first report of its oldest open
// session; a stopped or idle session no longer holds it, one heard again
// holds it from there; a discontinuity drops the state.
func TestPairCommitPoint(t *testing.T) {
	const idle, hold = 600_000, 1_800_000
	type step struct {
		off       int64
		key, sta  string
		heard     int64 // received_at
		now       int64 // commit point asked at
		want      int64
		wantReset bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"no session open: after the last", []step{
			{off: 0, key: "a", sta: "s", heard: 1000, now: 1000, want: 0},
			{off: 1, key: "a", sta: "e", heard: 2000, now: 2000, want: 2},
		}},
		{"oldest open session holds it", []step{
			{off: 5, key: "a", sta: "s", heard: 1000, now: 1000, want: 5},
			{off: 6, key: "b", sta: "s", heard: 1100, now: 1100, want: 5},
			{off: 7, key: "b", sta: "p", heard: 1200, now: 1200, want: 5},
			{off: 8, key: "a", sta: "e", heard: 1300, now: 1300, want: 6},
			{off: 9, key: "b", sta: "q", heard: 1400, now: 1400, want: 10},
		}},
		{"an idle session lets go; heard again it holds from there", []step{
			{off: 0, key: "a", sta: "s", heard: 1000, now: 1000, want: 0},
			{off: 1, key: "b", sta: "s", heard: 1000 + idle, now: 1000 + idle, want: 1},
			{off: 2, key: "a", sta: "p", heard: 2000 + idle, now: 2000 + idle, want: 1},
			{off: 3, key: "b", sta: "e", heard: 3000 + idle, now: 3000 + idle, want: 2},
		}},
		{"wall clock idles a quiet partition", []step{
			{off: 0, key: "a", sta: "s", heard: 1000, now: 1000 + idle - 1, want: 0},
			{off: 1, key: "a", sta: "p", heard: 1000, now: 1000 + idle, want: 2},
		}},
		{"a new play after a stop holds it from its start", []step{
			{off: 0, key: "a", sta: "s", heard: 1000, now: 1000, want: 0},
			{off: 1, key: "a", sta: "e", heard: 2000, now: 2000, want: 2},
			{off: 2, key: "a", sta: "s", heard: 3000, now: 3000, want: 2},
		}},
		{"a session begun more than MaxHold ago lets go while it plays", []step{
			{off: 0, key: "a", sta: "s", heard: 1000, now: 1000, want: 0},
			{off: 1, key: "b", sta: "s", heard: 2000, now: 2000, want: 0},
			{off: 2, key: "a", sta: "p", heard: 501_000, now: 501_000, want: 0},
			{off: 3, key: "b", sta: "p", heard: 502_000, now: 502_000, want: 0},
			{off: 4, key: "a", sta: "p", heard: 1_001_000, now: 1_001_000, want: 0},
			{off: 5, key: "b", sta: "p", heard: 1_002_000, now: 1_002_000, want: 0},
			{off: 6, key: "a", sta: "p", heard: 1_501_000, now: 1_501_000, want: 0},
			{off: 7, key: "b", sta: "p", heard: 1_502_000, now: 1_502_000, want: 0},
			{off: 8, key: "a", sta: "p", heard: 999 + hold, now: 999 + hold, want: 0},
			{off: 9, key: "a", sta: "p", heard: 1000 + hold, now: 1000 + hold, want: 1},
			{off: 10, key: "b", sta: "p", heard: 2000 + hold, now: 2000 + hold, want: 11},
		}},
		{"a gap drops the state", []step{
			{off: 0, key: "a", sta: "s", heard: 1000, now: 1000, want: 0},
			{off: 4, key: "b", sta: "s", heard: 1100, now: 1100, want: 4, wantReset: true},
		}},
		{"a rewind drops the state", []step{
			{off: 3, key: "a", sta: "s", heard: 1000, now: 1000, want: 3},
			{off: 4, key: "a", sta: "p", heard: 1100, now: 1100, want: 3},
			{off: 3, key: "a", sta: "s", heard: 1000, now: 1100, want: 3, wantReset: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pp := newPairPart()
			for i, st := range tc.steps {
				if reset := !pp.admit(st.off); reset != st.wantReset {
					t.Fatalf("step %d: reset %v, want %v", i, reset, st.wantReset)
				}
				s, _ := pp.session(st.key, st.off, st.heard, idle)
				s.apply(&report{sid: st.key, sta: st.sta, ts: st.heard}, &DefaultCMCDPlan)
				if got := pp.commitPoint(st.now, idle, hold); got != st.want {
					t.Fatalf("step %d: commit point %d, want %d", i, got, st.want)
				}
			}
		})
	}
}

// A report whose own values would make an invalid event is rejected in the
// answer with the catalog's reason and never reaches the reports topic.
func TestCMCDPrecheckRejects(t *testing.T) {
	now := time.Now().UnixMilli()
	for _, tc := range []struct {
		name, report, code, field string
	}{
		{"request status 700", hlsReport("rr", "p", now, `rc=700,ttfb=3,ttlb=9,url="http://e/s.ts"`), schemas.ReasonOutOfRange, "http_status"},
		{"negative ttfb", hlsReport("rr", "p", now, `rc=200,ttfb=-1,ttlb=9,url="http://e/s.ts"`), schemas.ReasonOutOfRange, "ttfb_ms"},
		{"negative bsd on a heartbeat", hlsReport("t", "p", now, `bl=(-5),bsd=(-3)`), "", ""},
		{"msd beyond the catalog", hlsReport("ps", "p", now, `msd=999999999999`), schemas.ReasonOutOfRange, "total_ms"},
		{"heartbeat ts a day ahead", hlsReport("t", "p", now+86_400_000, ``), schemas.ReasonTsOutOfWindow, "ts"},
		{"state report ts 8 days back", hlsReport("ps", "s", now-8*86_400_000, ``), schemas.ReasonTsOutOfWindow, "ts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prod := &memProducer{}
			srv := newMemCollector(t, Config{}, prod)
			body := hlsReport("ps", "s", now-1000, "") + "\n" + tc.report
			resp, r := postCMCD(t, srv.URL+"/v1/cmcd?key=k1", "application/cmcd", body, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("answer %d", resp.StatusCode)
			}
			reports := 0
			for _, m := range prod.msgs {
				if m.Topic == CMCDReportsTopic {
					reports++
				}
			}
			if tc.code == "" && tc.field == "" { // values the mapping ignores: kept
				if len(r.Rejected) != 0 || r.Accepted != 2 || reports != 2 {
					t.Fatalf("answer %+v, %d report records", r, reports)
				}
				return
			}
			if len(r.Rejected) != 1 || r.Accepted != 1 || reports != 1 {
				t.Fatalf("answer %+v, %d report records", r, reports)
			}
			x := r.Rejected[0]
			if x.Index != 1 || (tc.code != "" && x.Code != tc.code) || x.Field != tc.field {
				t.Errorf("reject %+v, want index 1 code %q field %q", x, tc.code, tc.field)
			}
		})
	}
}

// The pairing stage maps a partition's reports whoever took them: its
// records carry the post's app, request and line, and a reject in the
// pairing stage names them.
func TestPairRecordsCarryThePost(t *testing.T) {
	prod := &memProducer{}
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sampling.DefaultConfig()), prod, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	now := time.Now().UnixMilli()
	// A stall of more than a day is the pairing's own doing: only the
	// pairing stage can reject it.
	body := hlsReport("ps", "s", now-3*86_400_000, "") + "\n" + hlsReport("ps", "p", now-3*86_400_000+10, "") + "\n" +
		hlsReport("ps", "r", now-2*86_400_000-10, "") + "\n" + hlsReport("ps", "p", now, "")
	resp, r := postCMCD(t, srv.URL+"/v1/cmcd?key=k1&device=dev-9", "application/cmcd", body, nil)
	if resp.StatusCode != 200 || r.Accepted != 4 {
		t.Fatalf("answer %d %+v", resp.StatusCode, r)
	}
	var env reportEnvelope
	json.Unmarshal(prod.msgs[1].Value, &env)
	if env.AppID != "app1" || env.RequestID != r.RequestID || env.Index != 1 || env.Device != "dev-9" ||
		string(prod.msgs[1].Key) != "app1\x0091a28b06-b2f5-429e-acd2-e25e2a3143d5" || !strings.Contains(env.Report, "sta=p") {
		t.Fatalf("record %s key %q", prod.msgs[1].Value, prod.msgs[1].Key)
	}
	var topics []string
	var rej schemas.RejectedRecord
	for _, m := range pairMem(t, c, prod) {
		topics = append(topics, m.Topic)
		if m.Topic == schemas.RejectedTopic {
			json.Unmarshal(m.Value, &rej)
		}
	}
	if strings.Join(topics, ",") != "lastmile.play_start,lastmile.first_frame,"+schemas.RejectedTopic {
		t.Errorf("paired records %v", topics)
	}
	if rej.RequestID != r.RequestID || rej.EventIndex != 3 || rej.Field != "duration_ms" || rej.AppID != "app1" {
		t.Errorf("rejected record %+v", rej)
	}
}

// BenchmarkPairReports: the pairing stage's cost per report (map, clean,
// encode, produce to a no-op producer), with 10,000 open sessions in the
// partition and a commit point worked out every 1,000 reports.
func BenchmarkPairReports(b *testing.B) {
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sampling.DefaultConfig()), nopProducer{}, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	p := c.NewPairer(PairPlan{})
	now := time.Now().UnixMilli()
	const sessions = 10_000
	msgs := make([]kafka.Message, 4*sessions)
	for i := range msgs {
		sid := "s" + strconv.Itoa(i%sessions)
		e, sta := "t", "p"
		if i < sessions {
			e, sta = "ps", "s"
		}
		rep := strings.ReplaceAll(hlsReport(e, sta, now+int64(i), "bl=(4400),br=(800)"), "91a28b06-b2f5-429e-acd2-e25e2a3143d5", sid)
		v, _ := json.Marshal(&reportEnvelope{AppID: "app1", RequestID: "r", Index: 0, ReceivedAt: now + int64(i), Report: rep})
		msgs[i] = kafka.Message{Topic: CMCDReportsTopic, Key: reportKey("app1", sid), Value: v}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var pp *pairPart
	bt := &batch{}
	for i := 0; i < b.N; i++ {
		j := i % len(msgs)
		if j == 0 {
			pp = newPairPart()
			p.sessions.Store(0)
		}
		m := msgs[j]
		m.Offset = int64(j)
		p.pair(pp, m, bt)
		if (i+1)%1000 == 0 {
			if err := c.produce(context.Background(), bt); err != nil {
				b.Fatal(err)
			}
			pp.commitPoint(now+int64(j), p.plan.IdleTimeout.Milliseconds(), p.plan.MaxHold.Milliseconds())
			bt.reset()
		}
	}
}

// FuzzPairRecord feeds any bytes to the pairing stage as cmcd_reports
// records (a broker's clients can write there): it never panics, and what
// it produces is JSON.
func FuzzPairRecord(f *testing.F) {
	now := time.Now().UnixMilli()
	for _, rep := range []string{hlsReport("ps", "s", now-1000, ""), hlsReport("ps", "p", now, "msd=300"), `e=t,sta=p,ts=-1,sid="s"`, "a=(1 2);x"} {
		v, _ := json.Marshal(&reportEnvelope{AppID: "app1", RequestID: "r", Index: 2, ReceivedAt: now, Report: rep})
		f.Add(v)
	}
	f.Add([]byte(`{"app_id":1}`))
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sampling.DefaultConfig()), nopProducer{}, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	p := c.NewPairer(PairPlan{})
	f.Fuzz(func(t *testing.T, v []byte) {
		pp, b := newPairPart(), &batch{}
		for i := range 2 { // twice: the second one meets the session's state
			p.pair(pp, kafka.Message{Topic: CMCDReportsTopic, Key: []byte("app1\x00s"), Value: v, Offset: int64(i)}, b)
		}
		for _, sp := range b.spans {
			if !json.Valid(b.out[sp[0]:sp[1]]) {
				t.Fatalf("record %q is not JSON", b.out[sp[0]:sp[1]])
			}
		}
	})
}
