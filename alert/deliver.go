package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/internal/retry"
)

// Receiver is a destination of alerts.
type Receiver interface {
	Name() string
	// Send delivers one notification; an error wrapped with Permanent is
	// not retried.
	Send(ctx context.Context, n Notice) error
	// Repeats says the receiver wants firing alerts again every
	// Plan.Resend (Alertmanager), not only their changes.
	Repeats() bool
}

// Notice is one notification: alerts that changed to Event, or (Repeat)
// the firing alerts sent again.
type Notice struct {
	Event  string // firing or resolved
	Repeat bool
	Alerts []Alert
	// ValidFor is how long a firing alert stands without news: its endsAt
	// for Alertmanager.
	ValidFor time.Duration
	at       time.Time
}

// StatusError is a receiver's non-2xx answer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// postJSON posts v to url. A 4xx answer other than 408 and 429 is permanent:
// the same request would be refused again.
func postJSON(ctx context.Context, c *http.Client, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return retry.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return retry.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	se := &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return retry.Permanent(se)
	}
	return se
}

// Alertmanager posts to an Alertmanager's v2 API.
type Alertmanager struct {
	URL    string // the Alertmanager's base URL
	Client *http.Client
}

// Name is the receiver's name in the delivery log.
func (a *Alertmanager) Name() string { return "alertmanager:" + a.URL }

// Repeats: Alertmanager resolves an alert whose endsAt passes, so firing
// alerts are sent again.
func (a *Alertmanager) Repeats() bool { return true }

// amAlert is an alert of Alertmanager's v2 API (postableAlert).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Send posts the alerts to /api/v2/alerts: firing ones with endsAt
// ValidFor ahead, resolved ones with their end.
func (a *Alertmanager) Send(ctx context.Context, n Notice) error {
	var out []amAlert
	for _, al := range n.Alerts {
		end := n.at.Add(n.ValidFor)
		if al.EndsAt != nil {
			end = *al.EndsAt
		}
		out = append(out, amAlert{Labels: al.Labels, Annotations: al.Annotations, StartsAt: al.StartsAt, EndsAt: end})
	}
	u := strings.TrimRight(a.URL, "/")
	if !strings.HasSuffix(u, "/api/v2/alerts") {
		u += "/api/v2/alerts"
	}
	return postJSON(ctx, a.Client, u, out)
}

// Webhook posts plain JSON: {"status": "firing", "alerts": [...]}, the
// alerts as GET /api/v1/alerts shows them.
type Webhook struct {
	URL    string
	Client *http.Client
}

// Name is the receiver's name in the delivery log.
func (w *Webhook) Name() string { return "webhook:" + w.URL }

// Repeats: a webhook gets each change once.
func (w *Webhook) Repeats() bool { return false }

// WebhookBody is what a webhook receives.
type WebhookBody struct {
	Version string  `json:"version"`
	Status  string  `json:"status"`
	Alerts  []Alert `json:"alerts"`
}

// Send posts the notice.
func (w *Webhook) Send(ctx context.Context, n Notice) error {
	return postJSON(ctx, w.Client, w.URL, WebhookBody{Version: "1", Status: n.Event, Alerts: n.Alerts})
}

// DispatchPlan is how notices are delivered.
type DispatchPlan struct {
	// Queue is how many notices wait per receiver; beyond it the oldest
	// waiting one is dropped (and counted): a receiver down for long must
	// not hold memory without bound.
	Queue int
	// Timeout bounds one attempt, so a hanging receiver is an error to
	// retry, not a stuck worker.
	Timeout time.Duration
	Backoff retry.Backoff
	// ValidFor: see Notice.ValidFor.
	ValidFor time.Duration
}

// DefaultBackoff retries a delivery for about five minutes.
var DefaultBackoff = retry.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Attempts: 15}

// DefaultDispatchPlan: 256 notices per receiver, 10 s per attempt.
var DefaultDispatchPlan = DispatchPlan{Queue: 256, Timeout: 10 * time.Second, Backoff: DefaultBackoff, ValidFor: 4 * time.Minute}

