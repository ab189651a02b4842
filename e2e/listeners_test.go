package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpGet does one GET with an optional bearer token and returns the status
// and the body.
func httpGet(t *testing.T, u, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestListenersPublicPortServesNoMetricsNorProfiles: the port players post
// to answers /metrics and /debug/pprof/ with neither metrics nor a profile;
// /healthz stays open there for load balancers. Metrics are served on the
// metrics listener; profiles only with --pprof, and then only to the
// bearer of the admin token.
func TestListenersPublicPortServesNoMetricsNorProfiles(t *testing.T) {
	const admin = "e2e-admin-token"
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0", "--pprof", "--admin-token", admin)
	if p.Metrics == "" || p.Metrics == p.HTTP {
		t.Fatalf("metrics listener %q: want one apart from the public %q", p.Metrics, p.HTTP)
	}
	pub := "http://" + p.HTTP
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=2",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/cmdline"} {
		for _, tok := range []string{"", admin, queryToken} {
			code, body := httpGet(t, pub+path, tok)
			if code != http.StatusNotFound && code != http.StatusUnauthorized {
				t.Errorf("public GET %s (token %q) = %d, want 404 or 401", path, tok, code)
			}
			for _, leak := range []string{"go_goroutines", "lastmile_collector", "# HELP", "heap profile", "goroutine ", "Types of profiles"} {
				if strings.Contains(body, leak) {
					t.Errorf("public GET %s (token %q) answers %q: %.200s", path, tok, leak, body)
				}
			}
		}
	}
	if code, body := httpGet(t, pub+"/healthz", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("public /healthz = %d %q, want 200 ok", code, body)
	}

	adm := "http://" + p.Metrics
	if r, err := p.post([]byte(fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d1","session_id":"s1"}`, time.Now().UnixMilli())), false, testKey); err != nil || r.Status != 200 || r.Accepted != 1 {
		t.Fatalf("post: %v %+v", err, r)
	}
	if code, body := httpGet(t, adm+"/metrics", ""); code != 200 || !strings.Contains(body, "lastmile_collector_requests_total") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics listener /metrics = %d without the collector's and Go's metrics: %.300s", code, body)
	}
	if n := p.metric(t, "lastmile_collector_events_received_total"); n != 1 {
		t.Errorf("lastmile_collector_events_received_total = %v on the metrics listener, want 1", n)
	}
	if code, _ := httpGet(t, adm+"/healthz", ""); code != 200 {
		t.Errorf("metrics listener /healthz = %d", code)
	}
	for _, tok := range []string{"", "wrong", queryToken} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/profile?seconds=1"} {
			if code, body := httpGet(t, adm+path, tok); code != http.StatusUnauthorized || strings.Contains(body, "heap profile") {
				t.Errorf("pprof %s with token %q = %d %.100q, want 401", path, tok, code, body)
			}
		}
	}
	if code, body := httpGet(t, adm+"/debug/pprof/heap?debug=1", admin); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("pprof heap with the admin token = %d %.100q, want 200 and a heap profile", code, body)
	}
	if code, body := httpGet(t, adm+"/debug/pprof/profile?seconds=1", admin); code != 200 || len(body) < 100 {
		t.Errorf("pprof cpu profile with the admin token = %d, %d bytes", code, len(body))
	}
	if code, _ := httpGet(t, adm+"/debug/pprof/cmdline", admin); code == 200 {
		t.Errorf("pprof cmdline (the flags, tokens included) is served")
	}
}

// TestListenersPprofOffByDefault: without --pprof no profile is served, even
// to the admin token; with --pprof and no --admin-token, a random token is
// written to DATA/admin-token (0600) and is the one that works.
func TestListenersPprofOffByDefault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := start(t, "query", dir, "--admin-token", "x")
	if code, body := httpGet(t, "http://"+p.Metrics+"/debug/pprof/heap?debug=1", "x"); code != http.StatusNotFound || strings.Contains(body, "heap profile") {
		t.Errorf("pprof without --pprof = %d %.100q, want 404", code, body)
	}
	p.stop()

	p = start(t, "query", dir, "--pprof")
	fi, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatalf("--pprof without --admin-token: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin-token mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "admin-token"))
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		t.Fatalf("admin token %q is short", tok)
	}
	if code, _ := httpGet(t, "http://"+p.Metrics+"/debug/pprof/heap?debug=1", ""); code != http.StatusUnauthorized {
		t.Errorf("pprof without a token = %d, want 401", code)
	}
	if code, body := httpGet(t, "http://"+p.Metrics+"/debug/pprof/heap?debug=1", tok); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("pprof with DATA/admin-token = %d %.100q", code, body)
	}
}
