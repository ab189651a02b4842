// Package kafkaio holds the Kafka producer settings lastmile relies on for
// durability: every record acknowledged by all in-sync replicas before the
// caller is told it is stored.
package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Producer writes records synchronously with RequiredAcks=all.
type Producer struct {
	w *kafka.Writer
}

// DefaultBatchBytes is the writer's default BatchBytes: the most bytes of
// records in one produce batch, and so the largest record it takes. It stays
// under Kafka's default message.max.bytes (1 MiB + 12), which the embedded
// broker sets explicitly (broker.DefaultMessageMaxBytes); a test produces a
// record of exactly MaxRecordBytes to it.
const DefaultBatchBytes = 1_000_000

// recordOverhead is what kafka-go counts for a record besides its key and
// value (kafka.Message.totalSize without headers: crc, magic, attributes,
// the two length prefixes, timestamp, and the headers' count varint).
const recordOverhead = 4 + 1 + 1 + 4 + 4 + 8 + 1

// The writer's retry bound: WriterBound is the longest it works on one batch
// (every attempt timing out on write and read, plus its backoffs).
const (
	maxAttempts = 3
	ioTimeout   = 5 * time.Second
	WriterBound = maxAttempts*2*ioTimeout + 2*time.Second
)

// DefaultMaxRecordBytes is MaxRecordBytes under the default BatchBytes.
const DefaultMaxRecordBytes = DefaultBatchBytes - recordOverhead

// ProducerConfig tunes the writer; zero values take the defaults below.
type ProducerConfig struct {
	// BatchTimeout is how long a partition's batch waits to fill. Small,
	// because callers (HTTP requests) wait for the ack.
	BatchTimeout time.Duration
	BatchSize    int
	BatchBytes   int64
	// Compression: "lz4" (default), "none", "snappy", "zstd", "gzip".
	Compression string
}

// NewProducer returns a producer to the given brokers. Topics must exist
// (broker.EnsureTopics): auto-creation would hide a misconfigured cluster.
func NewProducer(brokers []string, cfg ProducerConfig) (*Producer, error) {
	// Measured on 2 cores at 100k events/s (internal/broker/doc.go): 10 ms
	// batches halve the CPU of 2 ms ones and add under 10 ms of latency.
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 10 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		// kafka-go allocates (and zeroes) BatchSize message slots for every
		// partition batch it opens; at 100k events/s over ~60 partitions a
		// 10 ms batch holds ~20 records, so a large value only burns CPU.
		cfg.BatchSize = 256
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = DefaultBatchBytes
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Murmur2Balancer{}, // same partition for a key as the Java client
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		MaxAttempts:  maxAttempts,
		WriteTimeout: ioTimeout,
		ReadTimeout:  ioTimeout,
	}
	switch cfg.Compression {
	case "", "lz4":
		// As cheap as none here, and a quarter of the disk and network.
		w.Compression = kafka.Lz4
	case "none":
	case "snappy":
		w.Compression = kafka.Snappy
	case "zstd":
		w.Compression = kafka.Zstd
	case "gzip":
		w.Compression = kafka.Gzip
	default:
		return nil, fmt.Errorf("kafka producer: unknown compression %q (none, snappy, lz4, zstd, gzip)", cfg.Compression)
	}
	return &Producer{w: w}, nil
}

// MaxRecordBytes is the largest key + value of one record the writer
// takes; a larger one fails the whole WriteMessages call.
func (p *Producer) MaxRecordBytes() int { return int(p.w.BatchBytes) - recordOverhead }

// Produce returns once every record is acknowledged, or with an error. An
// error that wraps kafka.WriteErrors came after the writer's own answer for
// every record: its nil entries are the records that were stored. kafka-go
// cannot take back a record handed to its writer: if ctx ends first, the
// error wraps ctx's and any record may still be stored. Callers should let
// ctx outlast WriterBound plus the time a batch waits in the writer's queue,
// and bound the records they have in flight instead.
func (p *Producer) Produce(ctx context.Context, msgs []kafka.Message) error {
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return summarize(len(msgs), err)
	}
	return nil
}

// ProduceError is a produce in which some or all records failed. It wraps the
// first cause and kafka.WriteErrors, whose nil entries are the records that
// were stored.
type ProduceError struct {
	msg    string
	first  error
	Errors kafka.WriteErrors
}

func (e *ProduceError) Error() string   { return e.msg }
func (e *ProduceError) Unwrap() []error { return []error{e.first, e.Errors} }

// summarize turns kafka-go's per-record errors into one readable error: how
// many failed and each distinct cause once, not a thousand copies.
func summarize(n int, err error) error {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return fmt.Errorf("produce %d records: %w", n, err)
	}
	failed := 0
	var first error
	seen := map[string]bool{}
	var causes []string
	for _, e := range we {
		if e == nil {
			continue
		}
		failed++
		if first == nil {
			first = e
		}
		if s := e.Error(); !seen[s] && len(causes) < 3 {
			seen[s] = true
			causes = append(causes, s)
		}
	}
	if first == nil {
		return fmt.Errorf("produce %d records: %w", n, err)
	}
	return &ProduceError{
		msg:   fmt.Sprintf("produce: %d of %d records failed: %s", failed, n, strings.Join(causes, "; ")),
		first: first, Errors: we,
	}
}

// Stats exposes the writer's counters for metrics.
func (p *Producer) Stats() kafka.WriterStats { return p.w.Stats() }

// Close flushes pending records and closes connections.
func (p *Producer) Close() error { return p.w.Close() }
