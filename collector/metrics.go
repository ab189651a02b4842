package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Metrics of the collector, registered on the caller's registry.
type Metrics struct {
	Received        *prometheus.CounterVec
	Rejected        *prometheus.CounterVec
	SampledOut      *prometheus.CounterVec
	Produced        *prometheus.CounterVec
	ProduceErrors   prometheus.Counter
	ProduceDuration prometheus.Histogram
	Requests        *prometheus.CounterVec
	RequestDuration prometheus.Histogram
	Admitted        prometheus.Counter
	Refused         *prometheus.CounterVec
	InflightBytes   prometheus.Gauge
	MemoryReleases  prometheus.Counter
	// CMCDSessions counts the CMCD sessions a collector started to map, by
	// how: "start" (heard from its start) or "joined" (first heard mid-play:
	// no play_start or first_frame from the pair; many mean the reports of
	// one play are spread over replicas, see docs/players.md).
	CMCDSessions *prometheus.CounterVec
	// CMCDOpenSessions and CMCDPairLag, per partition this replica pairs:
	// the open sessions, and the reports read since the committed offset
	// (what a restart reads again; it grows with the oldest open session).
	CMCDOpenSessions, CMCDPairLag *prometheus.GaugeVec

	// Children resolved once: WithLabelValues on every event is measurable.
	receivedBy, sampledBy, producedBy map[string]prometheus.Counter
}

// NewMetrics creates and registers the collector's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_events_received_total", Help: "Valid events received, by log_type.",
		}, []string{"log_type"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_events_rejected_total", Help: "Events refused, by reason code.",
		}, []string{"reason"}),
		SampledOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_events_sampled_out_total", Help: "Valid events dropped by sampling, by log_type.",
		}, []string{"log_type"}),
		Produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_events_produced_total", Help: "Records acknowledged by Kafka, by topic.",
		}, []string{"topic"}),
		ProduceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lastmile_collector_produce_errors_total", Help: "Requests answered 503 because Kafka did not acknowledge.",
		}),
		ProduceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lastmile_collector_produce_duration_seconds", Help: "Time from handing a request's records to Kafka to their acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_requests_total", Help: "HTTP requests to the collector, by status code.",
		}, []string{"code"}),
		RequestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lastmile_collector_request_duration_seconds", Help: "Duration of successful POST /v1/events requests.",
			Buckets: prometheus.DefBuckets,
		}),
		Admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lastmile_collector_admitted_total", Help: "Event posts admitted by the admission plan (their body bytes charged).",
		}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_refused_total", Help: "Event posts answered 429 by the admission plan, by the limit they ran into.",
		}, []string{"limit"}),
		InflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lastmile_collector_inflight_bytes", Help: "Body bytes charged to the event posts in progress (admission plan).",
		}),
		MemoryReleases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lastmile_collector_memory_releases_total", Help: "Times the collector returned free heap memory to the OS after a burst.",
		}),
		CMCDSessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_collector_cmcd_sessions_total", Help: "CMCD plays this collector began mapping, by how: start (heard from the start) or joined (first heard mid-play).",
		}, []string{"how"}),
		CMCDOpenSessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lastmile_collector_cmcd_open_sessions", Help: "Open CMCD sessions (not stopped, heard within the idle timeout) the pairing stage holds, by partition of the cmcd_reports topic.",
		}, []string{"partition"}),
		CMCDPairLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lastmile_collector_cmcd_uncommitted_reports", Help: "CMCD reports the pairing stage read past its committed offset (re-read after a restart), by partition.",
		}, []string{"partition"}),
		receivedBy: map[string]prometheus.Counter{},
		sampledBy:  map[string]prometheus.Counter{},
		producedBy: map[string]prometheus.Counter{},
	}
	reg.MustRegister(m.Received, m.Rejected, m.SampledOut, m.Produced, m.ProduceErrors, m.ProduceDuration, m.Requests, m.RequestDuration,
		m.Admitted, m.Refused, m.InflightBytes, m.MemoryReleases, m.CMCDSessions, m.CMCDOpenSessions, m.CMCDPairLag)
	m.CMCDSessions.WithLabelValues("start")
	m.CMCDSessions.WithLabelValues("joined")
	for _, l := range []string{limitInflight, limitInflightPerApp} {
		m.Refused.WithLabelValues(l)
	}
	for _, lt := range schemas.Catalog {
		m.receivedBy[lt.Name] = m.Received.WithLabelValues(lt.Name)
		m.sampledBy[lt.Name] = m.SampledOut.WithLabelValues(lt.Name)
		t := schemas.TopicOf(lt.Name)
		m.producedBy[t] = m.Produced.WithLabelValues(t)
	}
	m.producedBy[schemas.RejectedTopic] = m.Produced.WithLabelValues(schemas.RejectedTopic)
	m.producedBy[CMCDReportsTopic] = m.Produced.WithLabelValues(CMCDReportsTopic)
	return m
}

func (m *Metrics) received(lt string)   { m.receivedBy[lt].Inc() }
func (m *Metrics) sampledOut(lt string) { m.sampledBy[lt].Inc() }
func (m *Metrics) produced(t string)    { m.producedBy[t].Inc() }
