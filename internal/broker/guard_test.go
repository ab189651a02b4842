package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestGuardRefusesDestructiveAdmin sends each refused request with franz-go
// over the real socket, twice (the guard must stay in place after the first
// refusal), and checks the answer's error codes and that the data is intact;
// CreateTopics, which lastmile's own startup uses, still works.
func TestGuardRefusesDestructiveAdmin(t *testing.T) {
	e := startEmbedded(t, EmbeddedConfig{})
	ctx := ctxT(t, 30*time.Second)
	const topic = "guarded"
	if err := EnsureTopics(ctx, []string{e.Addr()}, []TopicSpec{{Name: topic, Partitions: 2}}); err != nil {
		t.Fatalf("CreateTopics must still work: %v", err)
	}
	produce(t, ctx, e.Addr(), topic, 0, 100)
	before, err := Offsets(ctx, []string{e.Addr()}, "g", []string{topic})
	if err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	topicDenied, clusterDenied, groupDenied := kerr.TopicAuthorizationFailed.Code, kerr.ClusterAuthorizationFailed.Code, kerr.GroupAuthorizationFailed.Code
	cases := []struct {
		name  string
		req   func() kmsg.Request
		codes func(kmsg.Response) []int16 // every error code of the answer
		want  int16
	}{
		{"DeleteTopics", func() kmsg.Request {
			r := kmsg.NewPtrDeleteTopicsRequest()
			r.TopicNames = []string{topic}
			rt := kmsg.NewDeleteTopicsRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			r.Topics = []kmsg.DeleteTopicsRequestTopic{rt}
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, t := range r.(*kmsg.DeleteTopicsResponse).Topics {
				c = append(c, t.ErrorCode)
			}
			return
		}, topicDenied},
		{"DeleteRecords", func() kmsg.Request {
			r := kmsg.NewPtrDeleteRecordsRequest()
			rt := kmsg.NewDeleteRecordsRequestTopic()
			rt.Topic = topic
			for p := int32(0); p < 2; p++ {
				rp := kmsg.NewDeleteRecordsRequestTopicPartition()
				rp.Partition, rp.Offset = p, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, t := range r.(*kmsg.DeleteRecordsResponse).Topics {
				for _, p := range t.Partitions {
					c = append(c, p.ErrorCode)
				}
			}
			return
		}, topicDenied},
		{"AlterConfigs", func() kmsg.Request {
			r := kmsg.NewPtrAlterConfigsRequest()
			rr := kmsg.NewAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
			c := kmsg.NewAlterConfigsRequestResourceConfig()
			c.Name, c.Value = "retention.ms", kmsg.StringPtr("1")
			rr.Configs = append(rr.Configs, c)
			r.Resources = append(r.Resources, rr)
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, x := range r.(*kmsg.AlterConfigsResponse).Resources {
				c = append(c, x.ErrorCode)
			}
			return
		}, topicDenied},
		{"IncrementalAlterConfigs", func() kmsg.Request {
			r := kmsg.NewPtrIncrementalAlterConfigsRequest()
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, topic
			c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			c.Name, c.Value = "retention.ms", kmsg.StringPtr("1")
			rr.Configs = append(rr.Configs, c)
			r.Resources = append(r.Resources, rr)
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, x := range r.(*kmsg.IncrementalAlterConfigsResponse).Resources {
				c = append(c, x.ErrorCode)
			}
			return
		}, topicDenied},
		{"IncrementalAlterConfigs broker", func() kmsg.Request {
			r := kmsg.NewPtrIncrementalAlterConfigsRequest()
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, ""
			c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			c.Name, c.Value = "log.retention.ms", kmsg.StringPtr("1")
			rr.Configs = append(rr.Configs, c)
			r.Resources = append(r.Resources, rr)
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, x := range r.(*kmsg.IncrementalAlterConfigsResponse).Resources {
				c = append(c, x.ErrorCode)
			}
			return
		}, clusterDenied},
		{"CreatePartitions", func() kmsg.Request {
			r := kmsg.NewPtrCreatePartitionsRequest()
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = topic, 8
			r.Topics = append(r.Topics, rt)
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, x := range r.(*kmsg.CreatePartitionsResponse).Topics {
				c = append(c, x.ErrorCode)
			}
			return
		}, topicDenied},
		{"DeleteGroups", func() kmsg.Request {
			r := kmsg.NewPtrDeleteGroupsRequest()
			r.Groups = []string{"g"}
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, x := range r.(*kmsg.DeleteGroupsResponse).Groups {
				c = append(c, x.ErrorCode)
			}
			return
		}, groupDenied},
		{"OffsetDelete", func() kmsg.Request {
			r := kmsg.NewPtrOffsetDeleteRequest()
			r.Group = "g"
			return r
		}, func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.OffsetDeleteResponse).ErrorCode} }, groupDenied},
		{"CreateACLs", func() kmsg.Request {
			r := kmsg.NewPtrCreateACLsRequest()
			r.Creations = append(r.Creations, kmsg.NewCreateACLsRequestCreation())
			return r
		}, func(r kmsg.Response) (c []int16) {
			for _, x := range r.(*kmsg.CreateACLsResponse).Results {
				c = append(c, x.ErrorCode)
			}
			return
		}, clusterDenied},
	}
	for _, tc := range cases {
		for try := 0; try < 2; try++ {
			// kgo routes each request to the broker that must answer it (the
			// controller, a group coordinator, partition leaders).
			resp, err := cl.Request(ctx, tc.req())
			if err != nil {
				t.Fatalf("%s #%d: %v", tc.name, try, err)
			}
			codes := tc.codes(resp)
			if len(codes) == 0 {
				t.Fatalf("%s #%d: answer names nothing: %+v", tc.name, try, resp)
			}
			for _, c := range codes {
				if c != tc.want {
					t.Errorf("%s #%d: error code %d (%v), want %d (%v)", tc.name, try, c, kerr.ErrorForCode(c), tc.want, kerr.ErrorForCode(tc.want))
				}
			}
		}
	}

	after, err := Offsets(ctx, []string{e.Addr()}, "g", []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	if len(after[topic]) != 2 {
		t.Fatalf("topic %s after the refused requests: %+v", topic, after)
	}
	for i, p := range after[topic] {
		if p != before[topic][i] {
			t.Errorf("partition %d changed: %+v -> %+v", p.Partition, before[topic][i], p)
		}
	}
	if got := readAll(t, ctx, e.Addr(), topic, 2); len(got) != 100 {
		t.Errorf("read %d distinct messages back, want 100", len(got))
	}
}

// TestRewindMovesAnEmptyGroupsCommit: the processor's way out of commits
// beyond the end of a recreated log is allowed (OffsetCommit is not refused).
func TestRewindMovesAnEmptyGroupsCommit(t *testing.T) {
	e := startEmbedded(t, EmbeddedConfig{})
	ctx := ctxT(t, 30*time.Second)
	if err := EnsureTopics(ctx, []string{e.Addr()}, []TopicSpec{{Name: "rw", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, e.Addr(), "rw", 0, 10)
	for _, want := range []int64{9, 3} {
		if err := Rewind(ctx, []string{e.Addr()}, "g", "rw", map[int]int64{0: want}); err != nil {
			t.Fatal(err)
		}
		offs, err := Offsets(ctx, []string{e.Addr()}, "g", []string{"rw"})
		if err != nil {
			t.Fatal(err)
		}
		if got := offs["rw"][0]; got.Committed != want || got.Start != 0 || got.End != 10 {
			t.Errorf("after Rewind to %d: %+v", want, got)
		}
	}
}
