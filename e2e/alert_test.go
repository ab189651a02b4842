package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// amNotification is what Alertmanager's webhook_config posts.
type amNotification struct {
	Status string `json:"status"`
	Alerts []struct {
		Status   string            `json:"status"`
		Labels   map[string]string `json:"labels"`
		StartsAt time.Time         `json:"startsAt"`
		EndsAt   time.Time         `json:"endsAt"`
	} `json:"alerts"`
	at time.Time
}

// amHook is the local receiver Alertmanager forwards to.
type amHook struct {
	mu  sync.Mutex
	got []amNotification
}

func (h *amHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n amNotification
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	n.at = time.Now()
	h.mu.Lock()
	h.got = append(h.got, n)
	h.mu.Unlock()
}

// notices lists (status, node_id, startsAt) of every alert notified.
func (h *amHook) notices() []amNotification {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]amNotification(nil), h.got...)
}

// startAlertmanager runs Debian's Alertmanager on a loopback port with a
// route to url that notifies at once and repeats only after hours; every
// distinct label set is a group of its own (group_by '...'), so no two
// alerts are merged into one notification.
func startAlertmanager(t *testing.T, url string) string {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Skip("SKIPPED: prometheus-alertmanager is not installed (make system-deps installs Debian's)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: ['...']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, url)
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager stderr:\n%s", stderr.String())
		}
	})
	waitFor(t, 60*time.Second, "alertmanager ready", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return "http://" + addr
}

// edgeNodes: three nodes of cdn-a and two of cdn-b in one region, so
// each node has peers; edge-a-north-1 is the one that fails.
var edgeNodes = []struct{ node, cdn string }{
	{"edge-a-north-1", "cdn-a"}, {"edge-a-north-2", "cdn-a"}, {"edge-a-north-3", "cdn-a"},
	{"edge-b-north-1", "cdn-b"}, {"edge-b-north-2", "cdn-b"},
}

const failingNode = "edge-a-north-1"

// feedSecond posts one second of play_stops: per node 4, spread over two
// streams, two renditions, two app versions and two ISPs alike, so that
// only the failing node stands out; with fault, it refuses every one (each
// stream, rendition, version and ISP gets its share of the failures alike).
func feedSecond(t *testing.T, p *proc, sec int64, fault bool) {
	var evs []string
	now := time.Now().UnixMilli()
	for _, n := range edgeNodes {
		for i := 0; i < 4; i++ {
			code, blocked := 0, ""
			if fault && n.node == failingNode {
				code, blocked = 2001, "tcp_connect"
			}
			dev := fmt.Sprintf("%s-d%d", n.node, i)
			evs = append(evs, fmt.Sprintf(`{"event_id":"al-%s-%d-%d","log_type":"play_stop","ts":%d,"source":"client","device_id":%q,"session_id":"%s-%d",`+
				`"room_id":"room%d","stream_id":"live/room%d","rendition":"%s","app_version":"5.%d","isp":"isp-%d","region":"north","cdn":%q,"node_id":%q,`+
				`"code":%d,"first_frame_blocked":%q,"play_duration_ms":3000}`,
				n.node, sec, i, now-int64(i)*100, dev, dev, sec, 1+i%2, 1+i%2, []string{"720p", "480p"}[i/2], i%2, i/2, n.cdn, n.node, code, blocked))
		}
	}
	r, err := p.post([]byte("["+strings.Join(evs, ",")+"]"), false, testKey)
	if err != nil || r.Status != 200 || r.Accepted != len(evs) {
		t.Fatalf("post: %+v %v", r, err)
	}
}

// feedUntil posts a second of events at a time until cond holds or limit
// passes; it returns whether cond held.
func feedUntil(t *testing.T, p *proc, fault bool, limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for sec := time.Now().Unix(); time.Now().Before(deadline); sec++ {
		feedSecond(t, p, sec, fault)
		if cond != nil && cond() {
			return true
		}
		time.Sleep(time.Until(time.Unix(sec+1, 0)))
	}
	return cond == nil
}

