package collector

import (
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Admission is the collector's plan for overload: how many bytes of request
// bodies it holds at once, in all and per app, before it answers 429 with
// Retry-After instead of reading more. A request is charged what it declares
// (Content-Length) before a byte of its body is read; a body of unknown or
// growing size (chunked, or gzip as it inflates) is charged ReadStepBytes
// more each time it outgrows its charge, and refused once it cannot be. The
// charge is held until the answer, produce included, so the bodies in memory
// and the records waiting for Kafka are bounded together.
type Admission struct {
	// MaxInflightBytes bounds the body bytes (as sent plus, for gzip, as
	// inflated) of all requests in progress.
	MaxInflightBytes int64
	// MaxInflightBytesPerApp bounds the same for one app (app key), so that
	// one app cannot starve the others.
	MaxInflightBytesPerApp int64
	// MinRequestBytes is charged to every request however small its body:
	// its working state, so that many tiny requests are bounded too.
	MinRequestBytes int64
	// ReadStepBytes is the charge added each time a body of unknown or
	// growing size outgrows what it was charged.
	ReadStepBytes int64
	// RetryAfter is sent with 429 (whole seconds, at least 1).
	RetryAfter time.Duration
	// ReleaseAfterBytes: once no request has been in progress for half a
	// second after the bytes in flight reached this much, the heap's free
	// memory is returned to the OS (debug.FreeOSMemory) instead of lazily
	// over minutes, and again while idle for a minute whenever half this
	// much is free or garbage.
	ReleaseAfterBytes int64
}

// Defaults of the admission plan.
const (
	DefaultMaxInflightBytes  = 128 << 20
	DefaultMinRequestBytes   = 64 << 10
	DefaultReadStepBytes     = 1 << 20
	DefaultRetryAfter        = time.Second
	DefaultReleaseAfterBytes = 32 << 20
)

// withDefaults fills the zero fields: per app, half of the global limit.
func (a Admission) withDefaults() Admission {
	if a.MaxInflightBytes <= 0 {
		a.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if a.MaxInflightBytesPerApp <= 0 {
		a.MaxInflightBytesPerApp = a.MaxInflightBytes / 2
	}
	if a.MaxInflightBytesPerApp > a.MaxInflightBytes {
		a.MaxInflightBytesPerApp = a.MaxInflightBytes
	}
	if a.MinRequestBytes <= 0 {
		a.MinRequestBytes = DefaultMinRequestBytes
	}
	if a.ReadStepBytes <= 0 {
		a.ReadStepBytes = DefaultReadStepBytes
	}
	if a.RetryAfter < time.Second {
		a.RetryAfter = DefaultRetryAfter
	}
	if a.ReleaseAfterBytes <= 0 {
		a.ReleaseAfterBytes = DefaultReleaseAfterBytes
	}
	return a
}

// Limits named in a refusal (the "limit" field of a 429 and the metric label).
const (
	limitInflight       = "max_inflight_bytes"
	limitInflightPerApp = "max_inflight_bytes_per_app"
)

// admitter keeps the counts of the plan.
type admitter struct {
	plan    Admission
	global  atomic.Int64
	perApp  map[string]*atomic.Int64 // by app_id; fixed at New
	peak    atomic.Int64             // most bytes in flight since the last release
	seq     atomic.Uint64            // requests admitted so far
	pending atomic.Bool              // a release is scheduled
	metrics *Metrics
}

func newAdmitter(plan Admission, appIDs map[string]string, m *Metrics) *admitter {
	a := &admitter{plan: plan, perApp: map[string]*atomic.Int64{"": new(atomic.Int64)}, metrics: m}
	for _, id := range appIDs {
		if a.perApp[id] == nil {
			a.perApp[id] = new(atomic.Int64)
		}
	}
	return a
}

// charge is one request's share of the plan.
type charge struct {
	a   *admitter
	app *atomic.Int64
	n   int64
}

// admit charges n bytes (at least MinRequestBytes) to app, or names the
// limit it would break.
func (a *admitter) admit(appID string, n int64) (*charge, string) {
	c := &charge{a: a, app: a.perApp[appID]}
	if c.app == nil { // an app id not in the keys given to New: share one counter
		c.app = a.perApp[""]
	}
	if limit := c.grow(max(n, a.plan.MinRequestBytes)); limit != "" {
		a.metrics.Refused.WithLabelValues(limit).Inc()
		return nil, limit
	}
	a.seq.Add(1)
	a.metrics.Admitted.Inc()
	return c, ""
}

// grow adds n bytes to the charge, or names the limit it would break.
func (c *charge) grow(n int64) string {
	a := c.a
	if c.app.Add(n) > a.plan.MaxInflightBytesPerApp {
		c.app.Add(-n)
		return limitInflightPerApp
	}
	g := a.global.Add(n)
	if g > a.plan.MaxInflightBytes {
		a.global.Add(-n)
		c.app.Add(-n)
		return limitInflight
	}
	c.n += n
	a.metrics.InflightBytes.Add(float64(n))
	for p := a.peak.Load(); g > p && !a.peak.CompareAndSwap(p, g); p = a.peak.Load() {
	}
	return ""
}

// ensure grows the charge to cover have+want bytes, in ReadStepBytes steps.
func (c *charge) ensure(total int64) string {
	if total <= c.n {
		return ""
	}
	return c.grow(max(total-c.n, c.a.plan.ReadStepBytes))
}

// release returns the charge. When the collector falls idle after a burst,
// the memory the burst used goes back to the OS: Go returns freed pages on
// its own only over minutes, so RSS would stay at the peak.
func (c *charge) release() {
	a := c.a
	c.app.Add(-c.n)
	g := a.global.Add(-c.n)
	a.metrics.InflightBytes.Sub(float64(c.n))
	c.n = 0
	if g == 0 && a.peak.Load() >= a.plan.ReleaseAfterBytes && a.pending.CompareAndSwap(false, true) {
		// Only after a quiet spell, so that steady traffic, a burst's tail
		// or the next burst do not pay for a full collection.
		time.AfterFunc(500*time.Millisecond, func() { a.releaseWhileIdle(a.seq.Load(), releaseChecks) })
	}
}

// After a burst, memory is checked this many times, every releaseEvery,
// while no request comes: the burst's records are still being served to
// consumers (by the embedded broker, in the same process) for a while after
// the last answer, and that garbage would otherwise stay resident until the
// runtime's next forced collection, minutes later.
const (
	releaseChecks = 12
	releaseEvery  = 5 * time.Second
)

var releaseSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/free:bytes"},    // free, not yet returned to the OS
	{Name: "/memory/classes/heap/objects:bytes"}, // live and not yet collected
	{Name: "/gc/heap/live:bytes"},                // live at the last collection
}

// releaseWhileIdle returns free heap memory to the OS when there is enough
// of it (or enough garbage), then checks again, until a request comes or
// the checks run out.
func (a *admitter) releaseWhileIdle(seq uint64, checks int) {
	if a.global.Load() != 0 || a.seq.Load() != seq {
		a.pending.Store(false) // busy again: the next idle moment starts over
		return
	}
	if checks == releaseChecks {
		a.peak.Store(0)
	}
	metrics.Read(releaseSamples)
	free := releaseSamples[0].Value.Uint64()
	garbage := releaseSamples[1].Value.Uint64() - min(releaseSamples[1].Value.Uint64(), releaseSamples[2].Value.Uint64())
	if checks == releaseChecks || free+garbage >= uint64(a.plan.ReleaseAfterBytes)/2 {
		debug.FreeOSMemory()
		a.metrics.MemoryReleases.Inc()
	}
	if checks <= 1 {
		a.pending.Store(false)
		return
	}
	time.AfterFunc(releaseEvery, func() { a.releaseWhileIdle(seq, checks-1) })
}
