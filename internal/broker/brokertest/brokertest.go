// Package brokertest starts a real embedded broker for a test, with topics.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/broker"
)

// Start runs an embedded broker in a temporary directory until the test ends
// and creates the topics with the given partition count. It returns the
// bootstrap address.
func Start(t testing.TB, partitions int, topics ...string) string {
	t.Helper()
	b, err := broker.StartEmbedded(broker.EmbeddedConfig{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Partitions: partitions}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	specs := make([]broker.TopicSpec, 0, len(topics))
	for _, n := range topics {
		specs = append(specs, broker.TopicSpec{Name: n, Partitions: partitions})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, []string{b.Addr()}, specs); err != nil {
		t.Fatal(err)
	}
	return b.Addr()
}
