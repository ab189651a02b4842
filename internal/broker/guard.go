package broker

import (
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// refusedKeys are the admin requests the embedded broker refuses from every
// client. The listener has no authentication, so anyone who reaches it could
// otherwise delete topics or records, shorten retention, or rewrite group
// offsets, and acknowledged events would be lost. lastmile itself needs only
// CreateTopics, Metadata, ListOffsets, OffsetFetch, produce and consumer-group
// requests; reads (Describe*, List*) stay open.
var refusedKeys = []kmsg.Key{
	kmsg.DeleteTopics,
	kmsg.DeleteRecords,
	kmsg.AlterConfigs,
	kmsg.IncrementalAlterConfigs,
	kmsg.CreatePartitions, // changes which partition a key goes to: breaks per-device ordering
	kmsg.DeleteGroups,
	kmsg.OffsetDelete,
	kmsg.AlterPartitionAssignments,
	kmsg.ElectLeaders,
	kmsg.AlterReplicaLogDirs,
	kmsg.CreateACLs,
	kmsg.DeleteACLs,
	kmsg.AlterClientQuotas,
	kmsg.AlterUserSCRAMCredentials,
	kmsg.UpdateFeatures,
	kmsg.WriteTxnMarkers, // inter-broker: could abort or commit other producers' transactions
	kmsg.AlterShareGroupOffsets,
	kmsg.DeleteShareGroupOffsets,
}

// RefusedMessage is the error message of a refused request, for the
// response versions that carry one.
const RefusedMessage = "refused by lastmile's embedded broker: its listener has no authentication, so destructive admin requests are not served (docs/security.md)"

// guard makes c refuse refusedKeys. Each refusal answers every topic, group
// or resource of the request with an authorization error, so clients report
// a clear, non-retriable error instead of a hang or a closed connection.
func guard(c *kfake.Cluster, logger log.Logger) {
	lim := &logLimiter{every: time.Second, last: map[kmsg.Key]time.Time{}, dropped: map[kmsg.Key]int{}}
	for _, key := range refusedKeys {
		key := key
		var fn func(kmsg.Request) (kmsg.Response, error, bool)
		fn = func(req kmsg.Request) (kmsg.Response, error, bool) {
			// Re-added for the next request rather than kept with
			// KeepControl: kfake remembers, per control function, the
			// last request of every connection it served, forever; a
			// fresh function each time keeps that from growing with
			// every connection a client opens.
			c.ControlKey(int16(key), fn)
			if n, ok := lim.allow(key); ok {
				level.Warn(logger).Log("msg", "refused destructive admin request from a client", "request", key.Name(), "version", req.GetVersion(), "suppressed_since_last", n)
			}
			return refuse(req), nil, true
		}
		c.ControlKey(int16(key), fn)
	}
}

// logLimiter keeps a client that repeats a refused request from flooding
// the log: one line per request kind per interval, with the count skipped.
type logLimiter struct {
	mu      sync.Mutex
	every   time.Duration
	last    map[kmsg.Key]time.Time
	dropped map[kmsg.Key]int
}

func (l *logLimiter) allow(k kmsg.Key) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.last[k]) >= l.every {
		n := l.dropped[k]
		l.last[k], l.dropped[k] = now, 0
		return n, true
	}
	l.dropped[k]++
	return 0, false
}

