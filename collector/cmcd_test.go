package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

func postCMCD(t *testing.T, url, ct, body string, hdr map[string]string) (*http.Response, Response) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	json.NewDecoder(resp.Body).Decode(&r)
	return resp, r
}

// hls.js-like reports posted as a player does land as catalog events of
// the session, in Kafka, keyed by the sid.
func TestCMCDPostProducesCatalogEvents(t *testing.T) {
	srv, addr := newPairingCollector(t)
	now := time.Now().UnixMilli()
	body := strings.Join([]string{
		hlsReport("ps", "s", now-20000, ""),
		hlsReport("rr", "s", now-19900, `rc=200,ttfb=15,ttlb=31,url="http://e/seg-508.ts"`),
		hlsReport("ps", "p", now-19350, ""),
		hlsReport("t", "p", now-9350, "bl=(4400),br=(800)"),
	}, "\n") + "\n"
	resp, r := postCMCD(t, srv.URL+"/v1/cmcd?key=k1&device=dev-7", "application/cmcd", body, map[string]string{"Origin": "http://player.example"})
	if resp.StatusCode != 200 || r.Reports != 4 || r.Accepted != 4 || len(r.Rejected) != 0 {
		t.Fatalf("answer %d %+v", resp.StatusCode, r)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin %q, want *", got)
	}
	ff := readTopic(t, addr, "lastmile.first_frame", 1)
	if len(ff) != 1 {
		t.Fatalf("first_frame topic has %d records", len(ff))
	}
	var ev map[string]any
	json.Unmarshal(ff[0].Value, &ev)
	if ev["total_ms"] != 650.0 || ev["app_id"] != "app1" || ev["session_id"] != "91a28b06-b2f5-429e-acd2-e25e2a3143d5" ||
		ev["protocol"] != "hls" || ev["room_id"] != "room1" || ev["device_id"] != "dev-7" || string(ff[0].Key) != "91a28b06-b2f5-429e-acd2-e25e2a3143d5" {
		t.Errorf("first_frame record %s key %s", ff[0].Value, ff[0].Key)
	}
	rq := readTopic(t, addr, "lastmile.request", 1)
	if len(rq) != 1 {
		t.Fatalf("request topic has %d records", len(rq))
	}
	ev = nil
	json.Unmarshal(rq[0].Value, &ev)
	if ev["url"] != "http://e/seg-508.ts" || ev["http_status"] != 200.0 || ev["ttfb_ms"] != 15.0 || ev["ttlb_ms"] != 31.0 {
		t.Errorf("request record %s", rq[0].Value)
	}
	for _, topic := range []string{"lastmile.play_start", "lastmile.heartbeat"} {
		if n := len(readTopic(t, addr, topic, 1)); n != 1 {
			t.Errorf("%s has %d records, want 1", topic, n)
		}
	}
}

// A bad report is rejected alone, by its line, with its reason in the
// answer and in the rejected topic; the others are kept.
func TestCMCDBadReportsRejectedAlone(t *testing.T) {
	srv, addr := newPairingCollector(t)
	now := time.Now().UnixMilli()
	body := hlsReport("ps", "s", now-5000, "") + "\r\n" +
		`e=ps,sid="x",sta=p,ts=12"` + "\r\n\r\n" + // line 2: broken
		`e=t,sta=p,ts=1796490410860` + "\n" + // line 4: no sid
		hlsReport("ps", "p", now-4000, "")
	resp, r := postCMCD(t, srv.URL+"/v1/cmcd", "text/plain;charset=UTF-8", body, map[string]string{"X-Lastmile-Key": "k1"})
	if resp.StatusCode != 200 || r.Reports != 2 || r.Accepted != 2 || len(r.Rejected) != 2 {
		t.Fatalf("answer %d %+v", resp.StatusCode, r)
	}
	if x := r.Rejected[0]; x.Index != 1 || x.Code != ReasonInvalidCMCD || !strings.Contains(x.Msg, `byte 24, key "ts"`) {
		t.Errorf("first reject %+v", x)
	}
	if x := r.Rejected[1]; x.Index != 3 || x.Code != schemas.ReasonMissingField || x.Field != "sid" {
		t.Errorf("second reject %+v", x)
	}
	rej := readTopic(t, addr, schemas.RejectedTopic, 2)
	if len(rej) != 2 {
		t.Fatalf("rejected topic has %d records", len(rej))
	}
	// Without a session id the two go to any partition: find the first.
	var rr schemas.RejectedRecord
	for _, m := range rej {
		if json.Unmarshal(m.Value, &rr); rr.EventIndex == 1 {
			break
		}
	}
	if rr.Code != ReasonInvalidCMCD || rr.Raw != `e=ps,sid="x",sta=p,ts=12"` || rr.RequestID != r.RequestID || rr.AppID != "app1" {
		t.Errorf("rejected record %+v", rr)
	}
}

