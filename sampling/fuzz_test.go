package sampling

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Any sampling file is refused or gives a policy whose every rate is in
// [0, 1] and names a known log_type, that a Sampler applies and GET
// /v1/config can serve: never a panic.
func FuzzSamplingConfig(f *testing.F) {
	for _, s := range []string{
		"seed: 42\ndefault_rate: 1\nrates:\n  heartbeat: 0.1\n  first_frame: 0.5\n",
		"rates:\n  heartbeat: 1.5\n",
		"default_rate: .nan\n",
		"rates:\n  heartbeat: -.inf\n",
		"rates:\n  nope: 0.5\n",
		"rates: [1\n",
		`{"seed": 18446744073709551615, "default_rate": 0, "rates": {"play_stop": 1e-300}}`,
		"seed: -1\n",
		"default_rate: &r 0.25\nrates:\n  heartbeat: *r\n",
		"rates: !!map {heartbeat: 0x1}\n",
	} {
		f.Add([]byte(s))
	}
	ev := event(f, fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d1","session_id":"s1"}`, time.Now().UnixMilli()))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		valid := func(r float64) bool { return r >= 0 && r <= 1 && !math.IsNaN(r) }
		if !valid(c.Default) {
			t.Fatalf("accepted default_rate %v", c.Default)
		}
		for lt, r := range c.Rates {
			if schemas.Lookup(lt) == nil || !valid(r) {
				t.Fatalf("accepted rate %v for log_type %q", r, lt)
			}
		}
		s := New(c)
		for _, lt := range schemas.Catalog {
			if r := s.Rate(lt.Name); !valid(r) {
				t.Fatalf("sampler rate %v for %s", r, lt.Name)
			}
		}
		if keep, r := s.Decide(ev); !valid(r) || (keep && r == 0) {
			t.Fatalf("Decide = %v at rate %v", keep, r)
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("GET /v1/config cannot serve the policy: %v", err)
		}
	})
}
