package schemas

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func clean(t *testing.T, js string) (*Event, *Reject) {
	t.Helper()
	fs, err := flatjson.ParseObject(nil, []byte(js))
	if err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	c := Cleaner{Now: func() time.Time { return now }}
	ev := &Event{}
	return ev, c.Clean(fs, ev)
}

const nowMs = "1795262400000"

func TestCleanAccepts(t *testing.T) {
	ev, rej := clean(t, `{"log_type":"first_frame","ts":`+nowMs+`,"device_id":"d1","session_id":"s1","total_ms":"812.6","dns_ms":12,"edge_cached":1,"extra":{"x":1},"region":"north"}`)
	if rej != nil {
		t.Fatal(rej)
	}
	total, _ := ev.Get("total_ms")
	if total.I != 813 {
		t.Errorf("total_ms coerced to %d, want 813", total.I)
	}
	cached, _ := ev.Get("edge_cached")
	if !cached.Set || !cached.B {
		t.Errorf("edge_cached = %+v", cached)
	}
	if ev.Str(ColSource) != "client" {
		t.Errorf("source defaulted to %q", ev.Str(ColSource))
	}
	if len(ev.Unknown) != 1 || string(ev.Unknown[0]) != "extra" {
		t.Errorf("unknown = %q", ev.Unknown)
	}
	if v, _ := ev.Get("tcp_connect_ms"); v.Set {
		t.Error("absent field must stay unset")
	}
	// ts in seconds and as RFC 3339 text.
	for _, ts := range []string{"1795262400", `"2026-11-21T12:00:00Z"`, "1795262400.5"} {
		ev, rej := clean(t, `{"log_type":"heartbeat","ts":`+ts+`,"device_id":"d","session_id":"s"}`)
		if rej != nil {
			t.Fatalf("ts %s: %v", ts, rej)
		}
		if got := ev.Vals[ColTs].I; got/1000 != 1795262400 {
			t.Errorf("ts %s → %d", ts, got)
		}
	}
}

func TestCleanRejects(t *testing.T) {
	base := `"ts":` + nowMs + `,"device_id":"d1","session_id":"s1"`
	cases := []struct {
		js, code, field string
	}{
		{`{"ts":1}`, ReasonMissingField, "log_type"},
		{`{"log_type":"nope",` + base + `}`, ReasonUnknownLogType, "log_type"},
		{`{"log_type":7,` + base + `}`, ReasonWrongType, "log_type"},
		{`{"log_type":"first_frame",` + base + `}`, ReasonMissingField, "total_ms"},
		{`{"log_type":"first_frame",` + base + `,"total_ms":"abc"}`, ReasonWrongType, "total_ms"},
		{`{"log_type":"first_frame",` + base + `,"total_ms":[1]}`, ReasonWrongType, "total_ms"},
		{`{"log_type":"first_frame",` + base + `,"total_ms":-5}`, ReasonOutOfRange, "total_ms"},
		{`{"log_type":"first_frame",` + base + `,"total_ms":99999999999}`, ReasonOutOfRange, "total_ms"},
		{`{"log_type":"first_frame",` + base + `,"total_ms":5,"edge_cached":"maybe"}`, ReasonWrongType, "edge_cached"},
		{`{"log_type":"first_frame","ts":` + nowMs + `,"session_id":"s1","total_ms":5}`, ReasonMissingField, "device_id"},
		{`{"log_type":"first_frame","ts":` + nowMs + `,"device_id":"","session_id":"s1","total_ms":5}`, ReasonMissingField, "device_id"},
		{`{"log_type":"play_stop",` + base + `}`, ReasonMissingField, "code"},
		{`{"log_type":"play_stop",` + base + `,"code":1,"first_frame_blocked":"teleport"}`, ReasonNotAllowed, "first_frame_blocked"},
		{`{"log_type":"heartbeat","ts":` + nowMs + `,"device_id":"` + strings.Repeat("x", 200) + `","session_id":"s"}`, ReasonTooLong, "device_id"},
		{`{"log_type":"heartbeat","ts":1895262400000,"device_id":"d","session_id":"s"}`, ReasonTsOutOfWindow, "ts"},
		{`{"log_type":"heartbeat","ts":1695262400000,"device_id":"d","session_id":"s"}`, ReasonTsOutOfWindow, "ts"},
		{`{"log_type":"transcode","ts":` + nowMs + `,"status":"ok"}`, ReasonMissingField, "stream_id"},
		{`{"log_type":"edge_access","ts":` + nowMs + `,"session_id":"s","node_id":"n","http_status":999}`, ReasonOutOfRange, "http_status"},
		{`{"log_type":"heartbeat","ts":"0001-01-01T00:00:00Z","device_id":"d","session_id":"s"}`, ReasonOutOfRange, "ts"},
		{`{"log_type":"heartbeat","ts":` + nowMs + `,"received_at":"9999-12-31T23:59:59Z","device_id":"d","session_id":"s"}`, ReasonOutOfRange, "received_at"},
		// Stored strings must be UTF-8, raw or next to escapes.
		{`{"log_type":"heartbeat","ts":` + nowMs + `,"device_id":"d` + "\xff" + `","session_id":"s"}`, ReasonInvalidJSON, "device_id"},
		{`{"log_type":"heartbeat","ts":` + nowMs + `,"device_id":"d","session_id":"\u00e9` + "\xc3" + `"}`, ReasonInvalidJSON, "session_id"},
	}
	for _, c := range cases {
		_, rej := clean(t, c.js)
		if rej == nil {
			t.Errorf("%s: accepted, want %s", c.js, c.code)
			continue
		}
		if rej.Code != c.code || rej.Field != c.field || rej.Msg == "" {
			t.Errorf("%s: got %s/%s (%s), want %s/%s", c.js, rej.Code, rej.Field, rej.Msg, c.code, c.field)
		}
	}
}

