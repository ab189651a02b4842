package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/retry"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

var fastBackoff = retry.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 5}

func TestPostJSONClassifiesStatus(t *testing.T) {
	for _, c := range []struct {
		code      int
		permanent bool
	}{{400, true}, {404, true}, {408, false}, {429, false}, {500, false}, {503, false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(c.code) }))
		err := postJSON(context.Background(), srv.Client(), srv.URL, []int{1})
		srv.Close()
		var se *StatusError
		if !errors.As(err, &se) || se.Code != c.code || retry.IsPermanent(err) != c.permanent || statusOf(err) != itoa(c.code) {
			t.Errorf("%d: %v (permanent %t), want permanent %t", c.code, err, retry.IsPermanent(err), c.permanent)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// recorder is a receiver endpoint that records what arrives.
type recorder struct {
	mu     sync.Mutex
	got    []WebhookBody
	amGot  [][]amAlert
	arrive chan struct{}
}

func newRecorder() *recorder { return &recorder{arrive: make(chan struct{}, 100)} }

func (rc *recorder) webhook(w http.ResponseWriter, r *http.Request) {
	var b WebhookBody
	json.NewDecoder(r.Body).Decode(&b)
	rc.mu.Lock()
	rc.got = append(rc.got, b)
	rc.mu.Unlock()
	rc.arrive <- struct{}{}
}

func (rc *recorder) alertmanager(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v2/alerts" {
		http.NotFound(w, r)
		return
	}
	var b []amAlert
	json.NewDecoder(r.Body).Decode(&b)
	rc.mu.Lock()
	rc.amGot = append(rc.amGot, b)
	rc.mu.Unlock()
	rc.arrive <- struct{}{}
}

func (rc *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-rc.arrive:
		case <-time.After(30 * time.Second): // generous: only a broken dispatcher waits this long
			t.Fatalf("only %d of %d notices arrived", i, n)
		}
	}
}

func testAlert(fp string) Alert {
	return Alert{Fingerprint: fp, Rule: "R", State: StateFiring, Labels: map[string]string{"alertname": "R", "node_id": fp},
		Annotations: map[string]string{"summary": "s"}, StartsAt: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
}

// TestDispatcherIsolatesReceivers: one receiver refuses (503, then 400),
// one hangs; the good webhook and the good Alertmanager still get every
// notice, in order, while the hanging one is still on its first.
func TestDispatcherIsolatesReceivers(t *testing.T) {
	good := newRecorder()
	goodSrv := httptest.NewServer(http.HandlerFunc(good.webhook))
	defer goodSrv.Close()
	am := newRecorder()
	amSrv := httptest.NewServer(http.HandlerFunc(am.alertmanager))
	defer amSrv.Close()
	var refused atomic.Int32
	refuseSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refused.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusBadRequest) // permanent: no more tries
	}))
	defer refuseSrv.Close()
	release := make(chan struct{})
	var hung atomic.Int32
	hangSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hangSrv.Close()
	defer close(release)

	c := &http.Client{}
	rs := []Receiver{&Webhook{URL: hangSrv.URL, Client: c}, &Webhook{URL: refuseSrv.URL, Client: c},
		&Webhook{URL: goodSrv.URL, Client: c}, &Alertmanager{URL: amSrv.URL, Client: c}}
	d := NewDispatcher(DispatchPlan{Queue: 16, Timeout: time.Hour, Backoff: fastBackoff, ValidFor: 4 * time.Minute}, rs, nil, log.NewNopLogger())
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); d.Wait() }()
	d.Start(ctx)

	for _, fp := range []string{"a", "b", "c"} {
		d.Notify(StateFiring, []Alert{testAlert(fp)})
	}
	resolved := testAlert("a")
	resolved.State = StateResolved
	end := resolved.StartsAt.Add(5 * time.Minute)
	resolved.EndsAt = &end
	d.Notify(StateResolved, []Alert{resolved})
	d.Repeat([]Alert{testAlert("b"), testAlert("c")})

	good.wait(t, 4) // webhooks take no repeats
	am.wait(t, 5)
	good.mu.Lock()
	var order []string
	for _, b := range good.got {
		order = append(order, b.Status+":"+b.Alerts[0].Fingerprint)
	}
	good.mu.Unlock()
	if got := join(order); got != "firing:a firing:b firing:c resolved:a" {
		t.Errorf("good webhook got %s", got)
	}
	am.mu.Lock()
	if len(am.amGot) != 5 || len(am.amGot[4]) != 2 {
		t.Errorf("alertmanager got %d posts, the last with %d alerts; want 5, the repeat with 2", len(am.amGot), len(am.amGot[len(am.amGot)-1]))
	}
	// Resolved carries its end; firing carries an end ValidFor ahead.
	if r := am.amGot[3][0]; !r.EndsAt.Equal(end) || r.Labels["node_id"] != "a" {
		t.Errorf("resolved alert posted as %+v", r)
	}
	if f := am.amGot[0][0]; f.EndsAt.Before(time.Now().Add(3*time.Minute)) || !f.StartsAt.Equal(testAlert("a").StartsAt) {
		t.Errorf("firing alert posted as %+v", f)
	}
	am.mu.Unlock()
	// The hanging receiver is still on its first attempt of its first
	// notice; the refusing one stopped at the 400.
	if n := hung.Load(); n != 1 {
		t.Errorf("hanging receiver got %d requests, want 1 (still waiting)", n)
	}
	// The good ones count a notice sent once its answer is read, just
	// after the handler saw it.
	st := d.Stats()
	for deadline := time.Now().Add(30 * time.Second); (st[2].Sent < 4 || st[3].Sent < 5) && time.Now().Before(deadline); st = d.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if st[0].Sent != 0 || st[0].Queued != 3 {
		t.Errorf("hanging receiver: %+v, want 0 sent, 1 in flight and 3 queued", st[0])
	}
	if st[2].Sent != 4 || st[3].Sent != 5 {
		t.Errorf("good receivers: %+v %+v", st[2], st[3])
	}
}

