package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/sign"
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

// mediaSink is a collector stand-in that takes the media roles' logs.
func mediaSink(t *testing.T) string {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"accepted":0,"rejected":[]}`))
	}))
	t.Cleanup(sink.Close)
	return strings.TrimPrefix(sink.URL, "http://")
}

// topologyAddr reads one address back from a topology file.
func topologyAddr(t *testing.T, path, re string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(re).FindSubmatch(b)
	if m == nil {
		t.Fatalf("topology %s lacks %s", path, re)
	}
	return string(m[1])
}

// mediaEnv is the environment without the media secrets, so a test sees
// only what its topology file and its own additions give.
func mediaEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LASTMILE_MEDIA_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// TestListenersMediaRolesNeedSecrets: outside `media up`, a demo or a
// scenario, a role that signs or verifies refuses to start without a
// configured secret (no built-in one is used), and publish refuses without
// the push token; given through the environment, the scheduler starts,
// serves no metrics on its public port and hands publish URLs to the token
// only.
func TestListenersMediaRolesNeedSecrets(t *testing.T) {
	full := mediaTopology(t, mediaSink(t), "")
	b, _ := os.ReadFile(full)
	bare := regexp.MustCompile(`(?m)^\s+(secret|push_token):.*\n`).ReplaceAll(b, nil)
	if bytes.Contains(bare, []byte("e2e-secret")) || bytes.Contains(bare, []byte(mediaPushToken)) {
		t.Fatalf("secrets left in %s", bare)
	}
	top := filepath.Join(t.TempDir(), "bare.yaml")
	if err := os.WriteFile(top, bare, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"scheduler"}, "scheduler.secret is not set"},
		{[]string{"scheduler"}, "scheduler.push_token is not set"},
		{[]string{"ingest"}, "scheduler.secret is not set"},
		{[]string{"edge", "--node", "edge-a-north-1"}, "scheduler.secret is not set"},
		{[]string{"publish", "--room", "room1"}, "scheduler.push_token is not set"},
	} {
		cmd := exec.Command(lastmileBin(t), append([]string{"media", c.args[0], "--config", top, "--log-level", "warn"}, c.args[1:]...)...)
		cmd.Env = mediaEnv()
		out, err, exited := runFor(t, cmd, 10*time.Second)
		switch {
		case !exited:
			t.Errorf("media %v started without secrets (still running after 10 s): %q", c.args, out)
		case err == nil || !strings.Contains(out, c.want):
			t.Errorf("media %v without secrets: exit %v, output %q; want a refusal saying %q", c.args, err, out, c.want)
		}
	}

	// The same file with the secrets in the environment.
	args := []string{"media", "scheduler", "--config", top, "--log-level", "warn"}
	cmd := exec.Command(lastmileBin(t), args...)
	cmd.Env = mediaEnv("LASTMILE_MEDIA_SECRET=env-secret", "LASTMILE_MEDIA_PUSH_TOKEN=env-push-token")
	p := &proc{t: t, cmd: cmd, args: args, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`scheduler is up: http://(\S+) .*admin http://(\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m
			}
		}
	}()
	var m []string
	select {
	case m = <-ready:
	case <-p.exited:
		t.Fatalf("media scheduler with the secrets in the environment exited: %s", p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("media scheduler did not come up: %s", p.stderr.String())
	}
	pub, adm := "http://"+m[1], "http://"+m[2]
	checkSchedulerListeners(t, pub, adm, "env-push-token", "env-secret")
}