// An unknown field is dropped whatever its name: a name that is not UTF-8
// does not refuse the event (its name only reaches a metric, cleaned).
func TestCleanUnknownFieldNotUTF8(t *testing.T) {
	ev, rej := clean(t, `{"log_type":"heartbeat","ts":`+nowMs+`,"device_id":"d","session_id":"s","`+"\xff\xfe"+`":1,"`+"\xe9"+`":"`+"\xff"+`"}`)
	if rej != nil {
		t.Fatalf("refused: %s/%s %s", rej.Code, rej.Field, rej.Msg)
	}
	if len(ev.Unknown) != 2 || string(ev.Unknown[0]) != "\xff\xfe" || string(ev.Unknown[1]) != "\xe9" {
		t.Fatalf("unknown = %q", ev.Unknown)
	}
}

func TestJSONSchemaUpToDate(t *testing.T) {
	got, err := os.ReadFile("events.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, JSONSchema()) {
		t.Fatal("schemas/events.schema.json is stale: run `go generate ./schemas` and commit it")
	}
	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	defs := doc["$defs"].(map[string]any)
	for _, lt := range Catalog {
		if _, ok := defs[lt.Name]; !ok {
			t.Errorf("schema lacks %s", lt.Name)
		}
	}
}

func TestCatalogCoversIssueTypes(t *testing.T) {
	for _, n := range []string{"play_start", "first_frame", "stall", "render_stall", "play_stop", "heartbeat",
		"push_start", "push_stats", "push_stop", "ingest_session", "relay", "origin_stream", "transcode", "edge_access"} {
		if Lookup(n) == nil {
			t.Errorf("catalog lacks %s", n)
		}
	}
}

func TestInitialMigrationUpToDate(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations: %+v", ms)
	}
	got, _ := os.ReadFile("migrations/0001_init.sql")
	if string(got) != InitialMigration() {
		t.Fatal("migrations/0001_init.sql differs from the catalog: a released migration must not change; " +
			"add a new migration file for the change, or run `go generate ./schemas` if 0001 is unreleased")
	}
	initial := 0
	for _, lt := range Catalog {
		if lt.Since <= 1 {
			initial++
		}
	}
	if n := len(ms[0].Statements); n != initial+2 {
		t.Errorf("0001 has %d statements, want %d", n, initial+2)
	}
}

// The migrations generated after 0001 match their generators: a catalog
// change that would alter a released one (a new log_type's view landing in
// an older migration) fails here.
func TestLaterMigrationsUpToDate(t *testing.T) {
	for path, want := range map[string]string{
		"migrations/0011_edge_cmcd.sql": EdgeCMCDMigration(),
		"migrations/0012_request.sql":   RequestMigration(),
	} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s differs from its generator; run `go generate ./schemas` if it is unreleased", path)
		}
	}
	// request is 0012's: its view and its two new columns, nothing earlier.
	if m := RequestMigration(); !strings.Contains(m, "CREATE OR REPLACE VIEW request AS") || !strings.Contains(m, "ADD COLUMN IF NOT EXISTS ttfb_ms Nullable(Int64)") {
		t.Errorf("0012 lacks the request view or ttfb_ms:\n%s", m)
	}
	if strings.Contains(EdgeCMCDMigration(), "VIEW request") || strings.Contains(InitialMigration(), "VIEW IF NOT EXISTS request") {
		t.Error("the request view is in a migration before 0012")
	}
}

