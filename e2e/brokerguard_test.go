package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// postHeartbeats posts n valid heartbeats with event ids from..from+n-1 over
// 50 devices and fails the test unless all n are accepted.
func postHeartbeats(t *testing.T, p *proc, from, n int64) {
	t.Helper()
	lt := schemas.Lookup("heartbeat")
	if lt == nil {
		t.Fatal("no heartbeat log_type in the catalog")
	}
	ts := time.Now().UnixMilli()
	for i := int64(0); i < n; i += 500 {
		var body []byte
		k := min(500, n-i)
		for j := int64(0); j < k; j++ {
			id := from + i + j
			body = genEvent(body, lt, id, int(id%50), ts)
			body = append(body, '\n')
		}
		r, err := p.post(body, false, testKey)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 200 || int64(r.Accepted) != k {
			t.Fatalf("post: status %d, accepted %d of %d: %+v", r.Status, r.Accepted, k, r)
		}
	}
}

// waitHeartbeats waits until exactly want distinct heartbeats are stored,
// and fails if more rows than distinct events show up.
func waitHeartbeats(t *testing.T, p *proc, want int64) {
	t.Helper()
	q := "SELECT count() AS n, uniqExact(event_id) AS u FROM events WHERE log_type = 'heartbeat'"
	waitFor(t, 60*time.Second, fmt.Sprintf("%d heartbeats stored", want), func() (bool, string) {
		rows, err := p.sql(q)
		if err != nil || len(rows) != 1 {
			return false, fmt.Sprintf("query: %v %v", rows, err)
		}
		n, u := toInt(t, rows[0]["n"]), toInt(t, rows[0]["u"])
		if n != u {
			t.Fatalf("%d rows for %d distinct heartbeats", n, u)
		}
		return u == want, fmt.Sprintf("%d stored", u)
	})
}

// logOffsets returns, per partition of topic, the log start and end.
func logOffsets(t *testing.T, ctx context.Context, cl *kgo.Client, topic string) map[int32][2]int64 {
	t.Helper()
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	mdResp, err := md.RequestWith(ctx, cl)
	if err != nil || len(mdResp.Topics) != 1 || mdResp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %v %+v", topic, err, mdResp)
	}
	out := map[int32][2]int64{}
	for i, ts := range []int64{-2, -1} { // earliest, latest
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, mp := range mdResp.Topics[0].Partitions {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = mp.Partition, ts, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("list offsets: %v", err)
		}
		for _, t2 := range resp.Topics {
			for _, p := range t2.Partitions {
				if p.ErrorCode != 0 {
					t.Fatalf("list offsets of %s/%d: %v", topic, p.Partition, kerr.ErrorForCode(p.ErrorCode))
				}
				o := out[p.Partition]
				o[i] = p.Offset
				out[p.Partition] = o
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("topic %s has no partitions", topic)
	}
	return out
}

// TestBrokerRefusesDestructiveAdmin: a Kafka client on lastmile's broker
// port tries to delete the heartbeat topic, its records, and to set its
// retention to 1 ms. Each is refused with TOPIC_AUTHORIZATION_FAILED, and the
// acknowledged events stay in Kafka and in the store across a restart.
func TestBrokerRefusesDestructiveAdmin(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
	const n = 2000
	postHeartbeats(t, p, 0, n)
	waitHeartbeats(t, p, n)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Kafka), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := schemas.TopicOf("heartbeat")
	before := logOffsets(t, ctx, cl, topic)
	var inKafka int64
	for _, o := range before {
		inKafka += o[1] - o[0]
	}
	if inKafka != n {
		t.Fatalf("%d heartbeats in Kafka, want %d", inKafka, n)
	}

	denied := kerr.TopicAuthorizationFailed.Code
	check := func(what string, code int16, msg *string) {
		t.Helper()
		if code != denied {
			t.Errorf("%s: error code %d (%v), want %v", what, code, kerr.ErrorForCode(code), kerr.TopicAuthorizationFailed)
		}
		if msg != nil && !strings.Contains(*msg, "refused") {
			t.Errorf("%s: error message %q does not say it was refused", what, *msg)
		}
	}

	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TopicNames = []string{topic}
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = kmsg.StringPtr(topic)
	del.Topics = []kmsg.DeleteTopicsRequestTopic{dt}
	delResp, err := del.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("DeleteTopics: %v", err)
	}
	if len(delResp.Topics) != 1 {
		t.Fatalf("DeleteTopics answered %d topics", len(delResp.Topics))
	}
	check("DeleteTopics", delResp.Topics[0].ErrorCode, delResp.Topics[0].ErrorMessage)

	dr := kmsg.NewPtrDeleteRecordsRequest()
	drt := kmsg.NewDeleteRecordsRequestTopic()
	drt.Topic = topic
	for part := range before {
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Partition, rp.Offset = part, -1 // everything up to the high watermark
		drt.Partitions = append(drt.Partitions, rp)
	}
	dr.Topics = append(dr.Topics, drt)
	drResp, err := dr.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	parts := 0
	for _, rt := range drResp.Topics {
		for _, rp := range rt.Partitions {
			parts++
			check(fmt.Sprintf("DeleteRecords %d", rp.Partition), rp.ErrorCode, nil)
		}
	}
	if parts != len(before) {
		t.Errorf("DeleteRecords answered %d partitions, want %d", parts, len(before))
	}

	ac := kmsg.NewPtrAlterConfigsRequest()
	acr := kmsg.NewAlterConfigsRequestResource()
	acr.ResourceType, acr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	acc := kmsg.NewAlterConfigsRequestResourceConfig()
	acc.Name, acc.Value = "retention.ms", kmsg.StringPtr("1")
	acr.Configs = append(acr.Configs, acc)
	ac.Resources = append(ac.Resources, acr)
	acResp, err := ac.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("AlterConfigs: %v", err)
	}
	if len(acResp.Resources) != 1 {
		t.Fatalf("AlterConfigs answered %d resources", len(acResp.Resources))
	}
	check("AlterConfigs retention.ms=1", acResp.Resources[0].ErrorCode, acResp.Resources[0].ErrorMessage)

	iac := kmsg.NewPtrIncrementalAlterConfigsRequest()
	iacr := kmsg.NewIncrementalAlterConfigsRequestResource()
	iacr.ResourceType, iacr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	iacc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	iacc.Name, iacc.Value = "retention.ms", kmsg.StringPtr("1")
	iacr.Configs = append(iacr.Configs, iacc)
	iac.Resources = append(iac.Resources, iacr)
	iacResp, err := iac.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("IncrementalAlterConfigs: %v", err)
	}
	if len(iacResp.Resources) != 1 {
		t.Fatalf("IncrementalAlterConfigs answered %d resources", len(iacResp.Resources))
	}
	check("IncrementalAlterConfigs retention.ms=1", iacResp.Resources[0].ErrorCode, iacResp.Resources[0].ErrorMessage)

	// The topic's retention is unchanged...
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dcr := kmsg.NewDescribeConfigsRequestResource()
	dcr.ResourceType, dcr.ResourceName, dcr.ConfigNames = kmsg.ConfigResourceTypeTopic, topic, []string{"retention.ms"}
	dc.Resources = append(dc.Resources, dcr)
	dcResp, err := dc.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("DescribeConfigs: %v", err)
	}
	for _, r := range dcResp.Resources {
		for _, c := range r.Configs {
			if c.Name == "retention.ms" && c.Value != nil && *c.Value == "1" {
				t.Errorf("retention.ms of %s is now 1", topic)
			}
		}
	}
	// ... and so is its log.
	if after := logOffsets(t, ctx, cl, topic); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("log offsets changed: %v -> %v", before, after)
	}
	cl.Close()

	// After a restart everything is still there and ingest goes on.
	p.stop()
	p2 := start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
	cl2, err := kgo.NewClient(kgo.SeedBrokers(p2.Kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if after := logOffsets(t, ctx, cl2, topic); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("log offsets after restart: %v, before: %v", after, before)
	}
	postHeartbeats(t, p2, n, 500)
	waitHeartbeats(t, p2, n+500)
	if !strings.Contains(p.stderr.String(), "refused destructive admin request") {
		t.Errorf("the refusals are not in the log")
	}
}

