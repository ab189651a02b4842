package sampling

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

func event(t testing.TB, js string) *schemas.Event {
	t.Helper()
	fs, err := flatjson.ParseObject(nil, []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	ev := &schemas.Event{}
	c := schemas.Cleaner{}
	if r := c.Clean(fs, ev); r != nil {
		t.Fatal(r)
	}
	return ev
}

// The kept fraction of sessions at 10% lies in the 99% binomial interval,
// and a session's decision is the same for all its events and log_types at
// the same rate, and kept at every higher rate.
func TestSessionFractionWithinBinomialInterval(t *testing.T) {
	s := New(Config{Seed: 7, Default: 1, Rates: map[string]float64{"heartbeat": 0.1, "stall": 0.1, "edge_access": 0.1, "first_frame": 0.5}})
	ts := time.Now().UnixMilli()
	const n = 20000
	kept := 0
	for d := 0; d < n; d++ {
		hb := event(t, fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"dev-%d","session_id":"s-%d"}`, ts, d%97, d))
		st := event(t, fmt.Sprintf(`{"log_type":"stall","ts":%d,"device_id":"dev-%d","session_id":"s-%d","duration_ms":100}`, ts, d%97, d))
		ea := event(t, fmt.Sprintf(`{"log_type":"edge_access","ts":%d,"node_id":"edge-1","session_id":"s-%d","http_status":200}`, ts, d))
		ff := event(t, fmt.Sprintf(`{"log_type":"first_frame","ts":%d,"device_id":"dev-%d","session_id":"s-%d","total_ms":100}`, ts, d%97, d))
		k1, r1 := s.Decide(hb)
		k2, _ := s.Decide(st)
		k3, _ := s.Decide(ea)
		k4, _ := s.Decide(ff)
		if k1 != k2 || k1 != k3 {
			t.Fatalf("session %d: heartbeat kept=%v, stall kept=%v, edge_access kept=%v: a session must stay whole", d, k1, k2, k3)
		}
		if k1 && !k4 {
			t.Fatalf("session %d kept at 10%% but not at 50%%", d)
		}
		if r1 != 0.1 {
			t.Fatalf("rate = %v", r1)
		}
		if k1 {
			kept++
		}
	}
	p, z := 0.1, 2.5758 // 99% two-sided
	sd := math.Sqrt(n * p * (1 - p))
	lo, hi := n*p-z*sd, n*p+z*sd
	if float64(kept) < lo || float64(kept) > hi {
		t.Fatalf("kept %d of %d sessions, outside the 99%% interval [%.0f, %.0f]", kept, n, lo, hi)
	}
	// Another seed picks other sessions.
	s2 := New(Config{Seed: 8, Default: 1, Rates: map[string]float64{"heartbeat": 0.1}})
	same := 0
	for d := 0; d < 1000; d++ {
		ev := event(t, fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d","session_id":"s-%d"}`, ts, d))
		a, _ := s.Decide(ev)
		b, _ := s2.Decide(ev)
		if a && b {
			same++
		}
	}
	if same > 40 {
		t.Errorf("seeds 7 and 8 keep %d common sessions of 1000; expected about 10", same)
	}
}

func TestFailuresAlwaysKept(t *testing.T) {
	s := New(Config{Seed: 1, Default: 0})
	ts := time.Now().UnixMilli()
	for d := 0; d < 200; d++ {
		fail := event(t, fmt.Sprintf(`{"log_type":"play_stop","ts":%d,"device_id":"d%d","session_id":"s","code":2001}`, ts, d))
		blocked := event(t, fmt.Sprintf(`{"log_type":"play_stop","ts":%d,"device_id":"d%d","session_id":"s","code":0,"first_frame_blocked":"dns"}`, ts, d))
		ok := event(t, fmt.Sprintf(`{"log_type":"play_stop","ts":%d,"device_id":"d%d","session_id":"s","code":0}`, ts, d))
		if k, r := s.Decide(fail); !k || r != 1 {
			t.Fatalf("failure dropped (kept=%v rate=%v)", k, r)
		}
		if k, r := s.Decide(blocked); !k || r != 1 {
			t.Fatalf("first_frame_blocked dropped (kept=%v rate=%v)", k, r)
		}
		if k, _ := s.Decide(ok); k {
			t.Fatal("a normal stop was kept at rate 0")
		}
	}
}

func TestLoadValidates(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "s.yaml")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	if c, err := Load(write("seed: 3\nrates:\n  heartbeat: 0.25\n")); err != nil || c.Rates["heartbeat"] != 0.25 || c.Default != 1 {
		t.Fatalf("load: %+v %v", c, err)
	}
	for _, bad := range []string{"rates:\n  nope: 0.5\n", "rates:\n  heartbeat: 1.5\n", "default_rate: -1\n", "rates: [1\n"} {
		if _, err := Load(write(bad)); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}
