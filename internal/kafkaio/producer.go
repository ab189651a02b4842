// Package kafkaio holds the Kafka producer settings lastmile relies on for
// durability: every record acknowledged by all in-sync replicas before the
// caller is told it is stored.
package kafkaio

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Producer writes records synchronously with RequiredAcks=all.
type Producer struct {
	w *kafka.Writer
}

// ProducerConfig tunes the writer; zero values take the defaults below.
type ProducerConfig struct {
	// BatchTimeout is how long a partition's batch waits to fill. Small,
	// because callers (HTTP requests) wait for the ack.
	BatchTimeout time.Duration
	BatchSize    int
	BatchBytes   int64
	// Compression: "none" (default), "snappy", "lz4", "zstd", "gzip".
	Compression string
}

// NewProducer returns a producer to the given brokers. Topics must exist
// (broker.EnsureTopics): auto-creation would hide a misconfigured cluster.
func NewProducer(brokers []string, cfg ProducerConfig) (*Producer, error) {
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 2 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 10_000
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 4 << 20
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Murmur2Balancer{}, // same partition for a key as the Java client
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		MaxAttempts:  3,
		WriteTimeout: 5 * time.Second,
		ReadTimeout:  5 * time.Second,
	}
	switch cfg.Compression {
	case "", "none":
	case "snappy":
		w.Compression = kafka.Snappy
	case "lz4":
		w.Compression = kafka.Lz4
	case "zstd":
		w.Compression = kafka.Zstd
	case "gzip":
		w.Compression = kafka.Gzip
	default:
		return nil, fmt.Errorf("kafka producer: unknown compression %q (none, snappy, lz4, zstd, gzip)", cfg.Compression)
	}
	return &Producer{w: w}, nil
}

// Produce returns once every record is acknowledged, or with the first error.
func (p *Producer) Produce(ctx context.Context, msgs []kafka.Message) error {
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d records: %w", len(msgs), err)
	}
	return nil
}

// Stats exposes the writer's counters for metrics.
func (p *Producer) Stats() kafka.WriterStats { return p.w.Stats() }

// Close flushes pending records and closes connections.
func (p *Producer) Close() error { return p.w.Close() }
