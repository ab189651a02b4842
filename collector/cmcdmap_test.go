package collector

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lastmile-qoe/lastmile/cmcd"
)

// hlsReport is a report as hls.js 1.7.4 sends it (issue 20's samples), with
// e, sta, ts and extra keys set.
func hlsReport(e, sta string, ts int64, extra string) string {
	s := fmt.Sprintf(`cid="room1",e=%s,mtp=(500),sf=h,sid="91a28b06-b2f5-429e-acd2-e25e2a3143d5",sn=2,sta=%s,ts=%d,v=2`, e, sta, ts)
	if extra != "" {
		s = extra + "," + s
	}
	return s
}

// show renders derived events compactly for comparison.
func show(evs []derived) []string {
	var out []string
	for _, ev := range evs {
		s := fmt.Sprintf("%s@%d", ev.logType, ev.ts)
		for _, f := range ev.fields {
			s += fmt.Sprintf(" %s=%v", f.key, f.val)
		}
		out = append(out, s)
	}
	return out
}

func TestCMCDMapping(t *testing.T) {
	plan := DefaultCMCDPlan
	for _, tc := range []struct {
		name    string
		reports []string
		want    []string
	}{
		{"hls.js play with a stall", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("rr", "s", 1080, `br=(0),rc=200,st=l,ttfb=15,ttlb=31,url="http://e/seg-508.ts"`),
			hlsReport("ps", "p", 1600, ""),
			hlsReport("t", "p", 11600, "bl=(4400),br=(800)"),
			hlsReport("ps", "r", 12000, ""),
			hlsReport("ps", "p", 13500, ""),
			hlsReport("t", "p", 21600, "bl=(3000),ltc=1800"),
			hlsReport("ps", "e", 30000, ""),
		}, []string{
			"play_start@1000",
			"request@1080 url=http://e/seg-508.ts http_status=200 ttfb_ms=15 ttlb_ms=31 cmcd_br=0 cmcd_mtp=500",
			"first_frame@1600 total_ms=600",
			"heartbeat@11600 buffer_ms=4400 bitrate_kbps=800 state=playing",
			"stall@12000 duration_ms=1500 cause=unknown",
			"heartbeat@21600 interval_ms=10000 buffer_ms=3000 latency_ms=1800 state=playing",
			"play_stop@30000 code=0 stall_count=1 stall_total_ms=1500 play_duration_ms=29000",
		}},
		{"hls.js manifest error", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("e", "f", 1200, `ec=("manifestLoadError")`),
			hlsReport("ps", "f", 1201, ""),
		}, []string{
			"play_start@1000",
			"play_stop@1200 code=1 stall_count=0 stall_total_ms=0 play_duration_ms=200 reason=manifestLoadError",
		}},
		{"error report while playing, not fatal state", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "p", 1500, ""),
			hlsReport("e", "p", 9000, `ec=("fragLoadError" "x")`),
		}, []string{
			"play_start@1000",
			"first_frame@1500 total_ms=500",
			"play_stop@9000 code=1 stall_count=0 stall_total_ms=0 play_duration_ms=8000 reason=fragLoadError x",
		}},
		{"rebuffering before the first frame is startup", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "r", 1100, ""),
			hlsReport("ps", "p", 2400, ""),
		}, []string{"play_start@1000", "first_frame@2400 total_ms=1400"}},
		{"the pair, not the player's msd, when the start was heard", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "p", 1600, "msd=450"),
		}, []string{"play_start@1000", "first_frame@1600 total_ms=600"}},
		{"an msd sent while still rebuffering at start (dash.js) does not replace the pair", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "r", 1100, "msd=1"),
			hlsReport("ps", "p", 1700, ""),
		}, []string{"play_start@1000", "first_frame@1700 total_ms=700"}},
		{"first heard mid-play, the player's msd and bsd: no pair needed", []string{
			hlsReport("t", "p", 50000, "msd=700"),
			hlsReport("ps", "r", 51000, ""),
			hlsReport("ps", "p", 51700, "bsd=(650)"),
			hlsReport("t", "p", 60000, "bsd=(300 200)"),
		}, []string{
			"first_frame@50000 total_ms=700",
			"heartbeat@50000 state=playing",
			"stall@51050 duration_ms=650 cause=unknown",
			"stall@59700 duration_ms=300 cause=unknown",
			"stall@59800 duration_ms=200 cause=unknown",
			"heartbeat@60000 interval_ms=10000 state=playing",
		}},
		{"once a player sends bsd, no pairing", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "p", 1500, ""),
			hlsReport("ps", "r", 5000, "bsd=(100)"),
			hlsReport("ps", "p", 6000, ""),
			hlsReport("ps", "r", 7000, ""),
			hlsReport("t", "r", 8000, "bsd=(1200)"),
		}, []string{
			"play_start@1000", "first_frame@1500 total_ms=500",
			"stall@4900 duration_ms=100 cause=unknown",
			"stall@6800 duration_ms=1200 cause=unknown",
			"heartbeat@8000 state=stalled",
		}},
		{"first heard mid-play: no start, stalls still", []string{
			hlsReport("t", "p", 50000, ""),
			hlsReport("ps", "r", 51000, ""),
			hlsReport("ps", "p", 51700, ""),
			hlsReport("ps", "q", 60000, ""),
		}, []string{
			"heartbeat@50000 state=playing",
			"stall@51000 duration_ms=700 cause=unknown",
			"play_stop@60000 code=0 stall_count=1 stall_total_ms=700",
		}},
		{"a late report changes no state", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "p", 1600, ""),
			hlsReport("ps", "r", 1500, ""),
			hlsReport("ps", "p", 1700, ""),
		}, []string{"play_start@1000", "first_frame@1600 total_ms=600"}},
		{"e=rr: a request event each, its URL without query, fragment or user, late ones too", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "p", 1500, ""),
			hlsReport("rr", "p", 4000, `bl=(6000),br=(1200),d=2000,ot=v,rc=404,ttfb=120,ttlb=480,url="http://u:pw@e/live/room1/seg-9.ts?sig=SECRET&CMCD=x#f"`),
			hlsReport("rr", "p", 3900, `rc=200,ttfb=9,ttlb=20,url="http://e/live/room1/index.m3u8?token=T"`),
			hlsReport("rr", "p", 5000, `rc=0,url="not a url?sig=S"`),
		}, []string{
			"play_start@1000", "first_frame@1500 total_ms=500",
			"request@4000 url=http://e/live/room1/seg-9.ts http_status=404 ttfb_ms=120 ttlb_ms=480 cmcd_br=1200 cmcd_d=2000 cmcd_bl=6000 cmcd_mtp=500 cmcd_ot=v",
			"request@3900 url=http://e/live/room1/index.m3u8 http_status=200 ttfb_ms=9 ttlb_ms=20 cmcd_mtp=500",
			"request@5000 url=not a url http_status=0 cmcd_mtp=500",
		}},
		{"a new play in the same session after the end", []string{
			hlsReport("ps", "s", 1000, ""),
			hlsReport("ps", "p", 1300, ""),
			hlsReport("ps", "e", 5000, ""),
			hlsReport("ps", "s", 6000, ""),
			hlsReport("ps", "p", 6250, ""),
		}, []string{
			"play_start@1000", "first_frame@1300 total_ms=300",
			"play_stop@5000 code=0 stall_count=0 stall_total_ms=0 play_duration_ms=4000",
			"play_start@6000", "first_frame@6250 total_ms=250",
		}},
	} {
		var s cmcdSession
		var got []derived
		for _, line := range tc.reports {
			d, err := cmcd.ParseDict(line)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			r, rej := readReport(d, nil, 1, "")
			if rej != nil {
				t.Fatalf("%s: %+v", tc.name, rej)
			}
			got = append(got, s.apply(r, &plan)...)
		}
		if g := show(got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, strings.Join(g, "\n     "), strings.Join(tc.want, "\n     "))
		}
	}
}