// TestOffsetResetIsDetected: the operator's mistake. Events are stored, the
// broker's data dir is lost (as after a recreated topic: offsets start at 0
// again) while the store keeps its rows. New events after the restart get
// offsets the store already holds; they must be stored, not skipped as
// replays, and the reset must be in the log and the metrics.
func TestOffsetResetIsDetected(t *testing.T) {
	topic := schemas.TopicOf("heartbeat")
	for _, tc := range []struct {
		name string
		lose func(kafkaDir string) error
	}{
		// Everything of the broker's is gone, group commits too.
		{"broker data dir", os.RemoveAll},
		// Only the topic's log is gone (kfake's layout: partitions/<topic>-<n>);
		// the group's commits beyond its new end survive.
		{"topic log", func(kdir string) error {
			dirs, err := filepath.Glob(filepath.Join(kdir, "partitions", topic+"-*"))
			if err != nil || len(dirs) == 0 {
				return fmt.Errorf("no partition dirs of %s under %s: %v", topic, kdir, err)
			}
			for _, d := range dirs {
				if err := os.RemoveAll(d); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			p := start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
			const n, m = 2000, 500
			postHeartbeats(t, p, 0, n)
			waitHeartbeats(t, p, n)
			p.stop()

			kdir := filepath.Join(data, "kafka")
			if _, err := os.Stat(filepath.Join(kdir, "broker.lock")); err != nil {
				t.Fatalf("the broker's data is not where this test expects it: %v", err)
			}
			if err := tc.lose(kdir); err != nil {
				t.Fatal(err)
			}

			p2 := start(t, "run", data, "--kafka-listen", "127.0.0.1:0")
			postHeartbeats(t, p2, n, m) // the same 50 devices: the same partitions, offsets from 0
			waitHeartbeats(t, p2, n+m)

			if got := p2.metric(t, "lastmile_processor_offset_resets_total", `topic="`+topic+`"`); got < 1 {
				t.Errorf("lastmile_processor_offset_resets_total{topic=%q} = %v, want >= 1", topic, got)
			}
			if got := p2.metric(t, "lastmile_processor_replayed_skipped_total", `topic="`+topic+`"`); got != 0 {
				t.Errorf("%v messages of the new log skipped as replays", got)
			}
			logs := p2.stderr.String()
			if !strings.Contains(logs, "partition offset reset") || !strings.Contains(logs, "topic="+topic) {
				t.Errorf("the reset is not in the log:\n%s", logs)
			}
		})
	}
}
