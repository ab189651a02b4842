package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLocalizeCSV(t *testing.T) {
	// Minutes 60..300: two cdns × two bitrates, 100 viewers each, 5 stalls;
	// at 300 cdn 7 with bitrate 2000 stalls 40.
	var b strings.Builder
	b.WriteString("bitrate,min,cnt,value,cdn\n")
	for m := 60; m <= 300; m += 60 {
		for _, cdn := range []string{"5", "7"} {
			for _, br := range []string{"500", "2000"} {
				v := "5"
				if m == 300 && cdn == "7" && br == "2000" {
					v = "40"
				}
				b.WriteString(br + "," + strconv.Itoa(m) + ",100," + v + "," + cdn + "\n")
			}
		}
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "case.csv")
	if err := os.WriteFile(good, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("min,value,cdn\n60,1,5\n"), 0o644)

	for _, tc := range []struct {
		args       []string
		code       int
		out, errIn string
	}{
		{[]string{"--csv", good, "--at", "300", "--json"}, 0, `{"causes":[{"bitrate":"2000","cdn":"7"}]}` + "\n", ""},
		{[]string{"--csv", good, "--at", "240", "--json"}, 0, `{"causes":[]}` + "\n", ""},
		{[]string{"--csv", good, "--at", "300"}, 0, "1. bitrate=2000 cdn=7", ""},
		{[]string{"--csv", good, "--at", "301", "--json"}, 1, "", "no rows at minute 301"},
		{[]string{"--csv", bad, "--at", "60", "--json"}, 1, "", "missing column(s) cnt"},
		{[]string{"--csv", good}, 2, "", "--at UNIX_SECONDS is required"},
		{[]string{"--at", "300"}, 2, "", "--csv FILE is required"},
		{[]string{"--since", "30m", "--metric", "nope", "--addr", "http://127.0.0.1:1", "--token", "x"}, 1, "", "127.0.0.1:1"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"localize"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.errIn) {
			t.Errorf("%v: code %d, out %q, err %q", tc.args, code, out.String(), errb.String())
		}
	}
}

// The live form prints one block per incident from the API's answer, and
// says so when there is none; --json prints the answer as is.
func TestLocalizeLive(t *testing.T) {
	answer := `{"from":"2026-12-05T23:00:00Z","to":"2026-12-05T23:30:00Z","incidents":[{"from":"2026-12-05T23:12:00Z","to":"2026-12-05T23:13:30Z",
		"kpi":"start_failure","dims":{"node_id":"edge-b-south-1","cdn":"cdn-b","region":"south"},"views":1234.4,"affected":456.6,"value":0.37,"expected":0.02,
		"share":0.9,"confidence":0.87,"score":99,"scope":"edge","evidence":[{"scope":"edge","source":"edge_access","text":"edge-b-south-1 refused 450 requests"}],
		"ruled_out":[{"scope":"source","source":"cohort","text":"the other edges play the stream"}],
		"sessions":[{"device_id":"d1","session_id":"s1"}],"traces":["lastmile trace --session s1"]}]}`
	quiet := `{"from":"2026-12-05T23:00:00Z","to":"2026-12-05T23:30:00Z","incidents":[]}`
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery
		if r.URL.Query().Get("room_id") == "quiet" {
			io.WriteString(w, quiet)
			return
		}
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"localize", "--addr", srv.URL, "--token", "x", "--since", "30m", "--metric", "start_failure", "--utc"}, &out, &errb); code != 0 {
		t.Fatalf("code %d: %s", code, errb.String())
	}
	if got != "metric=start_failure&since=30m" {
		t.Errorf("query %q", got)
	}
	for _, want := range []string{"1 incident(s)", "1. 2026-12-05 23:12:00 – 23:13:30 UTC  EDGE  start_failure on cdn=cdn-b node_id=edge-b-south-1 region=south",
		"457 of 1,234 views affected: 37.0% vs 2.0% expected", "+ edge_access: edge-b-south-1 refused 450 requests",
		"- not source (cohort): the other edges play the stream", "$ lastmile trace --session s1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	run([]string{"localize", "--addr", srv.URL, "--token", "x", "--room", "quiet"}, &out, &errb)
	if !strings.Contains(out.String(), "0 incident(s)") || !strings.Contains(out.String(), "nothing abnormal") {
		t.Errorf("quiet output:\n%s", out.String())
	}
	out.Reset()
	run([]string{"localize", "--addr", srv.URL, "--token", "x", "--room", "quiet", "--json"}, &out, &errb)
	if out.String() != quiet {
		t.Errorf("--json printed %q", out.String())
	}
}
