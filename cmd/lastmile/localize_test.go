package main

import (
	"bytes"
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