// refuse builds the response to req that denies every item it names.
func refuse(req kmsg.Request) kmsg.Response {
	msg := kmsg.StringPtr(RefusedMessage)
	topicErr := kerr.TopicAuthorizationFailed.Code
	groupErr := kerr.GroupAuthorizationFailed.Code
	clusterErr := kerr.ClusterAuthorizationFailed.Code
	resourceErr := func(t kmsg.ConfigResourceType) int16 {
		if t == kmsg.ConfigResourceTypeTopic {
			return topicErr
		}
		return clusterErr
	}
	resp := req.ResponseKind() // carries the request's version
	switch req := req.(type) {
	case *kmsg.DeleteTopicsRequest:
		r := resp.(*kmsg.DeleteTopicsResponse)
		for _, name := range req.TopicNames { // v0-5
			t := kmsg.NewDeleteTopicsResponseTopic()
			t.Topic, t.ErrorCode, t.ErrorMessage = kmsg.StringPtr(name), topicErr, msg
			r.Topics = append(r.Topics, t)
		}
		for _, rt := range req.Topics { // v6+
			t := kmsg.NewDeleteTopicsResponseTopic()
			t.Topic, t.TopicID, t.ErrorCode, t.ErrorMessage = rt.Topic, rt.TopicID, topicErr, msg
			r.Topics = append(r.Topics, t)
		}
	case *kmsg.DeleteRecordsRequest:
		r := resp.(*kmsg.DeleteRecordsResponse)
		for _, rt := range req.Topics {
			t := kmsg.NewDeleteRecordsResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewDeleteRecordsResponseTopicPartition()
				p.Partition, p.LowWatermark, p.ErrorCode = rp.Partition, -1, topicErr
				t.Partitions = append(t.Partitions, p)
			}
			r.Topics = append(r.Topics, t)
		}
	case *kmsg.AlterConfigsRequest:
		r := resp.(*kmsg.AlterConfigsResponse)
		for _, rr := range req.Resources {
			x := kmsg.NewAlterConfigsResponseResource()
			x.ResourceType, x.ResourceName = rr.ResourceType, rr.ResourceName
			x.ErrorCode, x.ErrorMessage = resourceErr(rr.ResourceType), msg
			r.Resources = append(r.Resources, x)
		}
	case *kmsg.IncrementalAlterConfigsRequest:
		r := resp.(*kmsg.IncrementalAlterConfigsResponse)
		for _, rr := range req.Resources {
			x := kmsg.NewIncrementalAlterConfigsResponseResource()
			x.ResourceType, x.ResourceName = rr.ResourceType, rr.ResourceName
			x.ErrorCode, x.ErrorMessage = resourceErr(rr.ResourceType), msg
			r.Resources = append(r.Resources, x)
		}
	case *kmsg.CreatePartitionsRequest:
		r := resp.(*kmsg.CreatePartitionsResponse)
		for _, rt := range req.Topics {
			t := kmsg.NewCreatePartitionsResponseTopic()
			t.Topic, t.ErrorCode, t.ErrorMessage = rt.Topic, topicErr, msg
			r.Topics = append(r.Topics, t)
		}
	case *kmsg.DeleteGroupsRequest:
		r := resp.(*kmsg.DeleteGroupsResponse)
		for _, g := range req.Groups {
			x := kmsg.NewDeleteGroupsResponseGroup()
			x.Group, x.ErrorCode = g, groupErr
			r.Groups = append(r.Groups, x)
		}
	case *kmsg.OffsetDeleteRequest:
		r := resp.(*kmsg.OffsetDeleteResponse)
		r.ErrorCode = groupErr
	case *kmsg.AlterPartitionAssignmentsRequest:
		r := resp.(*kmsg.AlterPartitionAssignmentsResponse)
		r.ErrorCode, r.ErrorMessage = clusterErr, msg
	case *kmsg.ElectLeadersRequest:
		r := resp.(*kmsg.ElectLeadersResponse)
		r.ErrorCode = clusterErr // v1+; per partition below for v0
		for _, rt := range req.Topics {
			t := kmsg.NewElectLeadersResponseTopic()
			t.Topic = rt.Topic
			for _, p := range rt.Partitions {
				x := kmsg.NewElectLeadersResponseTopicPartition()
				x.Partition, x.ErrorCode, x.ErrorMessage = p, clusterErr, msg
				t.Partitions = append(t.Partitions, x)
			}
			r.Topics = append(r.Topics, t)
		}
	case *kmsg.AlterReplicaLogDirsRequest:
		r := resp.(*kmsg.AlterReplicaLogDirsResponse)
		for _, d := range req.Dirs {
			for _, rt := range d.Topics {
				t := kmsg.NewAlterReplicaLogDirsResponseTopic()
				t.Topic = rt.Topic
				for _, p := range rt.Partitions {
					x := kmsg.NewAlterReplicaLogDirsResponseTopicPartition()
					x.Partition, x.ErrorCode = p, clusterErr
					t.Partitions = append(t.Partitions, x)
				}
				r.Topics = append(r.Topics, t)
			}
		}
	case *kmsg.CreateACLsRequest:
		r := resp.(*kmsg.CreateACLsResponse)
		for range req.Creations {
			x := kmsg.NewCreateACLsResponseResult()
			x.ErrorCode, x.ErrorMessage = clusterErr, msg
			r.Results = append(r.Results, x)
		}
	case *kmsg.DeleteACLsRequest:
		r := resp.(*kmsg.DeleteACLsResponse)
		for range req.Filters {
			x := kmsg.NewDeleteACLsResponseResult()
			x.ErrorCode, x.ErrorMessage = clusterErr, msg
			r.Results = append(r.Results, x)
		}
	case *kmsg.AlterClientQuotasRequest:
		r := resp.(*kmsg.AlterClientQuotasResponse)
		for _, e := range req.Entries {
			x := kmsg.NewAlterClientQuotasResponseEntry()
			x.ErrorCode, x.ErrorMessage = clusterErr, msg
			for _, en := range e.Entity {
				y := kmsg.NewAlterClientQuotasResponseEntryEntity()
				y.Type, y.Name = en.Type, en.Name
				x.Entity = append(x.Entity, y)
			}
			r.Entries = append(r.Entries, x)
		}
	case *kmsg.AlterUserSCRAMCredentialsRequest:
		r := resp.(*kmsg.AlterUserSCRAMCredentialsResponse)
		users := make([]string, 0, len(req.Deletions)+len(req.Upsertions))
		for _, d := range req.Deletions {
			users = append(users, d.Name)
		}
		for _, u := range req.Upsertions {
			users = append(users, u.Name)
		}
		for _, u := range users {
			x := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			x.User, x.ErrorCode, x.ErrorMessage = u, clusterErr, msg
			r.Results = append(r.Results, x)
		}
	case *kmsg.UpdateFeaturesRequest:
		r := resp.(*kmsg.UpdateFeaturesResponse)
		r.ErrorCode, r.ErrorMessage = clusterErr, msg
		for _, f := range req.FeatureUpdates {
			x := kmsg.NewUpdateFeaturesResponseResult()
			x.Feature, x.ErrorCode, x.ErrorMessage = f.Feature, clusterErr, msg
			r.Results = append(r.Results, x)
		}
	case *kmsg.WriteTxnMarkersRequest:
		r := resp.(*kmsg.WriteTxnMarkersResponse)
		for _, m := range req.Markers {
			x := kmsg.NewWriteTxnMarkersResponseMarker()
			x.ProducerID = m.ProducerID
			for _, rt := range m.Topics {
				t := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
				t.Topic = rt.Topic
				for _, p := range rt.Partitions {
					y := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
					y.Partition, y.ErrorCode = p, clusterErr
					t.Partitions = append(t.Partitions, y)
				}
				x.Topics = append(x.Topics, t)
			}
			r.Markers = append(r.Markers, x)
		}
	case *kmsg.AlterShareGroupOffsetsRequest:
		r := resp.(*kmsg.AlterShareGroupOffsetsResponse)
		r.ErrorCode, r.ErrorMessage = groupErr, msg
	case *kmsg.DeleteShareGroupOffsetsRequest:
		r := resp.(*kmsg.DeleteShareGroupOffsetsResponse)
		r.ErrorCode, r.ErrorMessage = groupErr, msg
	}
	return resp
}
