package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// needTool finds an outside tool (ffmpeg, ffprobe). Without it the test
// skips, except under CI=true, where .ci/run installs it and a missing tool
// is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: .ci/run installs it (apt-get install ffmpeg)", name)
		}
		t.Skipf("%s not found: install ffmpeg (apt-get install ffmpeg) to run this test", name)
	}
	return p
}

// freeUDP returns a loopback address with a currently free UDP port.
func freeUDP(t testing.TB) string { return freeAddr(t, "udp") }

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// mediaTopology writes a topology file on free ports reporting to
// collector, with players as given (YAML fragment, "" for none).
func mediaTopology(t *testing.T, collector, players string) string {
	if players == "" {
		players = "  count: 0\n"
	}
	edges := map[string]string{}
	for _, n := range []string{"a-north", "a-south", "b-north", "b-south"} {
		edges[n] = port(freePort(t))
	}
	y := fmt.Sprintf(`collector: {url: "http://%s", app_key: %s}
scheduler_listen: %s
scheduler_admin: %s
dns_listen: %s
ingest: {listen: %s, http: %s, node: ingest-1, region: north}
origin: {rtmp: %s, http: %s, admin: %s, node: origin-1, region: north}
scheduler:
  secret: e2e-secret
  push_token: `+mediaPushToken+`
  ingest_url: rtmp://127.0.0.1/live
  cdns:
    - name: cdn-a
      weight: 50
      edges:
        - {node: edge-a-north-1, region: north, host: edge-a-north-1.cdn-a.lastmile.test, port: %s}
        - {node: edge-a-south-1, region: south, host: edge-a-south-1.cdn-a.lastmile.test, port: %s}
    - name: cdn-b
      weight: 50
      edges:
        - {node: edge-b-north-1, region: north, host: edge-b-north-1.cdn-b.lastmile.test, port: %s}
        - {node: edge-b-south-1, region: south, host: edge-b-south-1.cdn-b.lastmile.test, port: %s}
  renditions:
    - {name: source, bitrate_kbps: 2000, width: 1280, height: 720}
    - {name: 480p, bitrate_kbps: 800, width: 854, height: 480}
    - {name: audio, bitrate_kbps: 64, audio_only: true}
rooms:
  - {name: room1, bitrate_kbps: 2000}
players:
%s`, collector, testKey, freePort(t), freePort(t), freeUDP(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t),
		edges["a-north"], edges["a-south"], edges["b-north"], edges["b-south"], players)
	p := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mediaPushToken is the scheduler's push token in mediaTopology.
const mediaPushToken = "e2e-push-token"

var mediaUp = regexp.MustCompile(`scheduler:\s+(http://\S+)`)

// startMedia runs `lastmile media up` and returns the scheduler's URL.
func startMedia(t *testing.T, config string, extra ...string) (sched string, p *proc) {
	t.Helper()
	m, p := startMediaRole(t, mediaUp, append([]string{"up", "--config", config}, extra...)...)
	return m[1], p
}

// startMediaRole runs `lastmile media <args>` and waits for a stdout line
// matching ready, whose submatches it returns.
func startMediaRole(t *testing.T, ready *regexp.Regexp, args ...string) ([]string, *proc) {
	t.Helper()
	args = append([]string{"media"}, append(args, "--log-level", "warn")...)
	cmd := exec.Command(lastmileBin(t), args...)
	p := &proc{t: t, cmd: cmd, args: args, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Log(logTail(p))
		}
	})
	select {
	case m := <-found:
		return m, p
	case <-p.exited:
		t.Fatalf("lastmile %v exited: %s", args, p.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("lastmile %v did not come up in 60s: %s", args, p.stderr.String())
	}
	return nil, p
}

func getJSON(t *testing.T, u string, v any) { t.Helper(); getJSONAuth(t, u, "", v) }

