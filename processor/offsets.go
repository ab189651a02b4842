package processor

import (
	"context"
	"sort"
	"time"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/broker"
)

// A partition's offsets normally only grow, one by one. When they do not,
// events were lost or are about to be mistaken for ones already stored: the
// processor says so in the log and in these metrics, never in silence.
//
//   - reset: the log is not the one the store's rows came from (the topic was
//     deleted and recreated, or the broker's data dir replaced). Its messages
//     are new data: they are stored, not skipped as replays.
//   - gap: offsets jumped forward (retention or DeleteRecords removed
//     messages before they were processed); those messages are lost.
//   - rewind: offsets went back within this run (a redelivery after a
//     rebalance or failed commit); event_id deduplication drops the repeats.
type offsetMetrics struct {
	resets      *prometheus.CounterVec
	gaps        *prometheus.CounterVec
	gapMessages *prometheus.CounterVec
	rewinds     *prometheus.CounterVec
}

func newOffsetMetrics(reg prometheus.Registerer) *offsetMetrics {
	cv := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_processor_" + name, Help: help}, []string{"topic"})
	}
	m := &offsetMetrics{
		resets: cv("offset_resets_total",
			"Partitions whose log went back below what the store holds (topic recreated or truncated); their messages are stored as new."),
		gaps: cv("offset_gaps_total",
			"Forward jumps in a partition's offsets: messages removed (retention, DeleteRecords) before they were processed."),
		gapMessages: cv("offset_gap_messages_total",
			"Messages skipped over by offset gaps: lost before the processor read them."),
		rewinds: cv("offset_rewinds_total",
			"Times a partition's offsets went back within a run (redelivery); repeats are dropped by event_id."),
	}
	reg.MustRegister(m.resets, m.gaps, m.gapMessages, m.rewinds)
	return m
}

// checkOffsets compares, at start, what the store holds of each partition
// with the partition's log and group commit in Kafka. It must run after
// loadStored and before the reader starts. Kafka being unreachable is not
// fatal: the processor runs as before and the runtime checks still apply.
func (w *fetcher) checkOffsets(ctx context.Context) {
	om := w.p.metrics.offsets
	var offs map[string][]broker.PartitionOffsets
	var err error
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	for try := 0; try < 5; try++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		offs, err = broker.Offsets(cctx, w.p.cfg.Brokers, w.p.cfg.Group, w.p.Topics())
		cancel()
		if err == nil || !backoff.wait(ctx) {
			break
		}
	}
	if err != nil {
		level.Warn(w.logger).Log("msg", "could not read partition offsets to check for resets and gaps at start", "err", err)
		return
	}
	topics := make([]string, 0, len(offs))
	for t := range offs {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, topic := range topics {
		rewind := map[int]int64{}
		for _, po := range offs[topic] {
			tp := topicPartition{topic, po.Partition}
			stored, ok := w.stored[tp]
			if !ok {
				stored = -1
			}
			kv := []any{"topic", topic, "partition", po.Partition, "stored_max_offset", stored,
				"log_start", po.Start, "log_end", po.End, "committed", po.Committed}
			switch {
			case stored >= po.End || po.Committed > po.End:
				// The store (or the group) has seen offsets this log
				// never reached: it is a new log.
				level.Error(w.logger).Log(append([]any{"msg", "partition offset reset: the log is behind what was already stored or committed " +
					"(topic recreated or broker data replaced); its messages are stored as new, not skipped as replays"}, kv...)...)
				om.resets.WithLabelValues(topic).Inc()
				delete(w.stored, tp)
				if po.Committed > po.End {
					rewind[po.Partition] = po.Start
				}
			case readFrom(po.Committed, stored) >= 0 && readFrom(po.Committed, stored) < po.Start:
				n := po.Start - readFrom(po.Committed, stored)
				level.Error(w.logger).Log(append([]any{"msg", "partition offset gap: messages were removed before they were processed (retention or record deletion); they are lost",
					"lost_messages", n}, kv...)...)
				om.gaps.WithLabelValues(topic).Inc()
				om.gapMessages.WithLabelValues(topic).Add(float64(n))
			}
		}
		if len(rewind) == 0 {
			continue
		}
		// A reader whose commit lies beyond the end waits until the new
		// log grows past it, then skips what came before.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := broker.Rewind(cctx, w.p.cfg.Brokers, w.p.cfg.Group, topic, rewind)
		cancel()
		if err != nil {
			level.Error(w.logger).Log("msg", "could not move the group's commits back to the log start after a reset; the partitions wait until the log passes them",
				"topic", topic, "err", err)
		}
	}
}

