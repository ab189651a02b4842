package kafkaio

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/broker/brokertest"
)

// TestMaxRecordAgreesWithBroker: the largest record the writer takes is one
// the embedded broker (message.max.bytes) stores, uncompressed, and one byte
// more is refused by the writer itself, before anything is sent.
func TestMaxRecordAgreesWithBroker(t *testing.T) {
	addr := brokertest.Start(t, 1, "t")
	p, err := NewProducer([]string{addr}, ProducerConfig{Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.MaxRecordBytes() != DefaultMaxRecordBytes {
		t.Fatalf("MaxRecordBytes %d, DefaultMaxRecordBytes %d", p.MaxRecordBytes(), DefaultMaxRecordBytes)
	}
	key := []byte("device-1")
	max := kafka.Message{Topic: "t", Key: key, Value: bytes.Repeat([]byte("x"), p.MaxRecordBytes()-len(key))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Produce(ctx, []kafka.Message{max}); err != nil {
		t.Fatalf("a record of exactly MaxRecordBytes: %v", err)
	}
	over := max
	over.Value = append(over.Value, 'x')
	err = p.Produce(ctx, []kafka.Message{over})
	var tooLarge kafka.MessageTooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("a record of MaxRecordBytes+1: %v, want the writer's MessageTooLargeError", err)
	}
}

// TestProduceErrorKeepsPerRecordErrors: a partial failure tells which
// records were stored.
func TestProduceErrorKeepsPerRecordErrors(t *testing.T) {
	cause := errors.New("broker gone")
	err := summarize(3, kafka.WriteErrors{nil, cause, nil})
	var we kafka.WriteErrors
	if !errors.As(err, &we) || len(we) != 3 || we[0] != nil || we[1] != cause || we[2] != nil {
		t.Fatalf("%v: WriteErrors %v", err, we)
	}
	if !errors.Is(err, cause) {
		t.Errorf("%v does not wrap its cause", err)
	}
	if got := err.Error(); got != "produce: 1 of 3 records failed: broker gone" {
		t.Errorf("message %q", got)
	}
}
