// Package e2e starts the real lastmile binary and talks to it over real
// sockets: HTTP to the collector and the read API, Kafka to the embedded
// broker, and the embedded ClickHouse engine through the read API.
package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	testKey    = "e2e-key"
	testAppID  = "e2e-app"
	queryToken = "e2e-token"
)

var binOnce struct {
	sync.Once
	path string
	err  error
}

// lastmileBin returns the binary under test: $LASTMILE_BIN (make test builds
// it), else one built now.
func lastmileBin(t testing.TB) string {
	binOnce.Do(func() {
		if p := os.Getenv("LASTMILE_BIN"); p != "" {
			binOnce.path = p
			return
		}
		dir, err := os.MkdirTemp("", "lastmile-e2e-bin")
		if err != nil {
			binOnce.err = err
			return
		}
		binOnce.path = filepath.Join(dir, "lastmile")
		cmd := exec.Command("go", "build", "-o", binOnce.path, "../cmd/lastmile")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binOnce.err != nil {
		t.Fatal(binOnce.err)
	}
	return binOnce.path
}

// freePort returns a loopback address with a currently free TCP port.
func freePort(t testing.TB) string { return freeAddr(t, "tcp") }

var ports struct {
	sync.Mutex
	given map[int]bool
	rng   *rand.Rand
}

// freeAddr picks a free port below the kernel's ephemeral range, never the
// same twice in one run: a port the kernel hands out for ":0" can be taken
// by any process's outgoing connection between this check and the caller's
// bind (a CI run once lost a test to that).
func freeAddr(t testing.TB, network string) string {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
		ports.rng = rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	}
	const lo = 10000
	hi := ephemeralLow()
	for range 1000 {
		n := lo + ports.rng.IntN(hi-lo)
		if ports.given[n] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n))
		var err error
		if network == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", addr); err == nil {
				ln.Close()
			}
		}
		if err == nil {
			ports.given[n] = true
			return addr
		}
	}
	t.Fatalf("no free %s port in [%d, %d)", network, lo, hi)
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}

