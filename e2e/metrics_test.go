package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
)

// getMetrics asks the read API for a metric; it returns the status and the
// decoded answer (or error text).
func (p *proc) getMetrics(t testing.TB, q url.Values) (int, *query.MetricsAnswer, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/metrics?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		var e query.ErrorBody
		json.Unmarshal(body, &e)
		return resp.StatusCode, nil, e.Error
	}
	var a query.MetricsAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("metrics answer %s: %v", body, err)
	}
	return 200, &a, ""
}

// totals maps each series' group (values joined by /) to its total.
// metricTotals reads one metric over [from, to) grouped by groupBy (5 s
// buckets) and returns each group's total, keyed "v1/v2/…".
func (p *proc) metricTotals(t testing.TB, metric, groupBy string, from, to time.Time) map[string]float64 {
	t.Helper()
	v := url.Values{"metric": {metric}, "group_by": {groupBy}, "step": {"5s"},
		"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
	code, a, msg := p.getMetrics(t, v)
	if code != 200 {
		t.Fatalf("GET /api/v1/metrics?%s: %d %s", v.Encode(), code, msg)
	}
	got := totals(a)
	t.Logf("%s by %s (%s): %v", metric, groupBy, a.Table, got)
	return got
}

func totals(a *query.MetricsAnswer) map[string]float64 {
	out := map[string]float64{}
	for _, s := range a.Series {
		var g []string
		for _, d := range a.GroupBy {
			g = append(g, s.Group[d])
		}
		if s.Total != nil {
			out[strings.Join(g, "/")] = *s.Total
		}
	}
	return out
}

// TestMetrics posts known plays to the collector of a real `lastmile run`
// and reads QoE metrics back through GET /api/v1/metrics (from the rollups
// and from raw events) and through `lastmile metrics`.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")

	// Ten minutes ago, so every event falls in the last hour.
	t0 := time.Now().Add(-10 * time.Minute).UnixMilli()
	var body []byte
	n := 0
	ev := func(logType, dev, cdn string, at int64, extra string) {
		n++
		body = fmt.Appendf(body, `{"event_id":"m-%d","log_type":%q,"ts":%d,"device_id":%q,"session_id":"%s-s","cdn":%q,"region":"north"%s}`+"\n",
			n, logType, t0+at, dev, dev, cdn, extra)
	}
	play := func(dev, cdn string, firstFrameMs int64, code int) {
		ev("play_start", dev, cdn, 0, "")
		ev("first_frame", dev, cdn, firstFrameMs, fmt.Sprintf(`,"total_ms":%d,"dns_ms":20`, firstFrameMs))
		ev("heartbeat", dev, cdn, 10_000, `,"interval_ms":10000,"stall_ms":1000,"stall_count":1,"latency_ms":2500,"state":"playing"`)
		ev("play_stop", dev, cdn, 20_000, fmt.Sprintf(`,"code":%d,"play_duration_ms":20000,"stall_count":1`, code))
	}
	// cdn-a: three plays (one ends in a playback error) and a start failure.
	play("a1", "cdn-a", 600, 0)
	play("a2", "cdn-a", 800, 0)
	play("a3", "cdn-a", 1000, 3001)
	ev("play_start", "a4", "cdn-a", 0, "")
	ev("play_stop", "a4", "cdn-a", 4000, `,"code":2001,"first_frame_blocked":"tcp_connect","play_duration_ms":4000`)
	// cdn-b: a play and an exit before video start.
	play("b1", "cdn-b", 1200, 0)
	ev("play_start", "b2", "cdn-b", 0, "")
	ev("play_stop", "b2", "cdn-b", 2000, `,"code":0,"first_frame_blocked":"video_first_packet","play_duration_ms":2000`)
	if r, err := p.post(body, false, testKey); err != nil || r.Status != 200 || r.Accepted != n {
		t.Fatalf("post: %v %+v", err, r)
	}

	by := func(metric string, extra ...string) url.Values {
		q := url.Values{"metric": {metric}, "since": {"1h"}, "app_id": {testAppID}}
		for i := 0; i < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return q
	}
	waitFor(t, 60*time.Second, "every play_stop in the metrics", func() (bool, string) {
		code, a, msg := p.getMetrics(t, by("video_start_failure_rate"))
		if code != 200 {
			return false, msg
		}
		if len(a.Series) == 1 && a.Series[0].Samples == 6 {
			return true, ""
		}
		return false, fmt.Sprintf("%+v", a.Series)
	})

	for _, read := range []string{"rollup", "raw"} {
		for _, c := range []struct {
			metric  string
			groupBy string
			want    map[string]float64
			extra   []string
		}{
			{"attempts", "cdn", map[string]float64{"cdn-a": 4, "cdn-b": 2}, nil},
			{"plays", "", map[string]float64{"": 4}, nil},
			// cdn-a: 2 of 4 succeed; cdn-b: the exit before start is left out, 1 of 1.
			{"play_success_rate", "cdn", map[string]float64{"cdn-a": 50, "cdn-b": 100}, nil},
			{"video_start_failure_rate", "cdn", map[string]float64{"cdn-a": 25, "cdn-b": 0}, nil},
			{"exits_before_video_start_rate", "cdn,region", map[string]float64{"cdn-a/north": 0, "cdn-b/north": 50}, nil},
			{"video_playback_failure_rate", "", map[string]float64{"": 25}, nil},
			{"rebuffering_ratio", "", map[string]float64{"": 10}, nil},
			{"video_startup_time", "", map[string]float64{"": 800}, []string{"quantile", "0.5"}},
			{"video_startup_time", "cdn", map[string]float64{"cdn-a": 1000, "cdn-b": 1200}, []string{"quantile", "p99"}},
			{"video_startup_time", "", map[string]float64{"": 20}, []string{"phase", "dns"}},
			{"live_latency", "cdn", map[string]float64{"cdn-a": 2500, "cdn-b": 2500}, []string{"quantile", "0.95"}},
		} {
			q := by(c.metric, append([]string{"group_by", c.groupBy, "read", read, "step", "1m"}, c.extra...)...)
			code, a, msg := p.getMetrics(t, q)
			if code != 200 {
				t.Errorf("%s: %d %s", q.Encode(), code, msg)
				continue
			}
			if a.Source != read {
				t.Errorf("%s: source %s, want %s", q.Encode(), a.Source, read)
			}
			if got := totals(a); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("%s: totals %v, want %v", q.Encode(), got, c.want)
			}
		}
	}

	// The time series: attempts per minute add up to the total.
	_, a, _ := p.getMetrics(t, by("attempts", "step", "1m"))
	var sum float64
	for _, pt := range a.Series[0].Points {
		sum += *pt.V
	}
	if len(a.Series[0].Points) < 60 || sum != 6 {
		t.Errorf("attempts series: %d points summing to %v, want ≥ 60 summing to 6", len(a.Series[0].Points), sum)
	}

	// Bad requests name the problem.
	for _, c := range []struct{ query, want string }{
		{"metric=startup_speed", `unknown metric "startup_speed"; metrics: attempts, back_to_source_rate`},
		{"metric=attempts&group_by=cdn,planet", `unknown group_by dimension "planet"`},
		{"metric=attempts&colour=blue", "unknown parameter colour"},
		{"metric=attempts&step=soon", `step="soon"`},
		{"metric=attempts&from=now-1h&to=now-2h", "must be before to"},
	} {
		q, _ := url.ParseQuery(c.query)
		code, _, msg := p.getMetrics(t, q)
		if code != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %q, want 400 containing %q", c.query, code, msg, c.want)
		}
	}

	// The CLI prints the same numbers as a table.
	out, err := exec.Command(lastmileBin(t), "metrics", "--addr", "http://"+p.HTTP, "--token", queryToken,
		"--metric", "play_success_rate", "--since", "1h", "--group-by", "cdn", "--app", testAppID).CombinedOutput()
	if err != nil {
		t.Fatalf("lastmile metrics: %v\n%s", err, out)
	}
	var rows []string
	for _, l := range strings.Split(string(out), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	table := strings.Join(rows, "\n")
	for _, want := range []string{"play_success_rate (%)", "\ncdn total samples\ncdn-a 50.00 4\ncdn-b 100.00 2\n"} {
		if !strings.Contains(table, want) {
			t.Errorf("lastmile metrics output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(lastmileBin(t), "metrics", "--addr", "http://"+p.HTTP, "--token", queryToken,
		"--metric", "nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown metric "nope"`) {
		t.Errorf("lastmile metrics --metric nope: %v\n%s", err, out)
	}
	p.stop()
}
