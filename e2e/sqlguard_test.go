package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
	"github.com/lastmile-qoe/lastmile/trace"
)

// sqlAnswer runs q through /api/v1/sql (GET) and returns status and body.
func (p *proc) sqlAnswer(t testing.TB, q string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/sql?q="+url.QueryEscape(q), nil)
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// countingListener accepts loopback connections and counts them: the
// address given to url(), remote(), mysql()... to see whether the engine
// reached out.
type countingListener struct {
	ln net.Listener
	n  atomic.Int64
}

func listenCounting(t *testing.T) *countingListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &countingListener{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

// TestSQLWindowRefusesHostAccess: a token holder's SQL can neither read nor
// write files on the host, nor insert rows, nor connect anywhere, nor lift
// the window's settings; every try gets a 4xx that says why, and has no
// effect. Legitimate reads still work.
func TestSQLWindowRefusesHostAccess(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")
	secret := filepath.Join(dir, "secret.txt")
	const secretText = "SECRET-d41d8cd98f00b204"
	if err := os.WriteFile(secret, []byte(secretText+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "query-token")
	if err := os.WriteFile(tokenFile, []byte(queryToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln := listenCounting(t)
	peer := ln.ln.Addr().String()
	out := func(n int) string { return filepath.Join(dir, fmt.Sprintf("out-%d.txt", n)) }

	// One stored event, so that the forged-row check has a table to count.
	now := time.Now().UnixMilli()
	r, err := p.post([]byte(fmt.Sprintf(`{"event_id":"real-1","log_type":"heartbeat","ts":%d,"device_id":"d1","session_id":"s1"}`, now)), false, testKey)
	if err != nil || r.Status != 200 || r.Accepted != 1 {
		t.Fatalf("post: %v %+v", err, r)
	}
	waitFor(t, 60*time.Second, "the event to be stored", func() (bool, string) {
		rows, err := p.sql("SELECT count() AS n FROM events")
		return err == nil && len(rows) == 1 && toInt(t, rows[0]["n"]) == 1, fmt.Sprint(rows, err)
	})

	attacks := []string{
		// Reading files: table function, scalar function, spelled around the guard.
		"SELECT * FROM file('/etc/passwd')",
		"SELECT * FROM file('" + secret + "', 'LineAsString')",
		"SELECT file('" + secret + "')",
		"SELECT file('" + tokenFile + "')",
		"SELECT file('/proc/self/environ')",
		"SELECT file('/proc/self/cmdline')", // holds --query-token
		"SELECT `file`('" + secret + "')",
		"SELECT file /* hidden */ ('" + secret + "')",
		"SELECT file\n('" + secret + "')",
		"WITH file('" + secret + "') AS s SELECT s",
		"EXPLAIN SYNTAX SELECT file('" + secret + "')",
		"DESCRIBE file('" + secret + "', 'LineAsString')",
		"SELECT * FROM fileCluster('default', '" + secret + "')",
		"SELECT * FROM filesystem('" + dir + "')",
		"SELECT 1; SELECT file('" + secret + "')",
		"SELECT 1 -- \nUNION ALL SELECT file('" + secret + "')",
		// Writing files.
		"SELECT 1 INTO OUTFILE '" + out(1) + "'",
		"SELECT 1 INTO/**/OUTFILE '" + out(2) + "'",
		"SELECT 1 into outfile '" + out(3) + "' TRUNCATE",
		"WITH 1 AS x INSERT INTO FUNCTION file('" + out(4) + "', 'TSV') SELECT 1",
		"INSERT INTO FUNCTION file('" + out(5) + "', 'TSV') SELECT 1",
		// Forging rows.
		"WITH 1 AS x INSERT INTO events (event_id, log_type, app_id, ts) VALUES ('forged-1', 'heartbeat', 'e2e-app', now64(3))",
		"INSERT INTO events (event_id, log_type, app_id, ts) VALUES ('forged-2', 'heartbeat', 'e2e-app', now64(3))",
		"CREATE TABLE forged (a UInt8) ENGINE = Memory",
		// Reaching other hosts.
		"SELECT * FROM url('http://" + peer + "/x', 'LineAsString')",
		"SELECT * FROM remote('" + peer + "', system.one)",
		"SELECT * FROM remoteSecure('" + peer + "', system.one)",
		"SELECT * FROM mysql('" + peer + "', 'db', 't', 'u', 'p')",
		"SELECT * FROM postgresql('" + peer + "', 'db', 't', 'u', 'p')",
		"SELECT * FROM s3('http://" + peer + "/bucket/x.csv')",
		"SELECT hasColumnInTable('" + peer + "', 'default', 'events', 'event_id')",
		"SELECT * FROM executable('id', 'TSV', 'a String')",
		// Lifting the window's settings.
		"SELECT 1 SETTINGS readonly = 0",
		"SELECT getSetting('max_execution_time') SETTINGS max_execution_time = 0",
		"SET readonly = 0",
		"SELECT 1 FORMAT TSV",
	}
	for _, q := range attacks {
		status, body := p.sqlAnswer(t, q)
		t.Logf("%.60q -> %d %.140s", q, status, body)
		if status < 400 || status >= 500 {
			t.Errorf("%q: got %d %.300s, want a 4xx refusal", q, status, body)
		}
		var eb query.ErrorBody
		if json.Unmarshal([]byte(body), &eb) != nil || eb.Error == "" {
			t.Errorf("%q: %d without an error message: %.300s", q, status, body)
		}
		for _, leak := range []string{secretText, queryToken, "root:x:0:0"} {
			if strings.Contains(body, leak) {
				t.Errorf("%q: the answer leaks %q: %.300s", q, leak, body)
			}
		}
	}
	for i := 1; i <= 5; i++ {
		if _, err := os.Stat(out(i)); err == nil {
			t.Errorf("%s was written", out(i))
		}
	}
	if n := ln.n.Load(); n != 0 {
		t.Errorf("the engine connected %d times to %s", n, peer)
	}
	// The store as the processor sees it: nothing forged, nothing created.
	if n := p.sqlInt(t, "SELECT count() FROM events WHERE event_id LIKE 'forged%'"); n != 0 {
		t.Errorf("%d forged rows in events", n)
	}
	if n := p.sqlInt(t, "SELECT count() FROM system.tables WHERE name = 'forged'"); n != 0 {
		t.Errorf("table forged was created")
	}

	// Legitimate reads, with comments, a trailing ';' and the guard's
	// words inside a string.
	for _, q := range []string{
		"SELECT count() FROM events",
		"SHOW TABLES",
		"DESCRIBE events",
		"DESC TABLE events",
		"EXPLAIN SELECT count() FROM events",
		"WITH 2 AS x SELECT x * count() AS n FROM events",
		"EXISTS TABLE events",
		"SELECT 'INTO OUTFILE file(x); SETTINGS' AS s -- a comment\n;",
		"/* lead */ SELECT log_type, count() FROM events GROUP BY log_type",
		"SELECT * FROM numbers(3)",
		"SELECT format('{}-{}', 'a', 'b') AS f",
	} {
		if status, body := p.sqlAnswer(t, q); status != 200 {
			t.Errorf("%q: got %d %s, want 200", q, status, body)
		}
	}
	rows, err := p.sql("SELECT 'INTO OUTFILE file(x); SETTINGS' AS s")
	if err != nil || len(rows) != 1 || rows[0]["s"] != "INTO OUTFILE file(x); SETTINGS" {
		t.Errorf("string literal: %v %v", rows, err)
	}

	// The result is bounded.
	status, body := p.sqlAnswer(t, "SELECT number FROM numbers(200000)")
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "max_result_rows") {
		t.Errorf("200000 rows: got %d %.300s, want 422 naming max_result_rows", status, body)
	}
}

// sleeperSQL sleeps ~23 s in one block: sleep() takes at most 3 s a call,
// and readonly=1 refuses SETTINGS max_block_size, so calls are summed.
const sleeperSQL = "SELECT sleep(2.9) + sleep(2.89) + sleep(2.88) + sleep(2.87) + sleep(2.86) + sleep(2.85) + sleep(2.84) + sleep(2.83) AS z"

// TestSQLWindowCannotStallIngest: long statements in the SQL window hold
// only the window's own connections. While as many of them run as the
// store has insert connections (4), events posted are stored and can be
// looked up by trace.
func TestSQLWindowCannotStallIngest(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0")

	const sleepers = 4
	type result struct {
		status int
		body   string
	}
	results := make(chan result, sleepers)
	var running atomic.Int64
	var wg sync.WaitGroup
	for range sleepers {
		running.Add(1)
		wg.Go(func() {
			defer running.Add(-1)
			s, b := p.sqlAnswer(t, sleeperSQL)
			results <- result{s, b}
		})
	}
	t.Cleanup(wg.Wait)
	time.Sleep(time.Second) // let the sleepers reach the engine

	now := time.Now().UnixMilli()
	var body strings.Builder
	for i := range 10 {
		fmt.Fprintf(&body, `{"event_id":"stall-%d","log_type":"heartbeat","ts":%d,"device_id":"d-stall","session_id":"s-stall"}`+"\n", i, now+int64(i))
	}
	r, err := p.post([]byte(body.String()), false, testKey)
	if err != nil || r.Status != 200 || r.Accepted != 10 {
		t.Fatalf("post: %v %+v", err, r)
	}
	// Generous against ingest's ~1 s, far short of the sleepers' 23 s.
	waitFor(t, 10*time.Second, "the events to be found by trace while the sleepers run", func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/trace?session_id=s-stall&since=1h", nil)
		req.Header.Set("Authorization", "Bearer "+queryToken)
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var res trace.Response
		if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil {
			return false, fmt.Sprintf("%d %.300s", resp.StatusCode, b)
		}
		n := 0
		for _, s := range res.Sessions {
			n += len(s.Events)
		}
		return n == 10, fmt.Sprintf("%d of 10 events", n)
	})
	if n := running.Load(); n != sleepers {
		t.Fatalf("only %d of %d sleepers were still running when the events were found: the test proves nothing", n, sleepers)
	}

	wg.Wait()
	close(results)
	for res := range results {
		if res.status != 200 {
			t.Errorf("sleeper: got %d %.300s, want 200 (under the 30 s limit)", res.status, res.body)
		}
	}
}

// TestSQLWindowTimeLimit: a statement over --sql-timeout is stopped by the
// engine, with a 422 that names the limit; one under it answers.
func TestSQLWindowTimeLimit(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0", "--sql-timeout", "4s")
	if status, body := p.sqlAnswer(t, "SELECT sleep(1) AS z"); status != 200 {
		t.Errorf("1 s statement: got %d %s, want 200", status, body)
	}
	status, body := p.sqlAnswer(t, sleeperSQL)
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "max_execution_time") || !strings.Contains(body, "Timeout exceeded") {
		t.Errorf("23 s statement: got %d %.300s, want 422 naming max_execution_time", status, body)
	}
}
