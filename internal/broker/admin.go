package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic EnsureTopics creates when it is missing.
type TopicSpec struct {
	Name string
	// Partitions <= 0 takes the broker default (num.partitions).
	Partitions int
	// ReplicationFactor <= 0 takes the broker default
	// (default.replication.factor); needs Kafka 2.4+.
	ReplicationFactor int
	// RetentionMs > 0 sets retention.ms; 0 keeps the broker default; -1
	// keeps data forever.
	RetentionMs int64
	// Configs are extra topic configs (for example "cleanup.policy").
	Configs map[string]string
}

// adminClient returns a client with its own transport; the caller closes it.
// A shared transport would keep pooled connections to a broker that has since
// restarted and fail the next call with "unexpected EOF"; admin calls are rare
// (startup, one Lag per scrape), so a fresh dial each time costs nothing.
func adminClient(bootstrap []string) (*kafka.Client, func(), error) {
	if len(bootstrap) == 0 {
		return nil, nil, errors.New("no bootstrap address")
	}
	tr := &kafka.Transport{DialTimeout: 5 * time.Second, ClientID: "lastmile-admin"}
	return &kafka.Client{Addr: kafka.TCP(bootstrap...), Transport: tr}, tr.CloseIdleConnections, nil
}

// EnsureTopics creates the topics that do not exist yet, against any Kafka.
// Existing topics are left as they are (their partitions and configs are not
// changed).
func EnsureTopics(ctx context.Context, bootstrap []string, topics []TopicSpec) error {
	if len(topics) == 0 {
		return nil
	}
	cl, done, err := adminClient(bootstrap)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	defer done()
	req := &kafka.CreateTopicsRequest{Topics: make([]kafka.TopicConfig, 0, len(topics))}
	for _, t := range topics {
		if t.Name == "" {
			return errors.New("create topics: empty topic name")
		}
		tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: -1, ReplicationFactor: -1}
		if t.Partitions > 0 {
			tc.NumPartitions = t.Partitions
		}
		if t.ReplicationFactor > 0 {
			tc.ReplicationFactor = t.ReplicationFactor
		}
		if t.RetentionMs != 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{
				ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(t.RetentionMs, 10)})
		}
		keys := make([]string, 0, len(t.Configs))
		for k := range t.Configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: t.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for _, t := range req.Topics {
		if err := resp.Errors[t.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Topic, err))
		}
	}
	return errors.Join(errs...)
}

// PartitionOffsets is where one partition's log starts and ends, and where
// a consumer group stands in it.
type PartitionOffsets struct {
	Partition int
	// Start is the log start offset: the first offset still readable
	// (retention and DeleteRecords move it up).
	Start int64
	// End is the high watermark: the offset the next message will get.
	End int64
	// Committed is the group's committed offset, -1 when it has none.
	Committed int64
}

// Lag returns the consumer lag of group per topic: the sum over partitions of
// the high watermark minus the committed offset. Partitions without a commit
// (or with a commit below the log start, after retention) count from the log
// start offset. Topics that do not exist are left out of the map.
func Lag(ctx context.Context, bootstrap []string, group string, topics []string) (map[string]int64, error) {
	offs, err := Offsets(ctx, bootstrap, group, topics)
	if err != nil {
		return nil, fmt.Errorf("consumer lag: %w", err)
	}
	lag := make(map[string]int64, len(offs))
	for t, ps := range offs {
		var sum int64
		for _, p := range ps {
			from := max(p.Start, p.Committed)
			if d := p.End - from; d > 0 {
				sum += d
			}
		}
		lag[t] = sum
	}
	return lag, nil
}

// Offsets returns, per topic, each partition's log start, high watermark and
// the committed offset of group. Topics that do not exist are left out.
func Offsets(ctx context.Context, bootstrap []string, group string, topics []string) (map[string][]PartitionOffsets, error) {
	cl, done, err := adminClient(bootstrap)
	if err != nil {
		return nil, err
	}
	defer done()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	parts := make(map[string][]int, len(md.Topics))
	offReqs := make(map[string][]kafka.OffsetRequest, len(md.Topics))
	for _, t := range md.Topics {
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			offReqs[t.Name] = append(offReqs[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	out := make(map[string][]PartitionOffsets, len(parts))
	if len(parts) == 0 {
		return out, nil
	}

	committed, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return nil, fmt.Errorf("offset fetch for group %s: %w", group, err)
	}
	// Kafka answers -1 offsets for an unknown group; kfake answers
	// GROUP_ID_NOT_FOUND. Both mean nothing was committed yet.
	if committed.Error != nil && !errors.Is(committed.Error, kafka.GroupIdNotFound) {
		return nil, fmt.Errorf("offset fetch for group %s: %w", group, committed.Error)
	}
	commits := make(map[string]map[int]int64, len(committed.Topics))
	for t, ps := range committed.Topics {
		m := make(map[int]int64, len(ps))
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("committed offset of %s/%d: %w", t, p.Partition, p.Error)
			}
			m[p.Partition] = p.CommittedOffset
		}
		commits[t] = m
	}

	offs, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: offReqs})
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	for t := range parts {
		got := offs.Topics[t]
		if len(got) != len(parts[t]) {
			return nil, fmt.Errorf("list offsets of %s: got %d of %d partitions", t, len(got), len(parts[t]))
		}
		ps := make([]PartitionOffsets, 0, len(got))
		for _, p := range got {
			if p.Error != nil {
				return nil, fmt.Errorf("list offsets of %s/%d: %w", t, p.Partition, p.Error)
			}
			c, ok := commits[t][p.Partition]
			if !ok || c < 0 {
				c = -1
			}
			ps = append(ps, PartitionOffsets{Partition: p.Partition, Start: p.FirstOffset, End: p.LastOffset, Committed: c})
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].Partition < ps[j].Partition })
		out[t] = ps
	}
	return out, nil
}

// Rewind sets group's committed offsets (partition -> offset) of topic, as a
// commit from outside the group: the broker accepts it only while the group
// has no members. It is for a consumer that finds its commits beyond the end
// of a recreated topic, where a reader would otherwise wait until the new log
// grew past them.
func Rewind(ctx context.Context, bootstrap []string, group, topic string, offsets map[int]int64) error {
	cl, done, err := adminClient(bootstrap)
	if err != nil {
		return fmt.Errorf("rewind group %s: %w", group, err)
	}
	defer done()
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for p, o := range offsets {
		req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: p, Offset: o})
	}
	resp, err := cl.OffsetCommit(ctx, req)
	if err != nil {
		return fmt.Errorf("rewind group %s on %s: %w", group, topic, err)
	}
	var errs []error
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			errs = append(errs, fmt.Errorf("rewind group %s on %s/%d: %w", group, topic, p.Partition, p.Error))
		}
	}
	return errors.Join(errs...)
}
