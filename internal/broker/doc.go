// Package broker wires the embedded Kafka-protocol broker (kfake with on-disk
// persistence) and holds the topic admin helpers that work against any Kafka:
// the embedded one on a single machine or a real cluster at scale.
//
// kafka-go client settings measured against the embedded broker (see
// bench_test.go; 500-byte events, 4 partitions, 2 cores, 100k events/s):
//
//   - Writer: RequiredAcks RequireAll, BatchSize 2000, BatchTimeout 10ms,
//     BatchBytes default (1 MiB, matching message.max.bytes), Compression
//     Lz4. kafka-go allocates BatchSize messages per batch up front, so
//     BatchSize 10000 roughly doubles the CPU at this rate. WriteMessages
//     blocks for about BatchTimeout, so callers need concurrency (one call
//     per HTTP request is fine). Set AllowAutoTopicCreation or call
//     EnsureTopics first: kafka-go does not ask for auto-creation by default.
//   - Reader (GroupID): MinBytes 1, MaxBytes 10 MiB, MaxWait 250ms,
//     QueueCapacity 1000, CommitInterval 0 (commit after the store accepted
//     the rows), JoinGroupBackoff 500ms (the 5s default delays recovery after
//     a broker restart). Treat a CommitMessages error as retryable: kafka-go
//     rejoins and redelivers from the last commit.
//   - Close consumers (Reader.Close, which leaves the group) before the
//     embedded broker: on a clean shutdown kfake restores group members, and a
//     member that never left holds up the next join for its session timeout.
package broker