func join(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// TestDispatcherQueueBound: a receiver that never answers keeps at most
// Queue notices, dropping the oldest.
func TestDispatcherQueueBound(t *testing.T) {
	d := NewDispatcher(DispatchPlan{Queue: 2}, []Receiver{&Webhook{URL: "http://127.0.0.1:1"}}, nil, log.NewNopLogger())
	for _, fp := range []string{"a", "b", "c", "d"} { // not started: nothing is taken
		d.Notify(StateFiring, []Alert{testAlert(fp)})
	}
	if st := d.Stats()[0]; st.Queued != 2 || st.Dropped != 2 {
		t.Errorf("%+v, want 2 queued and 2 dropped", st)
	}
	q := d.queues[0]
	if q.pending[0].Alerts[0].Fingerprint != "c" {
		t.Errorf("kept %s first, want the newest two (c, d)", q.pending[0].Alerts[0].Fingerprint)
	}
}

// TestDispatcherStopDrains: notices queued when the dispatcher stops are
// still delivered within the grace; a receiver that hangs is given up at
// its end.
func TestDispatcherStopDrains(t *testing.T) {
	good := newRecorder()
	goodSrv := httptest.NewServer(http.HandlerFunc(good.webhook))
	defer goodSrv.Close()
	hangSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server notices the client leave only after the body
		<-r.Context().Done()
	}))
	defer hangSrv.Close()
	c := &http.Client{}
	d := NewDispatcher(DispatchPlan{Queue: 16, Timeout: time.Hour, Backoff: fastBackoff}, []Receiver{&Webhook{URL: goodSrv.URL, Client: c}, &Webhook{URL: hangSrv.URL, Client: c}}, nil, log.NewNopLogger())
	for _, fp := range []string{"a", "b", "c"} {
		d.Notify(StateFiring, []Alert{testAlert(fp)})
	}
	d.Start(context.Background())
	d.Stop(2 * time.Second) // returns: the hanging receiver is cut off at the grace
	good.mu.Lock()
	n := len(good.got)
	good.mu.Unlock()
	if n != 3 {
		t.Errorf("%d of 3 queued notices delivered before the stop returned", n)
	}
}