// readFrom is where the group resumes in a partition: its commit, else (the
// commit lost in a crash after the insert) just past what is stored; -1 when
// neither is known.
func readFrom(committed, stored int64) int64 {
	if committed >= 0 {
		return committed
	}
	if stored >= 0 {
		return stored + 1
	}
	return -1
}

// track checks msg's offset against the previous one of its partition,
// before the replay check reads p.stored.
func (w *fetcher) track(p *partState, msg *kafka.Message) {
	off := msg.Offset
	switch {
	case p.next < 0:
		p.firstSeen = off
	case off > p.next:
		w.jumped(p, off)
	case off < p.firstSeen:
		// A redelivery restarts at a commit made in this run, never
		// below the first offset read: this is a new log.
		level.Error(w.logger).Log("msg", "partition offset reset while running: offsets went below the first one read in this run "+
			"(topic recreated); its messages are stored as new, not skipped as replays",
			"topic", p.tp.topic, "partition", p.tp.partition, "first_offset_this_run", p.firstSeen, "last_offset", p.next-1, "offset", off)
		w.p.metrics.offsets.resets.WithLabelValues(p.tp.topic).Inc()
		p.stored, p.firstSeen = -1, off
	case off < p.next:
		level.Warn(w.logger).Log("msg", "partition offsets went back (redelivery); repeats are dropped by event_id",
			"topic", p.tp.topic, "partition", p.tp.partition, "expected_offset", p.next, "offset", off)
		w.p.metrics.offsets.rewinds.WithLabelValues(p.tp.topic).Inc()
	}
	p.next = off + 1
}

// jumped handles offsets that skipped forward from p.next to off. The
// skipped messages are lost only if they are gone from the log; if they are
// still there, another member of the group read them (the partition came
// back after a rebalance) and this is no gap.
func (w *fetcher) jumped(p *partState, off int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	offs, err := broker.Offsets(ctx, w.p.cfg.Brokers, w.p.cfg.Group, []string{p.tp.topic})
	cancel()
	kv := []any{"topic", p.tp.topic, "partition", p.tp.partition, "expected_offset", p.next, "offset", off}
	start := int64(-1)
	for _, po := range offs[p.tp.topic] {
		if po.Partition == p.tp.partition {
			start = po.Start
		}
	}
	switch {
	case err != nil || start < 0:
		// Unknown: count it, since a silent loss is the worse mistake.
		start = off
		kv = append(kv, "log_start", "unknown", "err", err)
	case start <= p.next:
		level.Info(w.logger).Log(append([]any{"msg", "partition offsets skipped forward over messages still in the log (read by another member of the group)"}, kv...)...)
		return
	default:
		kv = append(kv, "log_start", start)
	}
	n := min(start, off) - p.next
	level.Error(w.logger).Log(append([]any{"msg", "partition offset gap: messages were removed before they were processed (retention or record deletion); they are lost",
		"lost_messages", n}, kv...)...)
	w.p.metrics.offsets.gaps.WithLabelValues(p.tp.topic).Inc()
	w.p.metrics.offsets.gapMessages.WithLabelValues(p.tp.topic).Add(float64(n))
}
