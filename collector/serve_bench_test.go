package collector

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/sampling"
)

type nopProducer struct{}

func (nopProducer) Produce(ctx context.Context, msgs []kafka.Message) error { return nil }

// BenchmarkServeEvents: one NDJSON request of 2,000 events through the whole
// handler with a producer that acknowledges at once.
func BenchmarkServeEvents(b *testing.B) {
	c := New(Config{AppKeys: map[string]string{"k": "app"}}, sampling.New(sampling.DefaultConfig()), nopProducer{},
		NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	h := c.Handler()
	var body bytes.Buffer
	ts := time.Now().Add(-time.Minute).UnixMilli()
	for i := 0; i < 2000; i++ {
		body.WriteString(`{"event_id":"ev-` + strconv.Itoa(i) + `","log_type":"heartbeat","ts":` + strconv.FormatInt(ts, 10) +
			`,"source":"client","device_id":"dev-` + strconv.Itoa(i%97) + `","user_id":"u1","session_id":"s-` + strconv.Itoa(i%31) +
			`","room_id":"r1","stream_id":"st1","region":"north","isp":"isp1","cdn":"cdn-a","node_id":"edge-1","protocol":"flv","rendition":"720p","codec":"h264","app_version":"1.2.3","os":"android","network":"wifi","interval_ms":10000,"buffer_ms":1500,"bitrate_kbps":1500,"fps":30,"latency_ms":2100,"bytes":1875000,"stall_count":0,"stall_ms":0,"state":"playing"}` + "\n")
	}
	raw := body.Bytes()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(raw))
		req.Header.Set("X-Lastmile-Key", "k")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body.String())
		}
	}
}
