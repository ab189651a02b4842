package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/broker"
	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// newCollector runs a collector against a real embedded broker.
func newCollector(t *testing.T, sc sampling.Config) (*httptest.Server, string) {
	t.Helper()
	addr := brokertest.Start(t, 2, schemas.Topics()...)
	p, err := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sc), p, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv, addr
}

func readTopic(t *testing.T, addr, topic string, n int) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for p := 0; p < 2 && len(out) < n; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for len(out) < n {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				break
			}
			out = append(out, m)
		}
		r.Close()
	}
	return out
}

func TestPostProducesNormalizedRecords(t *testing.T) {
	srv, addr := newCollector(t, sampling.DefaultConfig())
	ts := time.Now().UnixMilli()
	body := fmt.Sprintf(`[
	  {"log_type":"first_frame","ts":%d,"device_id":"d1","session_id":"s1","total_ms":800,"app_id":"spoofed","sample_rate":0.5,"extra":1},
	  {"log_type":"transcode","ts":%d,"stream_id":"live/r1","status":"ok","event_id":"mine"},
	  {"log_type":"first_frame","ts":%d,"device_id":"d1","session_id":"s1"}
	]`, ts, ts, ts)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/events", bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r Response
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 200 || r.Accepted != 2 || len(r.Rejected) != 1 || r.Rejected[0].Index != 2 ||
		r.Rejected[0].Code != schemas.ReasonMissingField || r.Rejected[0].Field != "total_ms" {
		t.Fatalf("answer %d %+v", resp.StatusCode, r)
	}

	ff := readTopic(t, addr, "lastmile.first_frame", 1)
	if len(ff) != 1 {
		t.Fatalf("first_frame topic has %d records", len(ff))
	}
	var ev map[string]any
	if err := json.Unmarshal(ff[0].Value, &ev); err != nil {
		t.Fatalf("record is not JSON: %s", ff[0].Value)
	}
	if ev["app_id"] != "app1" || ev["sample_rate"] != 1.0 || ev["received_at"] == nil || len(ev["event_id"].(string)) != 32 || ev["extra"] != 1.0 {
		t.Errorf("record fields: %s", ff[0].Value)
	}
	if string(ff[0].Key) != "s1" {
		t.Errorf("session event keyed by %q, want the session", ff[0].Key)
	}
	tc := readTopic(t, addr, "lastmile.transcode", 1)
	if len(tc) != 1 || string(tc[0].Key) != "live/r1" || !bytes.Contains(tc[0].Value, []byte(`"event_id":"mine"`)) {
		t.Fatalf("transcode record: %+v", tc)
	}
	rej := readTopic(t, addr, schemas.RejectedTopic, 1)
	if len(rej) != 1 {
		t.Fatalf("rejected topic has %d records", len(rej))
	}
	var rr schemas.RejectedRecord
	json.Unmarshal(rej[0].Value, &rr)
	if rr.Code != schemas.ReasonMissingField || rr.DeviceID != "d1" || rr.EventIndex != 2 || rr.RequestID != r.RequestID || rr.Raw == "" {
		t.Errorf("rejected record: %+v", rr)
	}
}

// The same payload posted twice gets the same derived event ids.
func TestDerivedIDsAreStable(t *testing.T) {
	srv, addr := newCollector(t, sampling.DefaultConfig())
	body := fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d","session_id":"s"}`, time.Now().UnixMilli())
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/events", bytes.NewBufferString(body))
		req.Header.Set("X-Lastmile-Key", "k1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("post: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	ms := readTopic(t, addr, "lastmile.heartbeat", 2)
	if len(ms) != 2 {
		t.Fatalf("%d records", len(ms))
	}
	id := func(m kafka.Message) string {
		var v map[string]any
		json.Unmarshal(m.Value, &v)
		return v["event_id"].(string)
	}
	if id(ms[0]) != id(ms[1]) {
		t.Errorf("retried payload got ids %s and %s", id(ms[0]), id(ms[1]))
	}
}

// Kafka down → 503 with Retry-After, never a 2xx.
func TestKafkaDownAnswers503(t *testing.T) {
	b, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: t.TempDir(), Addr: "127.0.0.1:0"}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	b.Close()
	p, _ := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
	defer p.Close()
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}, ProduceTimeout: 2 * time.Second}, sampling.New(sampling.DefaultConfig()), p,
		NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/events",
		bytes.NewBufferString(fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d","session_id":"s"}`, time.Now().UnixMilli())))
	req.Header.Set("X-Lastmile-Key", "k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
