package edge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lastmile-qoe/lastmile/media/report"
)

type recordRep struct {
	mu  sync.Mutex
	evs []report.Event
}

func (r *recordRep) Log(ev report.Event) { r.mu.Lock(); r.evs = append(r.evs, ev); r.mu.Unlock() }

// Every request gets one edge_access, with a CMCD sid or without one, for a
// play path or any other: refused ones (403 bad signature, 404, 405) too.
// One without a sid carries no session_id at all (not an empty one), one
// for no stream no stream_id.
func TestEveryRequestLogged(t *testing.T) {
	rep := &recordRep{}
	e := New(Config{Node: "edge-t", Region: "north", CDN: "cdn-a", Secret: "s3cret", Origin: "http://127.0.0.1:1"}, rep, nil)
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	cases := []struct {
		method, path string
		status       int
		sid, stream  string
	}{
		{"GET", "/live/room1.flv", 403, "", "live/room1"},
		{"GET", "/live/room1.flv?CMCD=" + `sid%3D%22s-1%22`, 403, "s-1", "live/room1"},
		{"GET", "/live/room1_480p/index.m3u8", 403, "", "live/room1"},
		{"GET", "/favicon.ico", 404, "", ""},
		{"GET", "/live/a/b/c", 404, "", ""},
		{"POST", "/live/room1.flv", 405, "", ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.evs) != len(cases) {
		t.Fatalf("%d edge_access events for %d requests: %v", len(rep.evs), len(cases), rep.evs)
	}
	for i, c := range cases {
		ev := rep.evs[i]
		sid, hasSid := ev["session_id"]
		stream, hasStream := ev["stream_id"]
		if ev["log_type"] != "edge_access" || ev["http_status"] != c.status || ev["node_id"] != "edge-t" ||
			hasSid != (c.sid != "") || (hasSid && sid != c.sid) || hasStream != (c.stream != "") || (hasStream && stream != c.stream) {
			t.Errorf("%s %s: logged %v; want status %d, sid %q, stream %q", c.method, c.path, ev, c.status, c.sid, c.stream)
		}
	}
}
