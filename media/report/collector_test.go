package report_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/collector"
	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// The real collector, on a real embedded Kafka broker, takes the client's
// gzipped NDJSON: valid events land in Kafka, the invalid one is counted as
// rejected.
func TestAgainstRealCollector(t *testing.T) {
	addr := brokertest.Start(t, 1, schemas.Topics()...)
	p, err := kafkaio.NewProducer([]string{addr}, kafkaio.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	col := collector.New(collector.Config{AppKeys: map[string]string{"media-key": "media"}},
		sampling.New(sampling.DefaultConfig()), p, collector.NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(col.Handler())
	t.Cleanup(srv.Close)

	c := report.New(report.Config{URL: srv.URL, AppKey: "media-key", Gzip: true, MaxBatch: 7})
	const n = 20
	for i := 0; i < n; i++ {
		c.Log(report.Event{"log_type": "edge_access", "session_id": "s1", "device_id": "d1", "stream_id": "live/r1",
			"node_id": "edge-a-north-1", "http_status": 200, "bytes": 1000 + i})
	}
	c.Log(report.Event{"log_type": "edge_access", "session_id": "s1", "http_status": 999}) // out of range
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Sent != n || st.Rejected != 1 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}

	conn, err := kafka.DialLeader(ctx, "tcp", addr, "lastmile.edge_access", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		t.Fatal(err)
	}
	if last-first != n {
		t.Errorf("Kafka topic lastmile.edge_access holds %d records, want %d", last-first, n)
	}
}
