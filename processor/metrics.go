package processor

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/internal/metriclabel"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// maxUnknownFieldNames bounds the label values of unknown-field counting, so
// a sender inventing field names cannot blow up the metrics.
const maxUnknownFieldNames = 200

// Metrics of the processor.
type Metrics struct {
	Consumed       *prometheus.CounterVec
	Inserted       *prometheus.CounterVec
	Rejected       *prometheus.CounterVec
	Duplicates     *prometheus.CounterVec
	Replayed       *prometheus.CounterVec
	UnknownFields  *prometheus.CounterVec
	Panics         *prometheus.CounterVec
	InsertErrors   prometheus.Counter
	SessionRows    prometheus.Counter
	InsertDuration prometheus.Histogram
	FlushDuration  prometheus.Histogram
	BatchRows      prometheus.Histogram
	IngestDelay    prometheus.Histogram
	LastFlush      *prometheus.GaugeVec
	Lag            *prometheus.GaugeVec
	StoreUp        prometheus.Gauge

	offsets *offsetMetrics
	dedup   *dedupMetrics

	mu       sync.Mutex
	unknowns map[string]prometheus.Counter
	topics   map[string]*topicMetrics
}

// NewMetrics creates and registers the processor's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_processor_" + name, Help: help}, labels)
	}
	hv := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lastmile_processor_" + name, Help: help, Buckets: buckets})
	}
	m := &Metrics{
		Consumed:      cv("messages_consumed_total", "Messages fetched from Kafka.", "topic"),
		Inserted:      cv("rows_inserted_total", "Rows the store accepted.", "topic"),
		Rejected:      cv("events_rejected_total", "Events sent to the dead-letter topic, by reason.", "topic", "reason"),
		Duplicates:    cv("duplicates_dropped_total", "Events (and dead-letter records, on the rejected topic) dropped because their app_id and event_id were stored within the dedup window.", "topic"),
		Replayed:      cv("replayed_skipped_total", "Messages skipped after a restart because the store already held them.", "topic"),
		UnknownFields: cv("unknown_fields_dropped_total", "Fields not in the catalog, dropped, by log_type and field name.", "log_type", "field"),
		Panics:        cv("message_panics_total", "Messages whose handling panicked; each is dead-lettered with reason internal_error and the processor goes on.", "topic"),
		InsertErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_processor_insert_errors_total",
			Help: "Failed store inserts (each is retried)."}),
		SessionRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_processor_trace_session_rows_total",
			Help: "Rows written to trace_sessions, the index of play sessions for trace lookups (a few per session)."}),
		InsertDuration: hv("insert_duration_seconds", "Time of one successful store insert.", prometheus.ExponentialBuckets(0.005, 2, 12)),
		FlushDuration:  hv("flush_duration_seconds", "Time of one flush: insert, dead-letter, commit.", prometheus.ExponentialBuckets(0.005, 2, 12)),
		BatchRows:      hv("batch_rows", "Rows per flushed batch.", prometheus.ExponentialBuckets(1, 4, 10)),
		IngestDelay: hv("batch_delay_seconds", "From a batch's first message to its commit: how long the processor adds to ingest-to-queryable.",
			prometheus.ExponentialBuckets(0.05, 2, 10)),
		LastFlush: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lastmile_processor_last_flush_timestamp_seconds",
			Help: "When the topic last flushed successfully."}, []string{"topic"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lastmile_processor_consumer_lag",
			Help: "Messages in Kafka not yet committed by the processor's group, per topic."}, []string{"topic"}),
		StoreUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_processor_store_up",
			Help: "1 when the last store insert succeeded, 0 while inserts fail."}),
		unknowns: map[string]prometheus.Counter{},
		topics:   map[string]*topicMetrics{},
	}
	m.StoreUp.Set(1)
	m.offsets = newOffsetMetrics(reg)
	m.dedup = newDedupMetrics(reg)
	reg.MustRegister(m.Consumed, m.Inserted, m.Rejected, m.Duplicates, m.Replayed, m.UnknownFields, m.Panics,
		m.InsertErrors, m.SessionRows, m.InsertDuration, m.FlushDuration, m.BatchRows, m.IngestDelay, m.LastFlush, m.Lag, m.StoreUp)
	return m
}

// topicMetrics holds one topic's resolved children; a worker touches only its own.
// Every label value that can come from outside (topic, reason, log_type,
// field name) goes through metriclabel.Value.
type topicMetrics struct {
	m              *Metrics
	topic, logType string
	consumed       prometheus.Counter
	inserted       prometheus.Counter
	duplicates     prometheus.Counter
	replayed       prometheus.Counter
	lastFlush      prometheus.Gauge
	panics         prometheus.Counter
}

func (m *Metrics) forTopic(topic string) *topicMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.topics[topic]; ok {
		return t
	}
	label := metriclabel.Value(topic)
	lt := metriclabel.Value(strings.TrimPrefix(topic, schemas.TopicPrefix))
	t := &topicMetrics{
		m: m, topic: label, logType: lt,
		consumed:   m.Consumed.WithLabelValues(label),
		inserted:   m.Inserted.WithLabelValues(label),
		duplicates: m.Duplicates.WithLabelValues(label),
		replayed:   m.Replayed.WithLabelValues(label),
		lastFlush:  m.LastFlush.WithLabelValues(label),
		panics:     m.Panics.WithLabelValues(label),
	}
	m.topics[topic] = t
	return t
}

func (t *topicMetrics) rejected(reason string) prometheus.Counter {
	return t.m.Rejected.WithLabelValues(t.topic, metriclabel.Value(reason))
}

func (t *topicMetrics) unknownField(name string) {
	m := t.m
	// Keyed by the cleaned name: the map holds at most
	// maxUnknownFieldNames keys of at most metriclabel.MaxLen bytes.
	name = metriclabel.Value(name)
	key := t.logType + "\x00" + name
	m.mu.Lock()
	c, ok := m.unknowns[key]
	if !ok {
		if len(m.unknowns) >= maxUnknownFieldNames {
			key, name = t.logType+"\x00_other", "_other"
			c, ok = m.unknowns[key]
		}
		if !ok {
			c = m.UnknownFields.WithLabelValues(t.logType, name)
			m.unknowns[key] = c
		}
	}
	m.mu.Unlock()
	c.Inc()
}
