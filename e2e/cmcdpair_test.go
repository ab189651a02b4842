package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// cmcdPlay writes the event-mode reports of one hls.js play, times in ms
// after t0.
type cmcdPlay struct {
	sid string
	t0  int64
}

func (c cmcdPlay) report(sta string, at int64) string {
	return fmt.Sprintf(`cid="room1",e=ps,mtp=(500),sf=h,sid="%s",sn=2,sta=%s,ts=%d,v=2`, c.sid, sta, c.t0+at)
}

// postCMCDBody posts a body of reports to p's /v1/cmcd as a page of origin
// does ("" sends no Origin).
func postCMCDBody(t *testing.T, p *proc, body, origin string) (*http.Response, []byte, cmcdAnswer) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+p.HTTP+"/v1/cmcd?key="+testKey, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cmcd")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var r cmcdAnswer
	json.Unmarshal(ans, &r)
	return resp, ans, r
}

// postCMCD posts reports to p's /v1/cmcd and wants every one accepted.
func postCMCD(t *testing.T, p *proc, reports ...string) {
	t.Helper()
	resp, ans, r := postCMCDBody(t, p, strings.Join(reports, "\n"), "")
	if resp.StatusCode != 200 || r.Reports != len(reports) || len(r.Rejected) != 0 {
		t.Fatalf("POST /v1/cmcd: %d %s", resp.StatusCode, ans)
	}
}

// sessionRows counts the session's client rows by log_type and reads the
// fields the pairing makes: "log_type total_ms duration_ms stall_count".
func sessionRows(t *testing.T, p *proc, sid string) (map[string]int64, []string) {
	t.Helper()
	rows, err := p.sql(fmt.Sprintf("SELECT log_type, total_ms, duration_ms, stall_count FROM events WHERE session_id = '%s' AND source = 'client' ORDER BY ts, log_type", sid))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int64{}
	var got []string
	for _, row := range rows {
		lt := fmt.Sprint(row["log_type"])
		n[lt]++
		got = append(got, fmt.Sprint(lt, " ", row["total_ms"], " ", row["duration_ms"], " ", row["stall_count"]))
	}
	return n, got
}

// TestCMCDPairingSurvivesKill: the start report of a play reaches `lastmile
// run`, which is killed with -9 and restarted on its data dir; the play's
// later reports go to the new process. The pairing stage rebuilds the
// session from the reports topic: one play_start, a first_frame with the
// startup time across the restart, the stall paired, the play_stop counting
// it, and no event twice (the re-derived ones are dropped as duplicates).
func TestCMCDPairingSurvivesKill(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--kafka-listen", "127.0.0.1:0"}
	p := start(t, "run", data, args...)
	play := cmcdPlay{sid: "pair-kill-0001", t0: time.Now().Add(-2 * time.Minute).UnixMilli()}
	postCMCD(t, p, play.report("s", 0))
	waitFor(t, 60*time.Second, "the play_start before the kill", func() (bool, string) {
		n, got := sessionRows(t, p, play.sid)
		return n["play_start"] == 1, strings.Join(got, "; ")
	})
	// The open session holds the commit point at its start report: what a
	// restart reads again.
	waitFor(t, 30*time.Second, "one open session, its report uncommitted", func() (bool, string) {
		open, unc := p.metric(t, "lastmile_collector_cmcd_open_sessions"), p.metric(t, "lastmile_collector_cmcd_uncommitted_reports")
		return open == 1 && unc == 1, fmt.Sprintf("open %v uncommitted %v", open, unc)
	})
	p.kill()

	p = start(t, "run", data, args...)
	postCMCD(t, p, play.report("p", 1234))
	postCMCD(t, p, play.report("r", 5000), play.report("p", 6500))
	postCMCD(t, p, play.report("e", 9000))
	want := []string{"play_start <nil> <nil> <nil>", "first_frame 1234 <nil> <nil>", "stall <nil> 1500 <nil>", "play_stop <nil> <nil> 1"}
	checkPairedPlay(t, p, play.sid, want)
	// Stopped, the play no longer holds the commit point.
	waitFor(t, 30*time.Second, "no open session, all committed", func() (bool, string) {
		open, unc := p.metric(t, "lastmile_collector_cmcd_open_sessions"), p.metric(t, "lastmile_collector_cmcd_uncommitted_reports")
		return open == 0 && unc == 0, fmt.Sprintf("open %v uncommitted %v", open, unc)
	})
}

// checkPairedPlay waits for the play's play_stop, lets what else is in
// flight land, and wants exactly the rows want, each once.
func checkPairedPlay(t *testing.T, p *proc, sid string, want []string) {
	t.Helper()
	waitFor(t, 60*time.Second, "the play_stop", func() (bool, string) {
		n, got := sessionRows(t, p, sid)
		return n["play_stop"] >= 1, strings.Join(got, "; ")
	})
	// Duplicates would come from re-read reports, produced before the new
	// ones: give the processor's other topics a moment to land them too.
	time.Sleep(3 * time.Second)
	n, got := sessionRows(t, p, sid)
	for lt, c := range n {
		if c != 1 {
			t.Errorf("%d %s rows, want 1", c, lt)
		}
	}
	sort.Strings(got)
	w := append([]string(nil), want...)
	sort.Strings(w)
	if strings.Join(got, "\n") != strings.Join(w, "\n") {
		t.Errorf("client rows of the session:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(w, "\n"))
	}
}

// TestCMCDPairingAcrossReplicas: two collector replicas on one broker; a
// play's start report goes to one, its playing report to the other. The
// pairing stage reads both from one partition and pairs them.
func TestCMCDPairingAcrossReplicas(t *testing.T) {
	dir := t.TempDir()
	run := start(t, "run", filepath.Join(dir, "run"), "--kafka-listen", "127.0.0.1:0")
	coll := start(t, "collector", filepath.Join(dir, "collector"), "--kafka", run.Kafka)
	play := cmcdPlay{sid: "pair-replicas-0001", t0: time.Now().Add(-2 * time.Minute).UnixMilli()}
	postCMCD(t, run, play.report("s", 0))
	postCMCD(t, coll, play.report("p", 1234))
	postCMCD(t, coll, play.report("e", 9000))
	checkPairedPlay(t, run, play.sid, []string{"play_start <nil> <nil> <nil>", "first_frame 1234 <nil> <nil>", "play_stop <nil> <nil> 0"})
}
