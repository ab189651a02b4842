package ingest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/mediatest"
	"github.com/lastmile-qoe/lastmile/media/origin"
	"github.com/lastmile-qoe/lastmile/media/report"
)

// recorder keeps the events with the time they were logged.
type recorder struct {
	mu  sync.Mutex
	evs []report.Event
	at  []time.Time
}

func (r *recorder) Log(ev report.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	r.at = append(r.at, time.Now())
}

// relayErrors are the times of the relay "error" events after since.
func (r *recorder) relayErrors(since time.Time) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Time
	for i, ev := range r.evs {
		if ev["log_type"] == "relay" && ev["state"] == "error" && !r.at[i].Before(since) {
			out = append(out, r.at[i])
		}
	}
	return out
}

// testOrigin is a real origin that can be taken down and brought back on
// the same addresses.
type testOrigin struct {
	t              *testing.T
	rtmpAt, httpAt string
	srv            *origin.Server
}

func (o *testOrigin) up() {
	o.t.Helper()
	rtmpAt, httpAt := o.rtmpAt, o.httpAt
	if rtmpAt == "" {
		rtmpAt, httpAt = "127.0.0.1:0", "127.0.0.1:0"
	}
	o.srv = origin.New(origin.Config{RTMPListen: rtmpAt, HTTPListen: httpAt, Node: "origin-1", StatsEvery: time.Hour}, &recorder{}, nil)
	var ra, ha net.Addr
	var err error
	for range 50 { // the old listener's port may take a moment to be free
		if ra, ha, err = o.srv.Start(nil); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		o.t.Fatalf("origin up: %v", err)
	}
	o.rtmpAt, o.httpAt = ra.String(), ha.String()
}

func (o *testOrigin) down() {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.srv.Close(ctx); err != nil {
		o.t.Fatalf("origin down: %v", err)
	}
}

// hasMedia waits until the origin serves a video frame of room over
// HTTP-FLV: the relay reached it and forwards media.
func (o *testOrigin) hasMedia(room string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		last = o.readFrame(ctx, room)
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func (o *testOrigin) readFrame(ctx context.Context, room string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.httpAt+"/live/"+room+".flv?start_ms=0", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	rd := flv.NewReader(resp.Body)
	if _, err := rd.ReadHeader(); err != nil {
		return err
	}
	for {
		tag, err := rd.ReadTag()
		if err != nil {
			return err
		}
		if tag.IsVideo() && !tag.IsSequenceHeader() {
			return nil
		}
	}
}

// TestRelayBudgetPerOutage blips the origin five times with healthy
// periods between: each outage gets the whole redial budget, so the
// publish survives them all. A long outage then still cuts the publish
// after RelayRetries redials spaced by the doubling backoff.
func TestRelayBudgetPerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time streaming with origin restarts")
	}
	const (
		retries = 3
		healthy = time.Second
		backoff = 200 * time.Millisecond
		blip    = 300 * time.Millisecond // longer than the 2nd redial's wait, shorter than the 3rd's
	)
	org := &testOrigin{t: t}
	org.up()
	rec := &recorder{}
	ing := New(Config{Listen: "127.0.0.1:0", Node: "ingest-1", Origin: "rtmp://" + org.rtmpAt, StatsEvery: time.Hour,
		RelayRetries: retries, RelayHealthy: healthy, RelayBackoff: backoff}, rec, nil)
	addr, err := ing.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ing.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pushed := mediatest.Publish(ctx, t, "rtmp://"+addr.String()+"/live/room1")
	if err := org.hasMedia("room1", 10*time.Second); err != nil {
		t.Fatalf("no media at the origin before any blip: %v", err)
	}

	for i := 1; i <= 5; i++ {
		org.down()
		time.Sleep(blip)
		org.up()
		if err := org.hasMedia("room1", 10*time.Second); err != nil {
			t.Fatalf("blip %d: the relay did not come back: %v (relay errors so far: %d)", i, err, len(rec.relayErrors(time.Time{})))
		}
		time.Sleep(healthy + 500*time.Millisecond) // a healthy period: the next blip is a new outage
		select {
		case err := <-pushed:
			t.Fatalf("blip %d: the publish was cut: %v", i, err)
		default:
		}
		if got := ing.Active(); len(got) != 1 {
			t.Fatalf("blip %d: ingest publishes %v, want /live/room1", i, got)
		}
	}

	// A long outage: the origin stays down.
	outage := time.Now()
	org.down()
	select {
	case <-pushed:
	case <-time.After(20 * time.Second):
		t.Fatal("the publish survived a 20 s origin outage: the redial budget is not bounded")
	}
	errs := rec.relayErrors(outage)
	if len(errs) != retries {
		t.Fatalf("the long outage had %d redials, want the budget of %d", len(errs), retries)
	}
	// The redials wait 0, backoff, 2×backoff (with a margin for timer slack
	// on a loaded machine; without backoff the gaps are a dial's time).
	for i := 1; i < len(errs); i++ {
		want := backoff << (i - 1)
		if gap := errs[i].Sub(errs[i-1]); gap < want*9/10 {
			t.Errorf("redial %d came %s after the previous, want ≥ %s (backoff)", i+1, gap, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ing.Active()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := ing.Active(); len(got) > 0 {
		t.Fatalf("ingest still publishes %v after giving up", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.evs {
		if ev["log_type"] == "ingest_session" && ev["state"] == "stop" {
			if r, _ := ev["stop_reason"].(string); !strings.Contains(r, "relay to origin failed") {
				t.Errorf("stop_reason %q, want the relay failure", r)
			}
			return
		}
	}
	t.Error("no ingest_session stop event")
}