// checkSchedulerListeners: /v1/push answers the push token only, with a URL
// signed by secret; the public port serves no metrics, the admin one does.
func checkSchedulerListeners(t *testing.T, pub, adm, token, secret string) {
	t.Helper()
	for _, tok := range []string{"", "wrong", secret} {
		if code, body := httpGet(t, pub+"/v1/push?room=intruder", tok); code != http.StatusUnauthorized || strings.Contains(body, "rtmp://") {
			t.Errorf("/v1/push with token %q = %d %q, want 401 and no URL", tok, code, body)
		}
	}
	code, body := httpGet(t, pub+"/v1/push?room=room9", token)
	var push struct {
		URL string `json:"url"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &push) != nil {
		t.Fatalf("/v1/push with the token = %d %q", code, body)
	}
	u, err := url.Parse(push.URL)
	if err != nil || u.Scheme != "rtmp" {
		t.Fatalf("push url %q", push.URL)
	}
	if err := sign.Verify(secret, u.Path, u.Query(), time.Now(), 0); err != nil {
		t.Errorf("push url %s is not signed with the configured secret: %v", push.URL, err)
	}
	if code, _ := httpGet(t, pub+"/v1/schedule?room=room9&region=north&device_id=d1", ""); code != 200 {
		t.Errorf("/v1/schedule (viewers, open) = %d", code)
	}
	if code, body := httpGet(t, pub+"/metrics", ""); code == 200 || strings.Contains(body, "lastmile_scheduler") || strings.Contains(body, "go_goroutines") {
		t.Errorf("scheduler public port /metrics = %d %.200q, want no metrics", code, body)
	}
	if code, _ := httpGet(t, pub+"/healthz", ""); code != 200 {
		t.Errorf("scheduler public /healthz = %d", code)
	}
	if code, body := httpGet(t, adm+"/metrics", ""); code != 200 || !strings.Contains(body, `lastmile_scheduler_requests_total{code="401",endpoint="push"}`) {
		t.Errorf("scheduler admin /metrics = %d without the refused pushes: %.300q", code, body)
	}
}

// TestListenersMediaUpSigning: with `media up`, the built-in broadcaster
// gets its URL with the push token (the room goes live), anyone else gets
// 401; metrics are on the admin listener only; a URL signed with the real
// secret but expiring beyond max_sign_ttl (24 h) is refused by the edge
// (403) and by the ingest (the push fails), while the same within the
// maximum plays and pushes.
func TestListenersMediaUpSigning(t *testing.T) {
	top := mediaTopology(t, mediaSink(t), "")
	m, _ := startMediaRole(t, regexp.MustCompile(`admin:\s+(http://\S+)/metrics`), "up", "--config", top)
	pub := "http://" + topologyAddr(t, top, `scheduler_listen: (\S+)`)
	checkSchedulerListeners(t, pub, m[1], mediaPushToken, "e2e-secret")

	edge := "127.0.0.1:" + topologyAddr(t, top, `edge-a-north-1.cdn-a.lastmile.test, port: (\d+)`)
	play := func(expires time.Time) (int, string) {
		u := &url.URL{Scheme: "http", Host: edge, Path: "/live/room1.flv", RawQuery: sign.Sign("e2e-secret", "/live/room1.flv", expires)}
		resp, err := client.Get(u.String())
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := io.ReadAtLeast(resp.Body, b, 13) // the FLV header and the first tag size
		return resp.StatusCode, string(b[:n])
	}
	waitFor(t, 30*time.Second, "room1 (pushed with the push token) playing at the edge with a 23 h URL", func() (bool, string) {
		code, body := play(time.Now().Add(23 * time.Hour))
		return code == 200 && strings.HasPrefix(body, "FLV"), fmt.Sprintf("%d %.100q", code, body)
	})
	if code, body := play(time.Now().Add(25 * time.Hour)); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("edge with a 25 h URL = %d %.100q, want 403", code, body)
	}
	if code, body := play(time.Now().AddDate(10, 0, 0)); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("edge with a 10-year URL = %d %.100q, want 403", code, body)
	}

	ingest := topologyAddr(t, top, `ingest: \{listen: (\S+),`)
	push := func(room string, expires time.Time) (string, error) {
		u := "rtmp://" + ingest + "/live/" + room + "?" + sign.Sign("e2e-secret", "/live/"+room, expires)
		cmd := exec.Command(lastmileBin(t), "media", "publish", "--config", top, "--log-level", "warn", "--room", room, "--url", u, "--duration", "3s")
		cmd.Env = mediaEnv()
		out, err, exited := runFor(t, cmd, 30*time.Second)
		if !exited {
			return "killed after 30 s: " + out, err
		}
		return out, err
	}
	if out, err := push("room7", time.Now().Add(time.Hour)); err != nil {
		t.Errorf("push with a 1 h URL: %v %s", err, out)
	}
	if out, err := push("room8", time.Now().Add(25*time.Hour)); err == nil || !strings.Contains(out, "2002") {
		t.Errorf("push with a 25 h URL: exit %v, %q; want refused (code 2002)", err, out)
	}
}

// runFor runs cmd for at most d and returns its output and exit error;
// exited is false when it had to be killed.
func runFor(t *testing.T, cmd *exec.Cmd, d time.Duration) (out string, err error, exited bool) {
	t.Helper()
	buf := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
		return buf.String(), err, true
	case <-time.After(d):
		cmd.Process.Kill()
		err = <-done
		return buf.String(), err, false
	}
}
