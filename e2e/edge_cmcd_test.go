package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// edgeHLSJSSample is the segment query hls.js 1.7.4 sent with CMCD v2 (issue
// 20), verbatim.
const edgeHLSJSSample = `bl=(4400),br=(0),cid="room1",d=2000,dl=4400,lb=(0),mtp=(206100),pb=(0),rtp=0,sf=h,sid="91a28b06-b2f5-429e-acd2-e25e2a3143d5",sn=33,st=l,sta=p,tpb=(0),v=2`

const edgeHLSJSSid = "91a28b06-b2f5-429e-acd2-e25e2a3143d5"

// TestEdgeCMCD: a page on another origin asks a real `lastmile media up`
// edge for HLS as hls.js does: the preflight of a CMCD-header request is
// answered, every answer carries Access-Control-Allow-Origin, the
// playlist's segment URIs carry its signature but not its CMCD, and the
// CMCD of each request, from the query (the verbatim hls.js sample) or the
// four CMCD headers, reaches edge_access in the store through the real
// pipeline, where the edge CMCD metrics read it.
func TestEdgeCMCD(t *testing.T) {
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	sched, _ := startMedia(t, mediaTopology(t, pipe.HTTP, ""))
	const page = "http://player.page.test:8000"

	// The scheduler answers a page too.
	req, _ := http.NewRequest(http.MethodGet, sched+"/v1/schedule?room=room1&region=north&device_id=page-1", nil)
	req.Header.Set("Origin", page)
	resp := edgeDo(t, req)
	var sd struct {
		Renditions []struct {
			Main struct {
				Node string
				URLs map[string]string
			}
		}
	}
	edgeDecode(t, resp, &sd)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("scheduler: Access-Control-Allow-Origin %q, want *", got)
	}
	node := sd.Renditions[0].Main.Node
	playlist, _ := url.Parse(sd.Renditions[0].Main.URLs["hls"])
	playlist.Host = "127.0.0.1:" + playlist.Port() // the stack's DNS names are not the system's
	sig := playlist.RawQuery

	// Preflight of a request with CMCD headers, as a browser sends it.
	req, _ = http.NewRequest(http.MethodOptions, playlist.String(), nil)
	req.Header.Set("Origin", page)
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "cmcd-object,cmcd-request,cmcd-session,cmcd-status")
	resp = edgeDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "CMCD-Status") {
		t.Errorf("preflight: %s, headers %v; want 204 allowing the CMCD headers", resp.Status, resp.Header)
	}

	// The playlist, asked for with CMCD (the publisher needs a moment).
	q := playlist.Query()
	q.Set("CMCD", `cid="room1",ot=m,sf=h,sid="`+edgeHLSJSSid+`",st=l,su,v=2`)
	playlist.RawQuery = q.Encode()
	var body string
	waitFor(t, 30*time.Second, "the edge's playlist of room1", func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, playlist.String(), nil)
		req.Header.Set("Origin", page)
		resp := edgeDo(t, req)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if resp.StatusCode == http.StatusOK && resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("playlist without Access-Control-Allow-Origin: %v", resp.Header)
		}
		return resp.StatusCode == http.StatusOK && strings.Count(body, "\nseg-") >= 2, resp.Status
	})
	var segs []string
	for _, l := range strings.Split(body, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			segs = append(segs, l)
			if _, q, _ := strings.Cut(l, "?"); q != sig {
				t.Errorf("segment URI %q: want the playlist's signature %q only", l, sig)
			}
		}
	}
	if len(segs) < 2 {
		t.Fatalf("playlist lists %d segments, want 2 or more:\n%s", len(segs), body)
	}

	// Two segments: CMCD in the query (hls.js verbatim), then in headers.
	segURL := func(s string) string {
		u, _ := playlist.Parse(s)
		return u.String()
	}
	req, _ = http.NewRequest(http.MethodGet, segURL(segs[0])+"&CMCD="+url.QueryEscape(edgeHLSJSSample), nil)
	req.Header.Set("Origin", page)
	edgeGetSegment(t, req)
	req, _ = http.NewRequest(http.MethodGet, segURL(segs[1]), nil)
	req.Header.Set("Origin", page)
	req.Header.Set("CMCD-Request", "bl=(1200),dl=1200,mtp=(900)")
	req.Header.Set("CMCD-Object", "br=(800),d=2000,ot=v")
	req.Header.Set("CMCD-Session", `cid="room1",sf=h,sid="`+edgeHLSJSSid+`",st=l,v=2`)
	req.Header.Set("CMCD-Status", "bs,rtp=1600")
	edgeGetSegment(t, req)

	// The store holds every key of each request: the playlist's (asked for
	// until it listed two segments), then the two segments'.
	const rowsQ = `SELECT path, node_id, cmcd_bl, cmcd_br, cmcd_mtp, cmcd_d, cmcd_rtp, cmcd_ot, cmcd_sf, cmcd_st, cmcd_su,
		cmcd['sta'] AS sta, cmcd['sn'] AS sn, cmcd['cid'] AS cid, cmcd['bs'] AS bs, cmcd['v'] AS v
		FROM edge_access WHERE session_id = '` + edgeHLSJSSid + `' AND http_status = 200 ORDER BY ts`
	dir := strings.TrimSuffix(playlist.Path, "index.m3u8")
	seg0, seg1 := dir+strings.Split(segs[0], "?")[0], dir+strings.Split(segs[1], "?")[0]
	byPath := map[string][]map[string]any{}
	waitFor(t, 60*time.Second, "the edge_access rows of both segments", func() (bool, string) {
		rows, err := pipe.sql(rowsQ)
		byPath = map[string][]map[string]any{}
		for _, r := range rows {
			byPath[fmt.Sprint(r["path"])] = append(byPath[fmt.Sprint(r["path"])], r)
		}
		return err == nil && len(byPath[seg1]) > 0 && len(byPath[seg0]) > 0, fmt.Sprintf("%d rows, %v", len(rows), err)
	})
	want := map[string]map[string]any{
		playlist.Path: {"node_id": node, "cmcd_bl": nil, "cmcd_mtp": nil, "cmcd_ot": "m", "cmcd_sf": "h", "cmcd_st": "l",
			"cmcd_su": true, "cid": "room1", "v": "2", "sta": ""},
		seg0: {"node_id": node, "cmcd_bl": 4400, "cmcd_br": 0, "cmcd_mtp": 206100, "cmcd_d": 2000, "cmcd_rtp": 0, "cmcd_ot": "",
			"cmcd_sf": "h", "cmcd_st": "l", "cmcd_su": nil, "sta": "p", "sn": "33", "cid": "room1", "v": "2"},
		seg1: {"node_id": node, "cmcd_bl": 1200, "cmcd_br": 800, "cmcd_mtp": 900, "cmcd_d": 2000, "cmcd_rtp": 1600, "cmcd_ot": "v",
			"cmcd_sf": "h", "cmcd_st": "l", "bs": "true", "sta": "", "cid": "room1"},
	}
	if len(byPath) != 3 || len(byPath[seg0]) != 1 || len(byPath[seg1]) != 1 {
		t.Errorf("rows by path %v: want the playlist's, then one per segment", byPath)
	}
	for path, w := range want {
		if len(byPath[path]) == 0 {
			t.Errorf("no row of %s", path)
		}
		for _, row := range byPath[path] {
			for k, v := range w {
				if fmt.Sprint(row[k]) != fmt.Sprint(v) {
					t.Errorf("%s: %s = %v, want %v", path, k, row[k], v)
				}
			}
		}
	}

	// HTTP-FLV (mpegts.js in a page) gets the same: the header on the
	// stream, and its CMCD in the row logged when the viewer leaves.
	flv, _ := url.Parse(sd.Renditions[0].Main.URLs["flv"])
	flv.Host = "127.0.0.1:" + flv.Port()
	req, _ = http.NewRequest(http.MethodGet, flv.String(), nil)
	req.Header.Set("Origin", page)
	req.Header.Set("CMCD-Session", `sf=o,sid="`+edgeHLSJSSid+`",st=l`)
	req.Header.Set("CMCD-Request", "bl=(300)")
	resp = edgeDo(t, req)
	n, _ := io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n == 0 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Edge-Node") {
		t.Errorf("HTTP-FLV from a page: %s, %d bytes, headers %v", resp.Status, n, resp.Header)
	}
	waitFor(t, 60*time.Second, "the HTTP-FLV play's edge_access", func() (bool, string) {
		rows, err := pipe.sql(`SELECT cmcd_bl, cmcd_sf FROM edge_access WHERE session_id = '` + edgeHLSJSSid + `' AND path = '` + flv.Path + `'`)
		if err != nil || len(rows) == 0 {
			return false, fmt.Sprint(err)
		}
		if fmt.Sprint(rows[0]["cmcd_bl"]) != "300" || rows[0]["cmcd_sf"] != "o" {
			t.Fatalf("HTTP-FLV row %v: want cmcd_bl 300, cmcd_sf o", rows[0])
		}
		return true, ""
	})

	// The metrics API reads them, per edge node: p0 and p100 are the
	// lowest and highest values sent.
	from, to := time.Now().Add(-10*time.Minute), time.Now().Add(time.Minute)
	for _, c := range []struct {
		metric, quantile string
		want             float64
	}{
		{"edge_measured_throughput", "0", 900}, {"edge_measured_throughput", "1", 206100},
		{"edge_buffer_length", "0", 300}, {"edge_buffer_length", "1", 4400},
	} {
		v := url.Values{"metric": {c.metric}, "quantile": {c.quantile}, "group_by": {"node_id"}, "step": {"1m"},
			"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
		code, a, msg := pipe.getMetrics(t, v)
		if code != 200 {
			t.Fatalf("GET /api/v1/metrics?%s: %d %s", v.Encode(), code, msg)
		}
		got := totals(a)
		if len(got) != 1 || got[node] != c.want || a.Source != "raw" {
			t.Errorf("%s quantile %s by node_id: %v from %s, want {%s: %v} from raw events", c.metric, c.quantile, got, a.Source, node, c.want)
		}
	}
}

func edgeDo(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

// edgeGetSegment fetches a segment as a page would: 200 with
// Access-Control-Allow-Origin.
func edgeGetSegment(t *testing.T, req *http.Request) {
	t.Helper()
	resp := edgeDo(t, req)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n == 0 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("GET %s: %s, %d bytes, headers %v", req.URL.Path, resp.Status, n, resp.Header)
	}
}

func edgeDecode(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", resp.Request.URL, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", resp.Request.URL, err)
	}
}