// Dispatcher delivers notices to several receivers at once, each from its
// own queue and worker, so that one down or hanging receiver delays no
// other; every delivery is written to the delivery log.
type Dispatcher struct {
	plan   DispatchPlan
	st     Store // delivery log; nil keeps none
	logger log.Logger
	queues []*queue
	wg     sync.WaitGroup
	cancel context.CancelFunc
	// draining: workers return once their queue is empty.
	draining atomic.Bool
}

type queue struct {
	r       Receiver
	mu      sync.Mutex
	pending []Notice
	wake    chan struct{}
	dropped int
	sent    int
}

// NewDispatcher returns a dispatcher for rs; Start runs its workers.
func NewDispatcher(plan DispatchPlan, rs []Receiver, st Store, logger log.Logger) *Dispatcher {
	if plan.Queue <= 0 {
		plan.Queue = DefaultDispatchPlan.Queue
	}
	if plan.Timeout <= 0 {
		plan.Timeout = DefaultDispatchPlan.Timeout
	}
	if plan.ValidFor <= 0 {
		plan.ValidFor = DefaultDispatchPlan.ValidFor
	}
	if plan.Backoff.Initial <= 0 {
		plan.Backoff = DefaultBackoff // a zero wait would spin on a receiver that is down
	}
	d := &Dispatcher{plan: plan, st: st, logger: logger}
	for _, r := range rs {
		d.queues = append(d.queues, &queue{r: r, wake: make(chan struct{}, 1)})
	}
	return d
}

// Start runs one worker per receiver until ctx ends; Wait waits for them.
func (d *Dispatcher) Start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	for _, q := range d.queues {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.work(ctx, q) }()
	}
}

// Wait returns when the workers have stopped.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// Stop lets the workers deliver what is queued for up to grace (a resolved
// notice queued just before a shutdown still goes out), then stops them.
func (d *Dispatcher) Stop(grace time.Duration) {
	d.draining.Store(true)
	for _, q := range d.queues {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		level.Warn(d.logger).Log("msg", "alert notices left undelivered at shutdown", "grace", grace)
	}
	d.cancel()
	<-done
}

// Notify queues a state change for every receiver.
func (d *Dispatcher) Notify(event string, alerts []Alert) {
	d.enqueue(Notice{Event: event, Alerts: alerts}, false)
}

// Repeat queues the firing alerts for the receivers that want them again.
func (d *Dispatcher) Repeat(alerts []Alert) {
	d.enqueue(Notice{Event: StateFiring, Repeat: true, Alerts: alerts}, true)
}

func (d *Dispatcher) enqueue(n Notice, repeatOnly bool) {
	n.ValidFor = d.plan.ValidFor
	for _, q := range d.queues {
		if repeatOnly && !q.r.Repeats() {
			continue
		}
		d.enqueueTo(q, n)
	}
}