// proc is a running lastmile process.
type proc struct {
	t       testing.TB
	cmd     *exec.Cmd
	HTTP    string
	Kafka   string
	Metrics string // the metrics listener (--metrics-listen)
	dataDir string
	args    []string
	stderr  *lockedBuffer
	exited  chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var readyHTTP = regexp.MustCompile(`http:\s+http://(\S+)`)
var readyKafka = regexp.MustCompile(`kafka:\s+(\S+)`)
var readyMetrics = regexp.MustCompile(`metrics:\s+http://(\S+)/metrics`)

// writeKeys writes an app keys file for the test app.
func writeKeys(t testing.TB, dir string) string {
	p := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(p, []byte("keys:\n  "+testKey+": "+testAppID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs `lastmile <role>` with a data dir and waits until it serves.
func start(t testing.TB, role, dataDir string, extra ...string) *proc {
	t.Helper()
	args := []string{role, "--data", dataDir, "--query-token", queryToken,
		"--keys", writeKeys(t, filepath.Dir(dataDir)), "--log-level", "warn"}
	hasListen := false
	for _, a := range extra {
		if a == "--listen" {
			hasListen = true
		}
	}
	if !hasListen {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	args = append(args, extra...)
	return startArgs(t, dataDir, args)
}

func startArgs(t testing.TB, dataDir string, args []string) *proc {
	t.Helper()
	// Metrics on a port of their own: the default 127.0.0.1:9464 would be
	// shared by every process of the run.
	i := slices.Index(args, "--metrics-listen")
	if i < 0 || i+1 == len(args) {
		args, i = append(args, "--metrics-listen", "127.0.0.1:0"), len(args)
	}
	needMetrics := args[i+1] != ""
	cmd := exec.Command(lastmileBin(t), args...)
	p := &proc{t: t, cmd: cmd, dataDir: dataDir, args: args, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	deadline := time.After(120 * time.Second)
	// The query and alert roles read the store only and have no Kafka address.
	needKafka := args[0] != "query" && args[0] != "alert"
	for p.HTTP == "" || (needKafka && p.Kafka == "") || (needMetrics && p.Metrics == "") {
		select {
		case l, ok := <-lines:
			if !ok {
				<-p.exited
				t.Fatalf("lastmile %v exited before serving: %s", args, p.stderr.String())
			}
			if m := readyHTTP.FindStringSubmatch(l); m != nil {
				p.HTTP = m[1]
			}
			if m := readyKafka.FindStringSubmatch(l); m != nil {
				p.Kafka = m[1]
			}
			if m := readyMetrics.FindStringSubmatch(l); m != nil {
				p.Metrics = m[1]
			}
		case <-deadline:
			p.kill()
			t.Fatalf("lastmile %v did not serve within 120s: %s", args, p.stderr.String())
		}
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Log(logTail(p))
		}
	})
	return p
}

// logTail returns the end of a process's stderr, where a crash shows.
func logTail(p *proc) string {
	state := "still running"
	if !p.running() {
		state = p.cmd.ProcessState.String()
	}
	s := p.stderr.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return "lastmile (" + state + ") stderr:\n" + s
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		p.kill()
		p.t.Fatalf("lastmile did not stop within 60s of SIGTERM: %s", p.stderr.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("lastmile exited with %d after SIGTERM: %s", code, p.stderr.String())
	}
}

// kill sends SIGKILL: no flush, no commit, no goodbye.
func (p *proc) kill() {
	if p.running() {
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// pid returns the OS process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

var client = &http.Client{Timeout: 60 * time.Second}

// postResult is a decoded collector answer.
type postResult struct {
	Status     int
	Accepted   int `json:"accepted"`
	SampledOut int `json:"sampled_out"`
	Rejected   []struct {
		Index int    `json:"index"`
		Code  string `json:"code"`
		Field string `json:"field"`
		Msg   string `json:"reason"`
	} `json:"rejected"`
	RequestID string `json:"request_id"`
	Error     string `json:"error"`
	Limit     string `json:"limit"`
}

// post sends a body to /v1/events.
func (p *proc) post(body []byte, gz bool, key string) (*postResult, error) {
	var rd io.Reader = bytes.NewReader(body)
	if gz {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(body)
		w.Close()
		rd = &b
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.HTTP+"/v1/events", rd)
	if key != "" {
		req.Header.Set("X-Lastmile-Key", key)
	}
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	r := &postResult{Status: resp.StatusCode}
	if err := json.Unmarshal(out, r); err != nil {
		return r, fmt.Errorf("status %d, undecodable body %q: %w", resp.StatusCode, out, err)
	}
	return r, nil
}

// sql runs a read-only statement through the read API and decodes the rows.
func (p *proc) sql(q string) ([]map[string]any, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/sql?q="+url.QueryEscape(q), nil)
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("sql %q: %d %s", q, resp.StatusCode, body)
	}
	var rows []map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		rows = append(rows, m)
	}
	return rows, nil
}

// sqlInt runs a query returning one number.
func (p *proc) sqlInt(t testing.TB, q string) int64 {
	t.Helper()
	rows, err := p.sql(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: want one value, got %v", q, rows)
	}
	for _, v := range rows[0] {
		return toInt(t, v)
	}
	return 0
}

func toInt(t testing.TB, v any) int64 {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			f, _ := x.Float64()
			return int64(f)
		}
		return n
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			t.Fatalf("not a number: %q", x)
		}
		return n
	}
	t.Fatalf("not a number: %v (%T)", v, v)
	return 0
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, last)
}

// metric scrapes one sample's value from /metrics (sum over label sets that
// contain every given label fragment).
func (p *proc) metric(t testing.TB, name string, fragments ...string) float64 {
	t.Helper()
	resp, err := client.Get("http://" + p.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}
