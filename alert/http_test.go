package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// TestAlertsHandler: the state and window filters pick the right alerts,
// the latest state of each wins, and bad parameters are refused.
func TestAlertsHandler(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	// Recent: the table's TTL drops rows older than the retention on insert.
	base := time.Now().Add(-6 * time.Hour).Truncate(time.Hour).UTC()
	at := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	end := base.Add(30 * time.Minute)
	run := fmt.Sprint(time.Now().UnixNano()) // fingerprints of this run only (-count, shared store)
	mk := func(fp string, start time.Time) *Alert {
		return &Alert{Fingerprint: fp + run, Rule: "TestHTTP", State: StateFiring, Labels: map[string]string{"alertname": "TestHTTP", "node_id": fp},
			Annotations: map[string]string{"summary": "it's 'quoted'"}, Value: 50, Expected: 1, Samples: 12, StartsAt: start}
	}
	old := mk("h-old", base)
	if err := WriteAlert(ctx, st, old, base); err != nil {
		t.Fatal(err)
	}
	old.State, old.EndsAt = StateResolved, &end
	if err := WriteAlert(ctx, st, old, end); err != nil {
		t.Fatal(err)
	}
	if err := WriteAlert(ctx, st, mk("h-new", base.Add(2*time.Hour)), base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := writeDelivery(ctx, st, old, Delivery{Receiver: "webhook:x", Event: StateResolved, Attempts: 3, Delivered: true, LastStatus: "ok", At: end}); err != nil {
		t.Fatal(err)
	}
	h := Handler(st)
	get := func(q string) (int, AlertsAnswer, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/alerts?"+q, nil))
		var a AlertsAnswer
		json.Unmarshal(rec.Body.Bytes(), &a)
		return rec.Code, a, rec.Body.String()
	}
	names := func(a AlertsAnswer) string {
		var out []string
		for _, x := range a.Alerts {
			if x.Rule == "TestHTTP" && strings.HasSuffix(x.Fingerprint, run) {
				out = append(out, strings.TrimSuffix(x.Fingerprint, run)+":"+x.State)
			}
		}
		return strings.Join(out, ",")
	}
	window := "&from=" + at(-time.Hour) + "&to=" + at(3*time.Hour)
	for _, c := range []struct{ q, want string }{
		{"state=firing" + window, "h-new:firing"},
		{"state=resolved" + window, "h-old:resolved"},
		{window[1:], "h-new:firing,h-old:resolved"},
		// The old one ended at 10:30: a window after it has the new one only.
		{"from=" + at(time.Hour) + "&to=" + at(3*time.Hour), "h-new:firing"},
		{"from=" + at(-time.Hour) + "&to=" + at(15*time.Minute), "h-old:resolved"},
	} {
		code, a, body := get(c.q)
		if code != 200 || names(a) != c.want {
			t.Errorf("%s: %d %s, want %s", c.q, code, body, c.want)
		}
	}
	_, a, _ := get("state=resolved" + window)
	var x Alert
	for _, y := range a.Alerts {
		if y.Fingerprint == "h-old"+run {
			x = y
		}
	}
	if x.Fingerprint == "" {
		t.Fatal("no resolved alert")
	}
	if len(x.Deliveries) != 1 || x.Deliveries[0].Attempts != 3 || !x.EndsAt.Equal(end) || x.Annotations["summary"] != "it's 'quoted'" {
		t.Errorf("resolved alert read back as %+v", x)
	}
	for _, q := range []string{"state=pending", "since=1h", "from=yesterday", "from=now&to=now-1h", "limit=0"} {
		if code, _, body := get(q); code != 400 {
			t.Errorf("%s: %d %s, want 400", q, code, body)
		}
	}
}
