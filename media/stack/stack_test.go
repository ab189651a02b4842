package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/edge"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
	"github.com/lastmile-qoe/lastmile/media/topology"
)

// capture keeps every event.
type capture struct {
	mu  sync.Mutex
	evs []report.Event
}

func (c *capture) Log(ev report.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, ev)
	c.mu.Unlock()
}

func (c *capture) types() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, ev := range c.evs {
		out[ev["log_type"].(string)]++
	}
	return out
}

// testTopology is the default topology on ports the system picks.
func testTopology() topology.Topology {
	top := topology.Default()
	top.SchedulerListen, top.SchedulerAdmin, top.DNSListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	top.Ingest.Listen, top.Origin.RTMP, top.Origin.HTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	for ci := range top.Scheduler.CDNs {
		for ei := range top.Scheduler.CDNs[ci].Edges {
			top.Scheduler.CDNs[ci].Edges[ei].Port = 0
		}
	}
	return top
}

// startLive starts the test topology reporting to rep, waits until its
// stream is live, and closes it when the test ends.
func startLive(t *testing.T, rep Reporter) *Stack {
	t.Helper()
	st, err := Start(context.Background(), testTopology(), rep, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := st.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func needTool(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: .ci/run installs it (apt-get install ffmpeg)", name)
		}
		t.Skipf("%s not found; install ffmpeg to run this test", name)
	}
	return p
}

// TestStackStreams: the built-in publisher pushes through ingest to the
// origin, the ladder runs, and ffprobe reads every rendition's HTTP-FLV
// from an edge through a signed URL the scheduler handed out.
func TestStackStreams(t *testing.T) {
	ffprobe := needTool(t, "ffprobe")
	rep := &capture{}
	st := startLive(t, rep)
	resp, err := http.Get(st.SchedURL + "/v1/schedule?room=room1&region=north&device_id=d1&isp=isp-a&app_version=5.2.0")
	if err != nil {
		t.Fatal(err)
	}
	var sd scheduler.StreamData
	if err := json.NewDecoder(resp.Body).Decode(&sd); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, r := range sd.Renditions {
		u, _ := url.Parse(r.Main.URLs["flv"])
		u.Host = "127.0.0.1:" + u.Port() // the test resolves edge hosts itself
		q := u.Query()
		q.Set("CMCD", `sid="probe-`+r.Name+`"`)
		u.RawQuery = q.Encode()
		out, err := exec.Command(ffprobe, "-v", "error", "-read_intervals", "%+3", "-show_entries", "stream=codec_name", "-of", "csv=p=0", u.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v\n%s", r.Name, err, out)
		}
		got := strings.Fields(string(out))
		want := []string{"h264", "aac"}
		if r.AudioOnly {
			want = []string{"aac"}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") && !(len(got) == 2 && got[0] == "aac" && got[1] == "h264") {
			t.Errorf("rendition %s: ffprobe found %v, want %v", r.Name, got, want)
		}
	}
	// Unsigned requests are refused.
	e := sd.Renditions[0].Main
	if resp, err := http.Get("http://127.0.0.1:" + portOf(e.URLs["flv"]) + "/live/room1.flv"); err == nil {
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("unsigned play answered %s, want 403", resp.Status)
		}
		resp.Body.Close()
	}
	time.Sleep(200 * time.Millisecond) // edge_access is logged when ffprobe hangs up
	types := rep.types()
	for _, lt := range []string{"push_start", "ingest_session", "relay", "origin_stream", "transcode", "edge_access"} {
		if types[lt] == 0 {
			t.Errorf("no %s event; got %v", lt, types)
		}
	}
	var sids []string
	rep.mu.Lock()
	for _, ev := range rep.evs {
		if sid, ok := ev["session_id"].(string); ok && ev["log_type"] == "edge_access" {
			sids = append(sids, sid) // requests without a CMCD sid carry none
		}
	}
	rep.mu.Unlock()
	if !strings.Contains(strings.Join(sids, ","), "probe-source") {
		t.Errorf("edge_access session ids %v lack the CMCD sid probe-source", sids)
	}
}

func portOf(raw string) string {
	u, _ := url.Parse(raw)
	return u.Port()
}

// TestEdgePullsOnce: the first viewer of a stream makes the edge pull it
// from the origin (a cache miss with back_to_source_ms); viewers after it
// share that pull (cache hits); a refusing edge refuses connections, and
// heals.
func TestEdgePullsOnce(t *testing.T) {
	rep := &capture{}
	st := startLive(t, rep)
	var sd scheduler.StreamData
	resp, err := http.Get(st.SchedURL + "/v1/schedule?room=room1&region=south&device_id=d7")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&sd)
	resp.Body.Close()
	line := sd.Renditions[0].Main
	u, _ := url.Parse(line.URLs["flv"])
	u.Host = "127.0.0.1:" + u.Port()
	play := func(sid string) *http.Response {
		q := u.Query()
		q.Set("CMCD", `sid="`+sid+`"`)
		uu := *u
		uu.RawQuery = q.Encode()
		resp, err := http.Get(uu.String())
		if err != nil {
			t.Fatalf("play %s: %v", sid, err)
		}
		buf := make([]byte, 4096)
		if _, err := resp.Body.Read(buf); err != nil {
			t.Fatalf("play %s: %v", sid, err)
		}
		return resp
	}
	first := play("s-first")
	if got := first.Header.Get("X-Cache"); got != "MISS" {
		t.Errorf("first viewer X-Cache = %q, want MISS", got)
	}
	var later []*http.Response
	for i := 0; i < 5; i++ {
		r := play(fmt.Sprintf("s-later-%d", i))
		if got := r.Header.Get("X-Cache"); got != "HIT" {
			t.Errorf("viewer %d X-Cache = %q, want HIT", i+2, got)
		}
		later = append(later, r)
	}
	first.Body.Close()
	for _, r := range later {
		r.Body.Close()
	}
	time.Sleep(200 * time.Millisecond)
	pulls := 0
	rep.mu.Lock()
	for _, ev := range rep.evs {
		if ev["log_type"] != "edge_access" || ev["node_id"] != line.Node {
			continue
		}
		if ev["cache_hit"] == false {
			pulls++
			if _, ok := ev["back_to_source_ms"]; !ok || ev["session_id"] != "s-first" {
				t.Errorf("the miss is %v, want s-first with back_to_source_ms", ev)
			}
		}
	}
	rep.mu.Unlock()
	if pulls != 1 {
		t.Errorf("%d cache misses at %s, want 1 (only the first viewer pulls)", pulls, line.Node)
	}

	edge := st.Edges[line.Node]
	if err := edge.SetFault(edgeFault(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(u.String()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("refusing edge: err = %v, want connection refused", err)
	}
	if err := edge.SetFault(edgeFault(false)); err != nil {
		t.Fatal(err)
	}
	play("s-healed").Body.Close()
}

func edgeFault(refuse bool) edge.Fault { return edge.Fault{Refuse: refuse} }