// getJSONAuth is getJSON with a bearer token ("" for none).
func getJSONAuth(t *testing.T, u, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// TestMediaFFmpegInterop: ffmpeg pushes RTMP into our ingest with a signed
// URL from the scheduler; ffprobe reads the stream as HTTP-FLV from an edge
// (the origin relayed, the edge went back to source); the ingest's and the
// edge's logs reach ClickHouse through the pipeline.
func TestMediaFFmpegInterop(t *testing.T) {
	ffmpeg, ffprobe := needTool(t, "ffmpeg"), needTool(t, "ffprobe")
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	sched, _ := startMedia(t, mediaTopology(t, pipe.HTTP, ""))

	var push struct{ URL string }
	getJSONAuth(t, sched+"/v1/push?room=ffroom", mediaPushToken, &push)
	// ffmpeg sends the publish name with its query (ffroom?expires=..&sign=..).
	ff := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "flv", push.URL)
	ffOut := &lockedBuffer{}
	ff.Stdout, ff.Stderr = ffOut, ffOut
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	defer ff.Process.Kill()

	var sd struct {
		Renditions []struct {
			Name string
			Main struct {
				Node string
				URLs map[string]string
			}
		}
	}
	getJSON(t, sched+"/v1/schedule?room=ffroom&region=south&device_id=ff-viewer&isp=isp-a&app_version=5.2.0", &sd)
	src := sd.Renditions[0]
	u, _ := url.Parse(src.Main.URLs["flv"])
	u.Host = "127.0.0.1:" + u.Port() // ffprobe resolves with the system resolver, not the stack's DNS
	q := u.Query()
	q.Set("CMCD", `sid="ffprobe-session"`)
	u.RawQuery = q.Encode()
	var out []byte
	var err error
	// The push takes a moment to reach the origin.
	for i := 0; i < 20; i++ {
		out, err = exec.Command(ffprobe, "-v", "error", "-read_intervals", "%+3", "-count_frames",
			"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", u.String()).CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s\nffmpeg: %s", u, err, out, ffOut.String())
	}
	var probe struct {
		Streams []struct {
			CodecName    string `json:"codec_name"`
			Width        int
			Height       int
			NbReadFrames string `json:"nb_read_frames"`
		}
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	codecs := map[string]bool{}
	for _, s := range probe.Streams {
		codecs[s.CodecName] = true
		if s.CodecName == "h264" && (s.Width != 320 || s.Height != 180) {
			t.Errorf("h264 stream is %dx%d, want 320x180 as pushed", s.Width, s.Height)
		}
	}
	if !codecs["h264"] || !codecs["aac"] {
		t.Fatalf("ffprobe found %s, want h264 and aac", out)
	}
	// The edge logged the play with the session id ffprobe sent, the
	// ingest logged the ffmpeg publish; both are in ClickHouse.
	waitFor(t, 30*time.Second, "edge_access and ingest_session of the ffmpeg push in ClickHouse", func() (bool, string) {
		e := pipe.sqlInt(t, "SELECT count() FROM edge_access WHERE session_id = 'ffprobe-session' AND stream_id = 'live/ffroom' AND http_status = 200")
		i := pipe.sqlInt(t, "SELECT count() FROM ingest_session WHERE stream_id = 'live/ffroom' AND state = 'start'")
		return e > 0 && i > 0, fmt.Sprintf("edge_access %d, ingest_session start %d", e, i)
	})
}

// TestMediaUpAudience is issue 4's acceptance run: `lastmile media up` with
// one built-in publisher and 50 players across 2 regions and 2 CDNs, logging
// to a real pipeline. Every log type of the catalog arrives; every player's
// first-frame phases add up to its total; edge_access rows join the players'
// sessions by session_id.
func TestMediaUpAudience(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s streaming run")
	}
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	top := mediaTopology(t, pipe.HTTP, `  count: 50
  ramp: 10s
  watch: 45s
  seed: 7
  regions: [north, south]
  app_versions: ["5.1.0", "5.2.0"]
  weak_share: 0.2
  weak_kbps: 1200
  decoder_defect: {app_version: "5.1.0", render_stall_every: 8s, render_stall_for: 400ms}
`)
	_, media := startMedia(t, top, "--duration", "62s")
	select {
	case <-media.exited:
	case <-time.After(90 * time.Second):
		t.Fatal("lastmile media up --duration 62s still running after 90 s")
	}
	if code := media.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("lastmile media up exited %d", code)
	}
	types := []string{"play_start", "first_frame", "stall", "render_stall", "play_stop", "heartbeat",
		"push_start", "push_stats", "push_stop", "ingest_session", "relay", "origin_stream", "transcode", "edge_access"}
	waitFor(t, 30*time.Second, "every log type in ClickHouse", func() (bool, string) {
		var missing []string
		for _, lt := range types {
			if pipe.sqlInt(t, "SELECT count() FROM events WHERE log_type = '"+lt+"'") == 0 {
				missing = append(missing, lt)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v", missing)
	})
	players := pipe.sqlInt(t, "SELECT uniqExact(session_id) FROM play_start")
	ff := pipe.sqlInt(t, "SELECT uniqExact(session_id) FROM first_frame")
	if players < 50 || ff < 45 {
		t.Errorf("%d play sessions, %d with a first frame; want 50 and at least 45", players, ff)
	}
	if bad := pipe.sqlInt(t, `SELECT count() FROM first_frame WHERE total_ms != dns_ms + tcp_connect_ms + tcp_first_packet_ms
		+ video_first_packet_ms + first_decode_ms + first_render_ms`); bad != 0 {
		t.Errorf("%d first_frame events whose phases do not add up to total_ms", bad)
	}
	if n := pipe.sqlInt(t, "SELECT uniqExact(region) * 10 + uniqExact(cdn) FROM first_frame"); n != 22 {
		t.Errorf("first frames came from %d regions×10 + CDNs, want 2 regions and 2 CDNs", n)
	}
	// Every session that reached its edge has the edge's access log under
	// its session_id, from the node the player names.
	if orphans := pipe.sqlInt(t, `SELECT count() FROM (SELECT DISTINCT session_id, node_id FROM first_frame)
		WHERE (session_id, node_id) NOT IN (SELECT session_id, node_id FROM edge_access)`); orphans != 0 {
		t.Errorf("%d first-frame sessions without an edge_access row from their node", orphans)
	}
	if j := pipe.sqlInt(t, "SELECT uniqExact(session_id) FROM edge_access WHERE session_id IN (SELECT session_id FROM play_start)"); j < ff {
		t.Errorf("edge_access joins %d player sessions, want at least the %d with a first frame", j, ff)
	}
}
