package sampling

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// minimal builds a valid event of a log_type with the given ids (and
// whatever else the log_type requires).
func minimal(t *testing.T, lt *schemas.LogType, ids map[string]string) *schemas.Event {
	t.Helper()
	m := map[string]any{"log_type": lt.Name, "ts": time.Now().UnixMilli()}
	for _, f := range lt.Fields {
		if !f.Required {
			continue
		}
		switch {
		case len(f.Enum) > 0:
			m[f.Name] = f.Enum[0]
		case f.Kind == schemas.KindInt || f.Kind == schemas.KindFloat:
			m[f.Name] = f.Min
		default:
			m[f.Name] = "x"
		}
	}
	for _, id := range lt.RequiredIDs() {
		m[id] = "req-" + id
	}
	for k, v := range ids {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return event(t, string(b))
}

// The unit of every log_type of the catalog: the session whenever the event
// has one, client and server alike; else the device, the stream, the event.
func TestUnitOverCatalog(t *testing.T) {
	cases := []struct {
		ids  map[string]string
		want string
	}{
		{map[string]string{"session_id": "s", "device_id": "d", "stream_id": "live/r", "event_id": "e"}, "session_id"},
		{map[string]string{"session_id": "", "device_id": "d", "stream_id": "live/r", "event_id": "e"}, "device_id"},
		{map[string]string{"session_id": "", "device_id": "", "stream_id": "live/r", "event_id": "e"}, "stream_id"},
		{map[string]string{"session_id": "", "device_id": "", "stream_id": "", "event_id": "e"}, "event_id"},
	}
	for i := range schemas.Catalog {
		lt := &schemas.Catalog[i]
		for _, c := range cases {
			ids := map[string]string{}
			valid := true
			for k, v := range c.ids {
				ids[k] = v
				for _, r := range lt.RequiredIDs() {
					if r == k && v == "" {
						valid = false // the log_type cannot lack this id
					}
				}
			}
			if !valid {
				continue
			}
			ev := minimal(t, lt, ids)
			id, name := UnitID(ev)
			if name != c.want || string(id) != c.ids[c.want] {
				t.Errorf("%s with %v: unit %s=%q, want %s", lt.Name, c.ids, name, id, c.want)
			}
		}
	}
	// At one rate, every log_type that carries a session decides as the
	// session: 500 sessions, each with one event of every log_type.
	s := New(Config{Seed: 3, Default: 0.1})
	for n := 0; n < 500; n++ {
		sid := fmt.Sprintf("sess-%d", n)
		var first *bool
		for i := range schemas.Catalog {
			lt := &schemas.Catalog[i]
			ev := minimal(t, lt, map[string]string{"session_id": sid, "device_id": fmt.Sprint("dev-", n%7), "stream_id": "live/r", "event_id": fmt.Sprint("e-", n, lt.Name)})
			if IsFailure(ev) {
				continue
			}
			k, _ := s.Decide(ev)
			if first == nil {
				first = &k
			} else if k != *first {
				t.Fatalf("session %s: %s kept=%v, another log_type kept=%v", sid, lt.Name, k, *first)
			}
		}
	}
}

// An edge knows only the session (the player's CMCD sid): its edge_access,
// with session_id and node_id only, is decided as the player's events of
// the same session, whose device the edge does not know.
func TestEdgeDecidesAsClient(t *testing.T) {
	s := New(Config{Seed: 11, Default: 0.1})
	ts := time.Now().UnixMilli()
	kept := 0
	for n := 0; n < 2000; n++ {
		edge := event(t, fmt.Sprintf(`{"log_type":"edge_access","ts":%d,"node_id":"edge-a","session_id":"sess-%d","http_status":200}`, ts, n))
		ke, re := s.Decide(edge)
		for _, js := range []string{
			`{"log_type":"play_start","ts":%d,"device_id":"dev-%d","session_id":"sess-%d"}`,
			`{"log_type":"first_frame","ts":%d,"device_id":"dev-%d","session_id":"sess-%d","total_ms":900}`,
			`{"log_type":"heartbeat","ts":%d,"device_id":"dev-%d","session_id":"sess-%d"}`,
			`{"log_type":"play_stop","ts":%d,"device_id":"dev-%d","session_id":"sess-%d","code":0}`,
		} {
			kc, rc := s.Decide(event(t, fmt.Sprintf(js, ts, n%13, n)))
			if kc != ke || rc != re {
				t.Fatalf("session %d: edge_access kept=%v (rate %v), client event %s kept=%v (rate %v)", n, ke, re, js, kc, rc)
			}
		}
		if ke {
			kept++
		}
	}
	if kept < 140 || kept > 260 {
		t.Errorf("kept %d of 2000 sessions at 10%%", kept)
	}
}

// A failure is kept whatever its session's draw; the session's edge logs
// are not (the edge cannot know of it): a dropped session that fails is
// stored as its failure alone, at rate 1.
func TestFailureOfDroppedSessionKeptAlone(t *testing.T) {
	s := New(Config{Seed: 11, Default: 0.1})
	ts := time.Now().UnixMilli()
	dropped := 0
	for n := 0; n < 200; n++ {
		sid := fmt.Sprintf("sess-%d", n)
		if Unit(11, []byte(sid)) < 0.1 {
			continue
		}
		dropped++
		fail := event(t, fmt.Sprintf(`{"log_type":"play_stop","ts":%d,"device_id":"d","session_id":"%s","code":2001}`, ts, sid))
		edge := event(t, fmt.Sprintf(`{"log_type":"edge_access","ts":%d,"node_id":"e","session_id":"%s","http_status":502}`, ts, sid))
		if k, r := s.Decide(fail); !k || r != 1 {
			t.Fatalf("%s: failure kept=%v rate=%v", sid, k, r)
		}
		if k, _ := s.Decide(edge); k {
			t.Fatalf("%s: the dropped session's edge log was kept", sid)
		}
	}
	if dropped < 150 {
		t.Fatalf("only %d dropped sessions", dropped)
	}
}

// GET /v1/config says exactly what the collector does: the unit, the seed,
// every log_type's rate, the always-kept events, and draws to check a port
// of the hash against, which a port written from the description matches.
func TestConfigDescribesDecision(t *testing.T) {
	s := New(Config{Seed: 42, Default: 0.25, Rates: map[string]float64{"heartbeat": 0.1}})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Seed        uint64
		DefaultRate float64 `json:"default_rate"`
		Rates       map[string]float64
		Unit        []string
		Hash        string
		AlwaysKept  []string `json:"always_kept"`
		Check       map[string]float64
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Seed != 42 || doc.DefaultRate != 0.25 || len(doc.Rates) != len(schemas.Catalog) || doc.Rates["heartbeat"] != 0.1 || doc.Rates["edge_access"] != 0.25 {
		t.Errorf("policy served as %s", b)
	}
	if fmt.Sprint(doc.Unit) != "[session_id device_id stream_id event_id]" || len(doc.AlwaysKept) != 2 || doc.Hash == "" {
		t.Errorf("decision served as %s", b)
	}
	if len(doc.Check) != len(checkIDs) {
		t.Fatalf("check draws %v", doc.Check)
	}
	for id, u := range doc.Check {
		if got := portedUnit(42, []byte(id)); got != u {
			t.Errorf("draw of %q: served %v, the description's hash gives %v", id, u, got)
		}
	}
}

// portedUnit is the hash as GET /v1/config describes it, written apart from
// Unit (XXH64 from its specification, splitmix64 spelled out).
func portedUnit(seed uint64, id []byte) float64 {
	split := func(x uint64) uint64 {
		z := x + 0x9e3779b97f4a7c15
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	return float64(split(xxh64(id)^split(seed))>>11) / (1 << 53)
}

// xxh64 is XXH64 with seed 0, from the specification.
func xxh64(b []byte) uint64 {
	var (
		p1 uint64 = 11400714785074694791
		p2 uint64 = 14029467366897019727
		p3 uint64 = 1609587929392839161
		p4 uint64 = 9650029242287828579
		p5 uint64 = 2870177450012600261
	)
	rotl := func(x uint64, r uint) uint64 { return x<<r | x>>(64-r) }
	u64 := func(b []byte) uint64 {
		var x uint64
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(b[i])
		}
		return x
	}
	round := func(acc, in uint64) uint64 { return rotl(acc+in*p2, 31) * p1 }
	merge := func(acc, v uint64) uint64 { return (acc^round(0, v))*p1 + p4 }
	n := uint64(len(b))
	var h uint64
	if len(b) >= 32 {
		v1, v2, v3, v4 := p1+p2, p2, uint64(0), -p1
		for len(b) >= 32 {
			v1, v2, v3, v4 = round(v1, u64(b)), round(v2, u64(b[8:])), round(v3, u64(b[16:])), round(v4, u64(b[24:]))
			b = b[32:]
		}
		h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
		h = merge(merge(merge(merge(h, v1), v2), v3), v4)
	} else {
		h = p5
	}
	h += n
	for ; len(b) >= 8; b = b[8:] {
		h ^= round(0, u64(b))
		h = rotl(h, 27)*p1 + p4
	}
	if len(b) >= 4 {
		h ^= uint64(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24) * p1
		h = rotl(h, 23)*p2 + p3
		b = b[4:]
	}
	for _, c := range b {
		h ^= uint64(c) * p5
		h = rotl(h, 11) * p1
	}
	h ^= h >> 33
	h *= p2
	h ^= h >> 29
	h *= p3
	return h ^ h>>32
}