// TestAlertEdgeNodeThroughAlertmanager: a real `lastmile run` with the
// built-in rules and a real Alertmanager. One edge node refuses every
// start while its peers are fine: its alert reaches the webhook behind
// Alertmanager labelled with the node and scope edge, and no other node
// is named. lastmile restarts while it fires: no second firing
// notification, no new start. After the fault it resolves, with the
// same start. The read API and `lastmile alerts` show it with its
// deliveries; `lastmile alert` then runs as a role of its own.
func TestAlertEdgeNodeThroughAlertmanager(t *testing.T) {
	hook := &amHook{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	am := startAlertmanager(t, hookSrv.URL)
	direct := &amHook{} // a plain webhook next to Alertmanager
	directSrv := httptest.NewServer(direct)
	defer directSrv.Close()

	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--kafka-listen", "127.0.0.1:0", "--alertmanager", am, "--webhook", directSrv.URL}
	p := start(t, "run", data, args...)

	firing := func(h *amHook) []amNotification {
		var out []amNotification
		for _, n := range h.notices() {
			if n.Status == "firing" {
				out = append(out, n)
			}
		}
		return out
	}
	feedUntil(t, p, false, 20*time.Second, nil)
	faultStart := time.Now()
	if !feedUntil(t, p, true, 120*time.Second, func() bool { return len(firing(hook)) > 0 }) {
		t.Fatalf("no firing alert through Alertmanager within 120 s of the fault; lastmile log:\n%s", logTail(p))
	}
	firstFiring := firing(hook)[0]
	t.Logf("fault start → firing notification from Alertmanager: %s (this machine, shared)", firstFiring.at.Sub(faultStart).Round(time.Second))

	// Restart lastmile while the alert fires, then keep the fault on.
	p.stop()
	p = start(t, "run", data, args...)
	feedUntil(t, p, true, 40*time.Second, nil)
	faultEnd := time.Now()
	resolved := func() bool {
		for _, n := range hook.notices() {
			if n.Status == "resolved" {
				return true
			}
		}
		return false
	}
	if !feedUntil(t, p, false, 180*time.Second, resolved) {
		t.Fatalf("not resolved through Alertmanager within 180 s of the fault's end; notices %+v", hook.notices())
	}
	var resolvedAt time.Time
	for _, n := range hook.notices() {
		if n.Status == "resolved" {
			resolvedAt = n.at
		}
	}
	t.Logf("fault end → resolved notification: %s", resolvedAt.Sub(faultEnd).Round(time.Second))

	// Every notification names the failing node only, with one start.
	var startsAt time.Time
	nFiring := 0
	for _, n := range hook.notices() {
		for _, a := range n.Alerts {
			if a.Labels["node_id"] != failingNode || a.Labels["alertname"] != "EdgeNodeStartFailures" || a.Labels["scope"] != "edge" ||
				a.Labels["cdn"] != "cdn-a" || a.Labels["region"] != "north" || a.Labels["severity"] != "critical" {
				t.Errorf("%s notification of another alert: %v", n.Status, a.Labels)
				continue
			}
			if startsAt.IsZero() {
				startsAt = a.StartsAt
			} else if !a.StartsAt.Equal(startsAt) {
				t.Errorf("%s notification with start %s, first was %s", n.Status, a.StartsAt, startsAt)
			}
			if n.Status == "firing" {
				nFiring++
			} else if !a.EndsAt.After(faultEnd) || a.EndsAt.After(resolvedAt) {
				t.Errorf("resolved with endsAt %s; fault ended %s, notified %s", a.EndsAt, faultEnd, resolvedAt)
			}
		}
	}
	if nFiring != 1 {
		t.Errorf("%d firing notifications through Alertmanager, want 1 (the restart must not announce it again): %+v", nFiring, hook.notices())
	}
	if startsAt.Before(faultStart) || startsAt.After(firstFiring.at) {
		t.Errorf("alert starts %s: before the fault (%s) or after its notification (%s)", startsAt, faultStart, firstFiring.at)
	}
	// The plain webhook got the firing once (not again after the
	// restart) and the resolved once.
	var direct2 []string
	for _, n := range direct.notices() {
		direct2 = append(direct2, n.Status)
	}
	if strings.Join(direct2, ",") != "firing,resolved" {
		t.Errorf("plain webhook got %v, want firing then resolved", direct2)
	}

	// The read side: the resolved alert with its deliveries.
	out, err := exec.Command(lastmileBin(t), "alerts", "--addr", p.HTTP, "--token", queryToken, "--state", "resolved", "--json").Output()
	if err != nil {
		t.Fatalf("lastmile alerts: %v", err)
	}
	var ans struct {
		Alerts []struct {
			Labels     map[string]string `json:"labels"`
			StartsAt   time.Time         `json:"starts_at"`
			EndsAt     *time.Time        `json:"ends_at"`
			Deliveries []struct {
				Receiver  string `json:"receiver"`
				Event     string `json:"event"`
				Delivered bool   `json:"delivered"`
			} `json:"deliveries"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(out, &ans); err != nil {
		t.Fatalf("lastmile alerts --json: %v: %s", err, out)
	}
	if len(ans.Alerts) != 1 || ans.Alerts[0].Labels["node_id"] != failingNode || !ans.Alerts[0].StartsAt.Equal(startsAt) || ans.Alerts[0].EndsAt == nil {
		t.Fatalf("alerts API: %s", out)
	}
	got := map[string]bool{}
	for _, d := range ans.Alerts[0].Deliveries {
		got[d.Receiver+" "+d.Event] = d.Delivered
	}
	for _, want := range []string{"alertmanager:" + am + " firing", "alertmanager:" + am + " resolved", "webhook:" + directSrv.URL + " firing", "webhook:" + directSrv.URL + " resolved"} {
		if !got[want] {
			t.Errorf("delivery log lacks a delivered %q: %v", want, got)
		}
	}
	text, err := exec.Command(lastmileBin(t), "alerts", "--addr", p.HTTP, "--token", queryToken).Output()
	if err != nil || !strings.Contains(string(text), "EdgeNodeStartFailures") || !strings.Contains(string(text), "node_id="+failingNode) {
		t.Errorf("lastmile alerts: %v\n%s", err, text)
	}
	t.Logf("lastmile alerts:\n%s", text)

	// The alert role on its own, on the same store: it evaluates, serves
	// /healthz and /metrics, and has nothing firing.
	p.stop()
	a := start(t, "alert", data, "--alertmanager", am)
	waitFor(t, 60*time.Second, "the alert role evaluates", func() (bool, string) {
		n := a.metric(t, "lastmile_alert_evaluations_total")
		return n > 0, fmt.Sprint(n, " evaluations")
	})
	if f := a.metric(t, "lastmile_alerts_firing"); f != 0 {
		t.Errorf("alert role: %g firing, want 0", f)
	}
	resp, err := http.Get("http://" + a.Metrics + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("alert role /healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
