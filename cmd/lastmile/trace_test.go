package main

import (
	"encoding/json"
	"testing"

	"github.com/lastmile-qoe/lastmile/trace"
)

// A request row is its status, times, object type and path: no query,
// host, dimensions or CMCD figures.
func TestRequestLine(t *testing.T) {
	var e trace.Event
	js := `{"log_type":"request","ts":"2026-12-06T05:00:00.000Z","session_id":"s1","protocol":"hls","url":"http://127.0.0.1:8080/live/room1/seg-9.ts",` +
		`"http_status":200,"ttfb_ms":1500,"ttlb_ms":31,"cmcd_ot":"v","cmcd_mtp":500}`
	if err := json.Unmarshal([]byte(js), &e); err != nil {
		t.Fatal(err)
	}
	if got, want := requestLine(&e), "status=200 ttfb=1,500ms ttlb=31ms ot=v /live/room1/seg-9.ts"; got != want {
		t.Errorf("requestLine %q, want %q", got, want)
	}
}
