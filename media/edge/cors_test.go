package edge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/cors/corstest"
	"github.com/lastmile-qoe/lastmile/media/sign"
)

// Media answers carry Access-Control-Allow-Origin for pages on any origin
// by default (refusals too, so a page can read why), or for the configured
// origins only; preflights are answered with the methods and the CMCD and
// Range headers a player sends, refused for anything else, and logged as
// no edge_access.
func TestMediaCORS(t *testing.T) {
	type hdrs = map[string]string
	const page = "http://page.test:8000"
	cases := []corstest.Case{
		{Name: "no Origin: no CORS headers", Method: "GET", Target: "/live/room1.flv", Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": ""}},
		{Name: "GET from a page", Method: "GET", Target: "/live/room1/index.m3u8", Req: hdrs{"Origin": page}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Length, Content-Range, X-Cache, X-Edge-Node"}},
		{Name: "HEAD from a page", Method: "HEAD", Target: "/live/room1.flv", Req: hdrs{"Origin": page}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": "*"}},
		{Name: "preflight of a CMCD-header request", Method: "OPTIONS", Target: "/live/room1/seg-3.ts",
			Req: hdrs{"Origin": page, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "cmcd-request,cmcd-session, range"}, Status: 204,
			Want: hdrs{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
				"Access-Control-Allow-Headers": "CMCD-Request, CMCD-Object, CMCD-Status, CMCD-Session, Range", "Access-Control-Max-Age": "600"}},
		{Name: "preflight of a POST", Method: "OPTIONS", Target: "/live/room1.flv",
			Req: hdrs{"Origin": page, "Access-Control-Request-Method": "POST"}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Methods": ""}},
		{Name: "preflight of an unknown header", Method: "OPTIONS", Target: "/live/room1.flv",
			Req: hdrs{"Origin": page, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "X-Secret"}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Headers": ""}},
		{Name: "listed origin", Origins: []string{"https://app.example/"}, Method: "GET", Target: "/live/room1.flv", Req: hdrs{"Origin": "https://app.example"}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": "https://app.example", "Vary": "Origin"}},
		{Name: "unlisted origin", Origins: []string{"https://app.example"}, Method: "GET", Target: "/live/room1.flv", Req: hdrs{"Origin": "https://evil.example"}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": "", "Vary": "Origin"}},
		{Name: "preflight of an unlisted origin", Origins: []string{"https://app.example"}, Method: "OPTIONS", Target: "/live/room1.flv",
			Req: hdrs{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": ""}},
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			rep := &recordRep{}
			e := New(Config{Node: "edge-t", Secret: "s3cret", Origin: "http://127.0.0.1:1", CORSOrigins: c.Origins}, rep, nil)
			corstest.Check(t, e.Handler(), c)
			rep.mu.Lock()
			defer rep.mu.Unlock()
			if preflight := c.Method == "OPTIONS"; (len(rep.evs) == 0) != preflight {
				t.Errorf("%d edge_access events; want one per play request, none per preflight", len(rep.evs))
			}
		})
	}
}

// hlsSample is the segment query hls.js 1.7.4 sent (CMCD v2), verbatim.
const hlsSample = `bl=(4400),br=(0),cid="room1",d=2000,dl=4400,lb=(0),mtp=(206100),pb=(0),rtp=0,sf=h,sid="91a28b06-b2f5-429e-acd2-e25e2a3143d5",sn=33,st=l,sta=p,tpb=(0),v=2`

// Every CMCD key of a request lands in its edge_access, from the query or
// the four headers: the keys metrics use typed, the others (sid aside) as
// CMCD text in cmcd_rest; a value that fits no column stays in cmcd_rest.
func TestAccessCMCD(t *testing.T) {
	cases := []struct {
		name  string
		query string
		hdr   map[string]string
		want  map[string]any
	}{
		{"hls.js query", "CMCD=" + url.QueryEscape(hlsSample), nil, map[string]any{
			"session_id": "91a28b06-b2f5-429e-acd2-e25e2a3143d5", "cmcd_bl": int64(4400), "cmcd_br": int64(0), "cmcd_mtp": int64(206100),
			"cmcd_d": int64(2000), "cmcd_rtp": int64(0), "cmcd_sf": "h", "cmcd_st": "l",
			"cmcd_rest": "cid=room1,dl=4400,lb=(0),pb=(0),sn=33,sta=p,tpb=(0),v=2"}},
		{"headers", "", map[string]string{
			"CMCD-Request": "bl=1200,mtp=800,nor=\"../seg-4.ts\"", "CMCD-Object": "br=(2500),d=2000,ot=v",
			"CMCD-Status": "bs,rtp=4000", "CMCD-Session": `sid="h-1",sf=h,st=l,su,cid="a \"b\", c"`}, map[string]any{
			"session_id": "h-1", "cmcd_bl": int64(1200), "cmcd_mtp": int64(800), "cmcd_br": int64(2500), "cmcd_d": int64(2000),
			"cmcd_ot": "v", "cmcd_rtp": int64(4000), "cmcd_sf": "h", "cmcd_st": "l", "cmcd_su": true,
			"cmcd_rest": `bs=true,cid="a \"b\", c",nor=../seg-4.ts`}},
		{"odd values stay as sent", "CMCD=" + url.QueryEscape(`bl=-3,mtp=(100 200),sid="s"`), nil, map[string]any{
			"session_id": "s", "cmcd_rest": "bl=-3,mtp=\"(100 200)\""}},
		{"no CMCD", "", nil, map[string]any{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := &recordRep{}
			e := New(Config{Node: "edge-t", Secret: "s3cret", Origin: "http://127.0.0.1:1"}, rep, nil)
			srv := httptest.NewServer(e.Handler())
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/live/room1/seg-33.ts?"+c.query, nil)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			rep.mu.Lock()
			defer rep.mu.Unlock()
			if len(rep.evs) != 1 {
				t.Fatalf("%d events, want 1", len(rep.evs))
			}
			ev := rep.evs[0]
			for k, v := range c.want {
				if ev[k] != v {
					t.Errorf("%s = %#v, want %#v", k, ev[k], v)
				}
			}
			for k := range ev {
				if _, ok := c.want[k]; !ok && (strings.HasPrefix(k, "cmcd") || k == "session_id") {
					t.Errorf("unexpected %s = %#v", k, ev[k])
				}
			}
		})
	}
}

// A playlist asked for with CMCD (and any other key) in its query lists
// segment URIs that carry the signature only, and they play.
func TestPlaylistSegmentURIsCarrySignatureOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	origin := liveOrigin(t, 2*time.Second)
	_, rep, base := startEdge(t, Config{Origin: origin, Secret: "s3cret"})
	u, _ := url.Parse(base + "/live/room1/index.m3u8")
	sign.SignURL("s3cret", u, time.Hour, time.Now())
	sig := u.RawQuery
	q := u.Query()
	q.Set("CMCD", hlsSample)
	q.Set("player", "hls.js")
	u.RawQuery = q.Encode()
	waitPlaylist(t, u.String())
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var segs []string
	for _, line := range strings.Split(string(body), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			segs = append(segs, line)
		}
	}
	if len(segs) == 0 {
		t.Fatalf("no segments in\n%s", body)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %s for a %d-byte playlist", cl, len(body))
	}
	for _, s := range segs {
		name, query, _ := strings.Cut(s, "?")
		if !strings.HasPrefix(name, "seg-") || query != sig {
			t.Errorf("segment URI %q, want seg-N.ts?%s", s, sig)
		}
	}
	seg, _ := url.Parse(base + "/live/room1/" + segs[0])
	resp, err = http.Get(seg.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s", segs[0], resp.Status)
	}
	if evs := rep.accesses(seg.Path); len(evs) != 1 || evs[0]["session_id"] != nil {
		t.Errorf("segment's edge_access %v: want one, without the playlist's CMCD sid", evs)
	}
}