func newMemCollector(t *testing.T, cfg Config, p Producer) *httptest.Server {
	cfg.AppKeys = map[string]string{"k1": "app1"}
	c := New(cfg, sampling.New(sampling.DefaultConfig()), p, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestCMCDAuthAndType(t *testing.T) {
	srv := newMemCollector(t, Config{}, &memProducer{})
	body := hlsReport("ps", "s", time.Now().UnixMilli(), "")
	for _, tc := range []struct {
		path, ct string
		hdr      map[string]string
		status   int
	}{
		{"/v1/cmcd", "application/cmcd", nil, 401},
		{"/v1/cmcd?key=nope", "application/cmcd", nil, 401},
		{"/v1/cmcd?key=k1", "application/cmcd", nil, 200},
		{"/v1/cmcd", "application/cmcd", map[string]string{"Authorization": "Bearer k1"}, 200},
		{"/v1/cmcd?key=k1", "", nil, 200},
		{"/v1/cmcd?key=k1", "application/json", nil, 415},
		{"/v1/events?key=nope", "application/json", nil, 401},
		{"/v1/events?key=k1", "application/json", nil, 400}, // a beacon's key: let in, the CMCD body is no JSON
	} {
		resp, _ := postCMCD(t, srv.URL+tc.path, tc.ct, body, tc.hdr)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %q %v: %d, want %d", tc.path, tc.ct, tc.hdr, resp.StatusCode, tc.status)
		}
	}
	resp, _ := postCMCD(t, srv.URL+"/v1/cmcd?key=k1", "application/cmcd", " \n", nil)
	if resp.StatusCode != 400 {
		t.Errorf("empty body: %d", resp.StatusCode)
	}
	big := strings.Repeat(body+"\n", 20)
	srv2 := newMemCollector(t, Config{MaxBodyBytes: 1000}, &memProducer{})
	if resp, _ := postCMCD(t, srv2.URL+"/v1/cmcd?key=k1", "application/cmcd", big, nil); resp.StatusCode != 413 {
		t.Errorf("body over max_body_bytes: %d", resp.StatusCode)
	}
}

func TestCORS(t *testing.T) {
	open := newMemCollector(t, Config{}, &memProducer{})
	listed := newMemCollector(t, Config{AllowedOrigins: []string{"https://app.example"}}, &memProducer{})
	for _, tc := range []struct {
		srv          *httptest.Server
		path, origin string
		status       int
		allow        string
	}{
		{open, "/v1/cmcd", "http://127.0.0.1:9000", 204, "*"},
		{open, "/v1/events", "http://127.0.0.1:9000", 204, "*"},
		{open, "/v1/config", "http://127.0.0.1:9000", 204, "*"},
		{listed, "/v1/cmcd", "https://app.example", 204, "https://app.example"},
		{listed, "/v1/events", "https://evil.example", 403, ""},
		{listed, "/v1/events", "", 405, ""}, // not a preflight: the route's own answer
	} {
		req, _ := http.NewRequest("OPTIONS", tc.srv.URL+tc.path, nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "x-lastmile-key, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != tc.status || h.Get("Access-Control-Allow-Origin") != tc.allow {
			t.Errorf("preflight %s from %q: %d allow %q, want %d %q", tc.path, tc.origin, resp.StatusCode, h.Get("Access-Control-Allow-Origin"), tc.status, tc.allow)
		}
		if tc.allow != "" && (!strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Lastmile-Key") ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST")) {
			t.Errorf("preflight %s: headers %v", tc.path, h)
		}
	}
	// A GET of the config from a listed origin carries the header, from
	// another it does not.
	for origin, want := range map[string]string{"https://app.example": "https://app.example", "https://evil.example": ""} {
		req, _ := http.NewRequest("GET", listed.URL+"/v1/config", nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != want {
			t.Errorf("GET /v1/config from %s: %d allow %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
}

// failOnce fails its first produce as a down broker does, then stores.
type failOnce struct {
	memProducer
	failed bool
}

func (f *failOnce) Produce(ctx context.Context, msgs []kafka.Message) error {
	if !f.failed {
		f.failed = true
		return errors.New("broker down")
	}
	return f.memProducer.Produce(ctx, msgs)
}

// A request Kafka failed leaves nothing behind, so the client's retry maps
// its reports to the same events.
func TestCMCDRetryAfter503(t *testing.T) {
	p := &failOnce{}
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sampling.DefaultConfig()), p, NewMetrics(prometheus.NewRegistry()), log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	now := time.Now().UnixMilli()
	body := hlsReport("ps", "s", now-2000, "") + "\n" + hlsReport("ps", "p", now-1500, "")
	if resp, _ := postCMCD(t, srv.URL+"/v1/cmcd?key=k1", "application/cmcd", body, nil); resp.StatusCode != 503 {
		t.Fatalf("first post: %d, want 503", resp.StatusCode)
	}
	resp, r := postCMCD(t, srv.URL+"/v1/cmcd?key=k1", "application/cmcd", body, nil)
	if resp.StatusCode != 200 || r.Accepted != 2 {
		t.Fatalf("retry: %d %+v", resp.StatusCode, r)
	}
	var types []string
	for _, m := range pairMem(t, c, &p.memProducer) {
		types = append(types, m.Topic)
		if m.Topic == "lastmile.first_frame" && !bytes.Contains(m.Value, []byte(`"total_ms":500`)) {
			t.Errorf("first_frame %s", m.Value)
		}
	}
	if strings.Join(types, ",") != "lastmile.play_start,lastmile.first_frame" {
		t.Errorf("retry produced %v", types)
	}
}

// FuzzCMCDBody posts any body to /v1/cmcd: the answer is 200 (then every
// report line is either read or rejected alone, and what was produced is
// what the answer says) or a whole refusal that stored no event.
func FuzzCMCDBody(f *testing.F) {
	now := time.Now().UnixMilli()
	f.Add([]byte(hlsReport("ps", "s", now-3000, "") + "\n" + hlsReport("ps", "p", now-2000, "") + "\n" + hlsReport("t", "p", now, "bl=(4400),bsd=(10 20)")))
	f.Add([]byte(hlsReport("e", "f", now, `ec=("manifestLoadError")`) + "\r\n\r\nx=\"\n" + `e=t,sta=p,ts=-1,sid="s"`))
	f.Add([]byte("a=(1 2);x, b=?0\n\n"))
	f.Add([]byte(hlsReport("rr", "p", now, `rc=200,ttfb=3,ttlb=9,url="http://u@e/seg-1.ts?sig=S#x"`) + "\n" + hlsReport("rr", "p", now, `rc=700,ttfb=-1,url="`+strings.Repeat("a", 3000)+`"`)))
	metrics := NewMetrics(prometheus.NewRegistry())
	sampler := sampling.New(sampling.DefaultConfig())
	f.Fuzz(func(t *testing.T, body []byte) {
		prod := &memProducer{}
		c := New(Config{AppKeys: map[string]string{"k1": "app1"}, MaxBodyBytes: fuzzMaxBody, MaxEvents: fuzzMaxEvents},
			sampler, prod, metrics, log.NewNopLogger())
		req := httptest.NewRequest(http.MethodPost, "/v1/cmcd?key=k1", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/cmcd")
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, req)
		var reports, rejected int
		for _, m := range prod.msgs {
			switch m.Topic {
			case CMCDReportsTopic:
				reports++
			case schemas.RejectedTopic:
				rejected++
			}
		}
		var events int
		for _, m := range pairMem(t, c, prod) {
			if m.Topic == schemas.RejectedTopic {
				continue
			}
			events++
			var v map[string]any
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatalf("record %q is not JSON: %v", m.Value, err)
			}
			// A request's URL keeps no query or fragment and fits the catalog.
			if u, _ := v["url"].(string); v["log_type"] == "request" && (strings.ContainsAny(u, "?#") || len(u) > requestURLMax) {
				t.Fatalf("request url %q (%d bytes)", u, len(u))
			}
		}
		lines := countReports(body)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if reports+events > 0 {
				t.Fatalf("%d refused, yet %d reports and %d events produced", rec.Code, reports, events)
			}
			return
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var resp Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %q: %v", rec.Body, err)
		}
		if reports != resp.Accepted || rejected != len(resp.Rejected) {
			t.Fatalf("produced %d reports, %d rejected records; answer %+v", reports, rejected, resp)
		}
		badLines := map[int]bool{}
		for _, r := range resp.Rejected {
			badLines[r.Index] = true
		}
		if resp.Reports > lines || resp.Reports+len(badLines) < lines {
			t.Fatalf("%d lines, %d reports read, rejected %+v", lines, resp.Reports, resp.Rejected)
		}
	})
}

// A collector counts the plays it heard from the start and those it joined
// mid-play, the sign of reports spread over replicas.
func TestCMCDSessionsMetric(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	prod := &memProducer{}
	c := New(Config{AppKeys: map[string]string{"k1": "app1"}}, sampling.New(sampling.DefaultConfig()), prod, m, log.NewNopLogger())
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	now := time.Now().UnixMilli()
	body := hlsReport("ps", "s", now-3000, "") + "\n" + hlsReport("ps", "p", now-2000, "") + "\n" +
		strings.ReplaceAll(hlsReport("t", "p", now-1000, ""), "91a28b06", "other")
	if resp, r := postCMCD(t, srv.URL+"/v1/cmcd?key=k1", "application/cmcd", body, nil); resp.StatusCode != 200 || r.Reports != 3 {
		t.Fatalf("post: %d %+v", resp.StatusCode, r)
	}
	pairMem(t, c, prod)
	for how, want := range map[string]float64{"start": 1, "joined": 1} {
		if got := testutil.ToFloat64(m.CMCDSessions.WithLabelValues(how)); got != want {
			t.Errorf("cmcd sessions %s = %v, want %v", how, got, want)
		}
	}
}