func BenchmarkClean(b *testing.B) {
	js := []byte(`{"event_id":"e-123456789","log_type":"first_frame","ts":` + nowMs + `,"device_id":"dev-0001","user_id":"u-1","session_id":"s-0001-1","room_id":"room-9","stream_id":"live/room-9","region":"north","isp":"isp-a","cdn":"cdn-a","node_id":"edge-a-north-1","protocol":"http-flv","rendition":"720p","codec":"h264","app_version":"5.2.1","os":"android","network":"wifi","total_ms":820,"dns_ms":20,"tcp_connect_ms":30,"tcp_first_packet_ms":120,"video_first_packet_ms":300,"first_decode_ms":200,"first_render_ms":150,"server_ip":"10.0.0.1","edge_cached":true}`)
	c := Cleaner{Now: func() time.Time { return now }}
	var fs []flatjson.Field
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		fs, _ = flatjson.ParseObject(fs, js)
		if r := c.Clean(fs, &ev); r != nil {
			b.Fatal(r)
		}
	}
}

// The position guess in Clean must not confuse fields when a sender changes
// its field order between events.
func TestCleanFieldOrderChanges(t *testing.T) {
	c := Cleaner{Now: func() time.Time { return now }}
	var ev Event
	for _, js := range []string{
		`{"log_type":"first_frame","ts":` + nowMs + `,"device_id":"d1","session_id":"s1","total_ms":100,"dns_ms":7}`,
		`{"dns_ms":9,"total_ms":200,"session_id":"s2","device_id":"d2","ts":` + nowMs + `,"log_type":"first_frame"}`,
		`{"log_type":"first_frame","ts":` + nowMs + `,"device_id":"d3","session_id":"s3","dns_ms":11,"total_ms":300}`,
	} {
		fs, _ := flatjson.ParseObject(nil, []byte(js))
		if r := c.Clean(fs, &ev); r != nil {
			t.Fatal(r)
		}
		var want map[string]any
		json.Unmarshal([]byte(js), &want)
		total, _ := ev.Get("total_ms")
		dns, _ := ev.Get("dns_ms")
		if float64(total.I) != want["total_ms"].(float64) || float64(dns.I) != want["dns_ms"].(float64) || ev.Str(ColDeviceID) != want["device_id"] {
			t.Errorf("%s: got total %d dns %d device %s", js, total.I, dns.I, ev.Str(ColDeviceID))
		}
	}
}

// Every server log is accepted without the ids only a client has (an edge's
// log of curl or of a refused request has no CMCD sid), with only the ids
// its server always knows; a client log still needs its session and device
// (or stream). Built from the catalog, so a new server log_type is covered.
func TestServerLogsNeedNoClientIDs(t *testing.T) {
	for _, lt := range Catalog {
		fields := map[string]any{"log_type": lt.Name, "ts": json.Number(nowMs)}
		for _, f := range lt.Fields {
			if !f.Required {
				continue
			}
			switch {
			case len(f.Enum) > 0:
				fields[f.Name] = f.Enum[0]
			case f.Kind == KindInt || f.Kind == KindFloat:
				fields[f.Name] = f.Min
			default:
				fields[f.Name] = "x"
			}
		}
		for _, id := range lt.RequiredIDs() {
			fields[id] = "id-1"
		}
		b, _ := json.Marshal(fields)
		if _, rej := clean(t, string(b)); rej != nil {
			t.Errorf("%s with only its required ids %v: %v", lt.Name, lt.RequiredIDs(), rej)
			continue
		}
		if lt.Source == "server" {
			for _, id := range lt.RequiredIDs() {
				for _, c := range ClientOnlyIDs {
					if id == c {
						t.Errorf("server log %s requires %s, an id only a client has", lt.Name, id)
					}
				}
			}
		}
	}
	// The edge's log of a curl request: no sid, a 403.
	if _, rej := clean(t, `{"log_type":"edge_access","ts":`+nowMs+`,"node_id":"edge-1","stream_id":"live/r1","http_status":403,"error":"bad signature"}`); rej != nil {
		t.Errorf("edge_access without a session_id: %v", rej)
	}
	// Without the edge's own id it is still refused: a row no node owns.
	if _, rej := clean(t, `{"log_type":"edge_access","ts":`+nowMs+`,"session_id":"s","http_status":200}`); rej == nil || rej.Field != "node_id" {
		t.Errorf("edge_access without node_id: %v, want missing_field node_id", rej)
	}
	// A play event still needs its session.
	if _, rej := clean(t, `{"log_type":"heartbeat","ts":`+nowMs+`,"device_id":"d"}`); rej == nil || rej.Field != "session_id" {
		t.Errorf("heartbeat without session_id: %v, want missing_field session_id", rej)
	}
}