// A report without sf (dash.js's before the manifest is read) takes the
// format its session named before; a session that named none gives none.
func TestCMCDFormatCarried(t *testing.T) {
	var s cmcdSession
	var got []string
	for _, line := range []string{
		`e=ps,sid="a",sta=s,ts=1000,v=2`,
		`e=ps,sf=d,sid="a",sta=p,ts=1500,v=2`,
		`e=t,sid="a",sta=p,ts=3500,v=2`,
	} {
		d, _ := cmcd.ParseDict(line)
		r, _ := readReport(d, nil, 1, "")
		for _, ev := range s.apply(r, &DefaultCMCDPlan) {
			j := string(appendEventJSON(nil, "app1", r, &ev))
			got = append(got, ev.logType+" "+strconv.FormatBool(strings.Contains(j, `"protocol":"dash"`)))
		}
	}
	if want := []string{"play_start false", "first_frame true", "heartbeat true"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events with protocol dash: %v, want %v", got, want)
	}
}

func TestCMCDEventJSON(t *testing.T) {
	d, _ := cmcd.ParseDict(hlsReport("ps", "p", 1600, ""))
	r, _ := readReport(d, nil, 1, "")
	ev := derived{logType: "first_frame", ts: 1600, fields: []kv{{"total_ms", int64(600)}}}
	got := string(appendEventJSON(nil, "app1", r, &ev))
	want := `{"log_type":"first_frame","ts":1600,"event_id":"` + cmcdEventID("app1", r, &ev) +
		`","session_id":"91a28b06-b2f5-429e-acd2-e25e2a3143d5","device_id":"91a28b06-b2f5-429e-acd2-e25e2a3143d5","room_id":"room1","stream_id":"room1","protocol":"hls","total_ms":600}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if cmcdEventID("app1", r, &ev) == cmcdEventID("app2", r, &ev) {
		t.Errorf("event ids of two apps are equal")
	}
	// The first frame a collector pairs and the one another makes of the
	// player's msd later are one event.
	var a, b cmcdSession
	plan := DefaultCMCDPlan
	var evs []derived
	for _, l := range []string{hlsReport("ps", "s", 1000, ""), hlsReport("ps", "p", 1600, "")} {
		d, _ := cmcd.ParseDict(l)
		r, _ := readReport(d, nil, 1, "")
		evs = append(evs, a.apply(r, &plan)...)
	}
	d, _ = cmcd.ParseDict(hlsReport("t", "p", 9000, "msd=580"))
	r2, _ := readReport(d, nil, 1, "")
	other := b.apply(r2, &plan)
	if len(evs) != 2 || len(other) != 2 || other[0].logType != "first_frame" ||
		cmcdEventID("app1", r, &evs[1]) != cmcdEventID("app1", r2, &other[0]) {
		t.Errorf("paired %v and msd %v first frames are not one event", show(evs), show(other))
	}
}

// A URL longer than the catalog allows is cut to fit at a character
// boundary, so the request event is kept, not rejected as too long.
func TestCMCDRequestURLBounded(t *testing.T) {
	long := "http://e/" + strings.Repeat("é", requestURLMax) + "?sig=S"
	got := cleanURL(long)
	if len(got) > requestURLMax || !utf8.ValidString(got) || !strings.HasPrefix(got, "http://e/é") {
		t.Errorf("cleanURL cut to %d bytes (max %d), valid UTF-8 %v", len(got), requestURLMax, utf8.ValidString(got))
	}
	// Two requests ending in one ms (audio and video) are two events.
	var ids []string
	for _, extra := range []string{`ot=a,url="http://e/a.ts"`, `ot=v,url="http://e/v.ts"`} {
		d, _ := cmcd.ParseDict(hlsReport("rr", "p", 4000, extra))
		r, _ := readReport(d, nil, 1, "")
		ev := requestEvent(r)
		ids = append(ids, cmcdEventID("app1", r, &ev))
	}
	if ids[0] == ids[1] {
		t.Errorf("two requests of one ms share the event id %s", ids[0])
	}
}