// TestRedeliver: after a restart the webhooks get the current notice of
// every alert the delivery log does not show delivered to them (queued or
// being retried at a kill), and nothing else; Alertmanager, which gets
// repeats anyway, gets nothing from it.
func TestRedeliver(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	mk := func(fp, state string, ends *time.Time) Alert {
		a := testAlert("redeliver-" + fp)
		a.State, a.StartsAt, a.EndsAt = state, now.Add(-time.Hour), ends
		if err := WriteAlert(ctx, st, &a, now); err != nil {
			t.Fatal(err)
		}
		return a
	}
	rc1, rc2, am := newRecorder(), newRecorder(), newRecorder()
	s1, s2, s3 := httptest.NewServer(http.HandlerFunc(rc1.webhook)), httptest.NewServer(http.HandlerFunc(rc2.webhook)), httptest.NewServer(http.HandlerFunc(am.alertmanager))
	defer s1.Close()
	defer s2.Close()
	defer s3.Close()
	rs, err := Receivers([]string{s3.URL}, []string{s1.URL, s2.URL}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := mk("a", StateFiring, nil)                // delivered to webhook 1
	b := mk("b", StateFiring, nil)                // webhook 1 gave up on it
	c := mk("c", StateResolved, at(-time.Minute)) // its resolve never went out
	mk("d", StateResolved, at(-time.Hour))        // ended before the window
	for _, x := range []struct {
		a         Alert
		event     string
		delivered bool
	}{{a, StateFiring, true}, {b, StateFiring, false}, {c, StateFiring, true}} {
		if err := writeDelivery(ctx, st, &x.a, Delivery{Receiver: rs[1].Name(), Event: x.event, Attempts: 1, Delivered: x.delivered, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	d := NewDispatcher(DispatchPlan{Backoff: fastBackoff}, rs, nil, log.NewNopLogger())
	if _, err := d.Redeliver(ctx, st, now.Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	d.Start(ctx)
	d.Stop(10 * time.Second)
	got := func(rc *recorder) []string {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		var out []string
		for _, n := range rc.got {
			for _, a := range n.Alerts {
				if strings.HasPrefix(a.Fingerprint, "redeliver-") {
					out = append(out, strings.TrimPrefix(a.Fingerprint, "redeliver-")+" "+n.Status)
				}
			}
		}
		sort.Strings(out)
		return out
	}
	if g := strings.Join(got(rc1), ", "); g != "b firing, c resolved" {
		t.Errorf("webhook 1 got %q, want b firing, c resolved", g)
	}
	if g := strings.Join(got(rc2), ", "); g != "a firing, b firing, c resolved" {
		t.Errorf("webhook 2 got %q, want a firing, b firing, c resolved", g)
	}
	am.mu.Lock()
	defer am.mu.Unlock()
	if len(am.amGot) != 0 {
		t.Errorf("Alertmanager got %d posts from a redelivery, want 0", len(am.amGot))
	}
}

// TestDeliveryLogWhileRetrying: a receiver's failed attempts show in the
// delivery log while the notice is still being retried, not only once it
// is delivered or given up.
func TestDeliveryLogWhileRetrying(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		<-release
	}))
	defer srv.Close()
	defer close(release)
	rs, _ := Receivers(nil, []string{srv.URL}, time.Minute)
	a := testAlert("retrying-log")
	a.StartsAt = time.Now().UTC().Truncate(time.Millisecond)
	if err := WriteAlert(ctx, st, &a, a.StartsAt); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(DispatchPlan{Backoff: fastBackoff, Timeout: time.Minute}, rs, st, log.NewNopLogger())
	d.Start(ctx)
	defer d.Stop(time.Second)
	d.Notify(StateFiring, []Alert{a})
	logged := func() (Delivery, bool) {
		as, err := ReadAlerts(ctx, st, Filter{From: a.StartsAt.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range as {
			if x.Fingerprint == a.Fingerprint && len(x.Deliveries) == 1 {
				return x.Deliveries[0], true
			}
		}
		return Delivery{}, false
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if del, ok := logged(); ok {
			if del.Delivered || del.Attempts != 1 || del.LastStatus != "503" {
				t.Errorf("while retrying: %+v, want 1 attempt, not delivered, last status 503", del)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery log row while the notice is retried (%d attempts made)", calls.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