func (d *Dispatcher) enqueueTo(q *queue, n Notice) {
	q.mu.Lock()
	if len(q.pending) >= d.plan.Queue {
		q.pending = q.pending[1:]
		q.dropped++
		level.Warn(d.logger).Log("msg", "alert receiver queue full: dropped its oldest notice", "receiver", q.r.Name(), "dropped", q.dropped)
	}
	q.pending = append(q.pending, n)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Redeliver queues again, for the receivers that do not get repeats
// (webhooks), the current notice of every alert active since since that
// the delivery log does not show delivered to them: a notice queued or
// being retried when the role was killed goes out after its restart. A
// notice delivered just before a kill, whose log row was not written yet,
// goes out twice: webhooks get each notice at least once.
func (d *Dispatcher) Redeliver(ctx context.Context, st Reader, since time.Time) (int, error) {
	as, err := ReadAlerts(ctx, st, Filter{From: since})
	if err != nil {
		return 0, fmt.Errorf("redeliver: %w", err)
	}
	n := 0
	for _, q := range d.queues {
		if q.r.Repeats() {
			continue
		}
		for _, a := range as {
			if delivered(a.Deliveries, q.r.Name(), a.State) {
				continue
			}
			a.Deliveries = nil
			d.enqueueTo(q, Notice{Event: a.State, Alerts: []Alert{a}, ValidFor: d.plan.ValidFor})
			n++
		}
	}
	return n, nil
}

func delivered(ds []Delivery, receiver, event string) bool {
	for _, dl := range ds {
		if dl.Receiver == receiver && dl.Event == event && dl.Delivered {
			return true
		}
	}
	return false
}

// Stats are a receiver's counts: notices delivered and dropped.
type Stats struct {
	Receiver      string
	Sent, Dropped int
	Queued        int
}

// Stats returns every receiver's counts.
func (d *Dispatcher) Stats() []Stats {
	var out []Stats
	for _, q := range d.queues {
		q.mu.Lock()
		out = append(out, Stats{Receiver: q.r.Name(), Sent: q.sent, Dropped: q.dropped, Queued: len(q.pending)})
		q.mu.Unlock()
	}
	return out
}

func (d *Dispatcher) work(ctx context.Context, q *queue) {
	for {
		q.mu.Lock()
		var n Notice
		ok := len(q.pending) > 0
		if ok {
			n, q.pending = q.pending[0], q.pending[1:]
		}
		q.mu.Unlock()
		if !ok {
			if d.draining.Load() {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			}
			continue
		}
		d.deliver(ctx, q, n)
	}
}

// deliver sends one notice with retries and logs the outcome per alert:
// after every failed attempt (so a receiver that hangs or refuses shows in
// the delivery log at once, not when it is given up) and at the end.
func (d *Dispatcher) deliver(ctx context.Context, q *queue, n Notice) {
	var last error
	attempts, err := retry.Do(ctx, d.plan.Backoff, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, d.plan.Timeout)
		defer cancel()
		n.at = time.Now()
		return q.r.Send(actx, n)
	}, func(attempt int, err error) {
		last = err
		level.Warn(d.logger).Log("msg", "alert delivery failed", "receiver", q.r.Name(), "event", n.Event, "attempt", attempt, "err", err)
		d.logDelivery(ctx, n, Delivery{Receiver: q.r.Name(), Event: n.Event, Attempts: attempt, LastStatus: statusOf(err),
			LastError: err.Error(), At: time.Now()})
	})
	if err == nil {
		q.mu.Lock()
		q.sent++
		q.mu.Unlock()
	} else {
		level.Error(d.logger).Log("msg", "alert delivery given up", "receiver", q.r.Name(), "event", n.Event, "attempts", attempts, "err", err)
	}
	del := Delivery{Receiver: q.r.Name(), Event: n.Event, Attempts: attempts, Delivered: err == nil, At: time.Now()}
	del.LastStatus = statusOf(err)
	if err == nil && last != nil {
		del.LastError = "earlier attempt: " + last.Error()
	} else if err != nil {
		del.LastError = err.Error()
	}
	d.logDelivery(ctx, n, del)
}

// logDelivery writes del for every alert of n to the delivery log.
func (d *Dispatcher) logDelivery(ctx context.Context, n Notice, del Delivery) {
	if d.st == nil || ctx.Err() != nil {
		return
	}
	for i := range n.Alerts {
		if werr := writeDelivery(ctx, d.st, &n.Alerts[i], del); werr != nil {
			level.Warn(d.logger).Log("msg", "cannot write the alert delivery log", "err", werr)
		}
	}
}

// statusOf names an attempt's outcome: the HTTP status, or what failed.
func statusOf(err error) string {
	var se *StatusError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se):
		return strconv.Itoa(se.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// Receivers builds the receivers of --alertmanager and --webhook URLs
// (each flag repeatable, each value a comma list).
func Receivers(alertmanagers, webhooks []string, timeout time.Duration) ([]Receiver, error) {
	c := &http.Client{Timeout: timeout}
	var out []Receiver
	for _, kind := range []struct {
		urls []string
		make func(u string) Receiver
	}{
		{alertmanagers, func(u string) Receiver { return &Alertmanager{URL: u, Client: c} }},
		{webhooks, func(u string) Receiver { return &Webhook{URL: u, Client: c} }},
	} {
		for _, s := range kind.urls {
			for _, u := range strings.Split(s, ",") {
				if u = strings.TrimSpace(u); u == "" {
					continue
				}
				if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
					return nil, fmt.Errorf("receiver %q: want an http:// or https:// URL", u)
				}
				out = append(out, kind.make(u))
			}
		}
	}
	return out, nil
}
