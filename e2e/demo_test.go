package e2e

import (
	"bufio"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// demoScenario is a short scenario for TestDemoCommands: an edge fault
// (failures, by node) and a client fault (slow starts, by isp: it fails
// nothing, so it does not blur the node breakdown), over by 30 s, so the affected viewers have played (8 s
// each) by the time the test pastes the commands at 40 s; the rest of the
// run is time for the commands, after which the test stops the demo. 96
// viewers over the ramp give each fault enough failed or slow starts for
// the live localizer to name its cohort.
const demoScenario = `name: demo-e2e
description: a short demo for the e2e test.
duration: 120s
topology:
  rooms:
    - {name: room1, bitrate_kbps: 1000}
  players:
    count: 96
    ramp: 35s
    watch: 8s
    seed: 5
    weak_share: 0
faults:
  - {name: edge-b-south-1 refuses, scope: edge, kind: refuse, node: edge-b-south-1, at: 5s, for: 25s}
  - {name: isp-c dns slow, scope: client, kind: dns_slow, isp: isp-c, delay: 3s, at: 5s, for: 25s}
`

var demoProgress = regexp.MustCompile(`^\[(\d\d):(\d\d) / `)

// TestDemoCommands runs `lastmile demo` on a short scenario with its own
// pipeline on a free port and a data directory other than the default, and
// pastes every command it prints into a shell (as a user would, from
// another directory, with no LASTMILE_* variables): each must succeed and
// show what it promises (the fault's group, the device's sessions).
func TestDemoCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("a demo run of about a minute")
	}
	tmp := t.TempDir()
	scFile := filepath.Join(tmp, "demo-e2e.yaml")
	if err := os.WriteFile(scFile, []byte(demoScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	// The printed commands say `lastmile`: put the binary under test on
	// PATH by that name.
	binDir := filepath.Join(tmp, "bin")
	os.MkdirAll(binDir, 0o755)
	if err := os.Symlink(lastmileBin(t), filepath.Join(binDir, "lastmile")); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LASTMILE_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	dataDir := filepath.Join(tmp, "demo data") // a blank: the printed --data must be quoted
	elsewhere := filepath.Join(tmp, "elsewhere")
	os.MkdirAll(elsewhere, 0o755)

	// The demo's alert role delivers to a plain webhook.
	hook := &amHook{}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	cmd := exec.Command(lastmileBin(t), "demo", "--scenario", scFile, "--data", dataDir, "--listen", "127.0.0.1:0", "--webhook", hookSrv.URL)
	cmd.Env, cmd.Dir = env, tmp
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, done := make(chan error, 1), make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// Collect the printed commands, then wait until the faults are over
	// and their viewers have played (elapsed ≥ 40 s).
	var printed []string
	var all strings.Builder
	deadline := time.After(4 * time.Minute)
	ready := false
	for !ready {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo ended before 40 s of its scenario:\n%s\n%s", all.String(), stderr.String())
			}
			all.WriteString(l + "\n")
			if strings.HasPrefix(l, "  lastmile ") || strings.HasPrefix(l, "  curl ") { // the "where to look" lines
				printed = append(printed, strings.TrimSpace(l))
			}
			if m := demoProgress.FindStringSubmatch(l); m != nil {
				min, _ := strconv.Atoi(m[1])
				sec, _ := strconv.Atoi(m[2])
				ready = min*60+sec >= 40
			}
		case <-deadline:
			t.Fatalf("the demo did not reach 40 s of its scenario in 4 minutes:\n%s\n%s", all.String(), stderr.String())
		}
	}
	t.Logf("demo output so far:\n%s", all.String())

	// What each command must show: a metrics command its fault's group
	// with the highest value, a trace its device's sessions.
	re := func(expr string) func([]byte) bool { return regexp.MustCompile(expr).Match }
	want := map[string]func([]byte) bool{
		"--group-by node_id": standsOut("edge-b-south-1"),
		"--group-by isp":     standsOut("isp-c"),
		"lastmile trace":     re(`device_id dev-[0-9a-z]+-viewer-\d{4}: [1-9]\d* session\(s\)`),
		// the live localizer names both faults' cohorts: the node (or its
		// CDN and region) and the ISP
		"lastmile localize": namesCohorts(`node_id=edge-b-south-1|cdn=cdn-b region=south`, `isp=isp-c`),
		// the alert rules fired on the refusing node, at edge scope
		"lastmile alerts": re(`(?m)^(firing|resolved)\s.*\sedge\s.*node_id=edge-b-south-1`),

		"curl ": re(`"sessions":\s*\[\s*\{`),
	}
	seen := map[string]int{}
	for _, c := range printed {
		var check func([]byte) bool
		for k, f := range want {
			if strings.Contains(c, k) {
				check = f
				seen[k]++
			}
		}
		if check == nil {
			t.Errorf("printed command %q: no check for it", c)
			continue
		}
		// The pipeline stores what the players posted within seconds: retry
		// a little before calling a command wrong.
		var out []byte
		var err error
		tries := 15
		if strings.Contains(c, "lastmile alerts") {
			tries = 60 // rules fire after their windows persist (docs/alerts.md)
		}
		for try := 0; try < tries; try++ {
			sh := exec.Command("sh", "-c", c)
			sh.Env, sh.Dir = env, elsewhere
			out, err = sh.CombinedOutput()
			if err == nil && check(out) {
				break
			}
			t.Logf("pasted %q (try %d): err %v, output:\n%.600s", c, try+1, err, out)
			time.Sleep(time.Second)
		}
		if err != nil || !check(out) {
			t.Errorf("pasted %q: err %v, not what it should show:\n%s", c, err, out)
		} else {
			t.Logf("pasted %q:\n%.1500s", c, out)
		}
	}
	for k := range want {
		if seen[k] == 0 {
			t.Errorf("the demo printed no command with %q:\n%s", k, all.String())
		}
	}

	// The webhook got the node's firing notice.
	delivered := false
	for _, n := range hook.notices() {
		for _, a := range n.Alerts {
			delivered = delivered || (n.Status == "firing" && a.Labels["node_id"] == "edge-b-south-1" && a.Labels["scope"] == "edge")
		}
	}
	if !delivered {
		t.Errorf("the --webhook receiver got no firing notice for edge-b-south-1: %+v", hook.notices())
	}

	// Ctrl-C stops the demo cleanly.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("lastmile demo after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Errorf("the demo did not stop within a minute of Ctrl-C")
	}
}

// standsOut checks a one-dimension `lastmile metrics` table: group has the
// highest total of all rows, and there are other rows.
func standsOut(group string) func([]byte) bool {
	return func(out []byte) bool {
		best, top, rows := "", -1.0, 0
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 {
				continue
			}
			v, err := strconv.ParseFloat(strings.ReplaceAll(f[1], ",", ""), 64)
			if err != nil {
				continue
			}
			rows++
			if v > top {
				best, top = f[0], v
			}
		}
		return rows > 1 && best == group
	}
}

// namesCohorts checks `lastmile localize` output: for each pattern, an
// incident's heading ("N. span  SCOPE  kpi on dims") names a cohort it
// matches.
func namesCohorts(patterns ...string) func([]byte) bool {
	heading := regexp.MustCompile(`(?m)^\d+\. .* on (.*)$`)
	return func(out []byte) bool {
		cohorts := heading.FindAllSubmatch(out, -1)
		for _, p := range patterns {
			re := regexp.MustCompile(`(^|\s)(` + p + `)(\s|$)`)
			if !slices.ContainsFunc(cohorts, func(m [][]byte) bool { return re.Match(m[1]) }) {
				return false
			}
		}
		return true
	}
}
