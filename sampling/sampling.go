// Package sampling decides which events the collector keeps. The decision is a
// seeded, deterministic hash of the device (the session when there is no
// device), so every collector replica and every event of one device agree and
// traces stay whole. Failures are always kept. Every kept event carries the
// rate it was kept at, so that counts re-weighted by 1/rate stay unbiased.
package sampling

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/cespare/xxhash/v2"
	"gopkg.in/yaml.v3"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Config is the sampling policy, as loaded from the config file and served to
// SDKs by GET /v1/config.
type Config struct {
	// Seed changes which devices are kept; all replicas must share it.
	Seed uint64 `yaml:"seed" json:"seed"`
	// Default is the rate of log_types without their own entry (1 keeps all).
	Default float64 `yaml:"default_rate" json:"default_rate"`
	// Rates maps a log_type to its rate in [0, 1].
	Rates map[string]float64 `yaml:"rates" json:"rates"`
}

// DefaultConfig keeps everything.
func DefaultConfig() Config { return Config{Default: 1, Rates: map[string]float64{}} }

// Load reads a YAML (or JSON) sampling file:
//
//	seed: 42
//	default_rate: 1
//	rates:
//	  heartbeat: 0.1
//	  first_frame: 0.5
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("sampling config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("sampling config %s: %w", path, err)
	}
	return c, nil
}

// Parse reads the bytes of a sampling file (see Load) and validates them.
func Parse(b []byte) (Config, error) {
	c := Config{Default: 1}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks every rate is in [0, 1] and names a known log_type.
func (c Config) Validate() error {
	if c.Default < 0 || c.Default > 1 || math.IsNaN(c.Default) {
		return fmt.Errorf("sampling: default_rate %v must be in [0, 1]", c.Default)
	}
	for lt, r := range c.Rates {
		if schemas.Lookup(lt) == nil {
			return fmt.Errorf("sampling: rates names unknown log_type %q (known: %v)", lt, schemas.Names())
		}
		if r < 0 || r > 1 || math.IsNaN(r) {
			return fmt.Errorf("sampling: rate of %s is %v, must be in [0, 1]", lt, r)
		}
	}
	return nil
}

// Sampler applies a Config. It is safe for concurrent use.
type Sampler struct {
	cfg   Config
	rates map[string]float64
}

// New returns a Sampler for c, which must be valid.
func New(c Config) *Sampler {
	r := make(map[string]float64, len(schemas.Catalog))
	for _, lt := range schemas.Catalog {
		rate, ok := c.Rates[lt.Name]
		if !ok {
			rate = c.Default
		}
		r[lt.Name] = rate
	}
	return &Sampler{cfg: c, rates: r}
}

// Config returns the policy the sampler applies.
func (s *Sampler) Config() Config { return s.cfg }

// Rate returns the configured rate of a log_type.
func (s *Sampler) Rate(logType string) float64 { return s.rates[logType] }

// Unit maps an id to a number in [0, 1): the device's fixed draw. A device is
// kept at rate r exactly when Unit(id) < r, so a device kept at a low rate is
// also kept at every higher rate: its trace stays whole across log_types.
func Unit(seed uint64, id []byte) float64 {
	h := mix(xxhash.Sum64(id) ^ mix(seed))
	return float64(h>>11) / (1 << 53)
}

// splitmix64 finaliser: spreads xxhash output so nearby seeds differ fully.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Decide returns whether to keep a valid event and the rate to store with it.
// Failures — play_stop with a non-zero code, any event with
// first_frame_blocked — are always kept, at rate 1: they were kept with
// certainty, so their weight is 1.
func (s *Sampler) Decide(ev *schemas.Event) (keep bool, rate float64) {
	rate = s.rates[ev.Type.Name]
	if rate >= 1 {
		return true, 1
	}
	if IsFailure(ev) {
		return true, 1
	}
	if rate <= 0 {
		return false, 0
	}
	id := ev.Vals[schemas.ColDeviceID].S
	if len(id) == 0 {
		id = ev.Vals[schemas.ColSessionID].S
	}
	if len(id) == 0 {
		id = ev.Vals[schemas.ColStreamID].S
	}
	return Unit(s.cfg.Seed, id) < rate, rate
}

// IsFailure reports whether an event is a failure that sampling must keep.
func IsFailure(ev *schemas.Event) bool {
	if v, ok := ev.Get("first_frame_blocked"); ok && len(v.S) > 0 {
		return true
	}
	if ev.Type.Name == "play_stop" {
		if v, ok := ev.Get("code"); ok && v.Set && v.I != 0 {
			return true
		}
	}
	return false
}

// MarshalJSON serves the policy with a description of the decision, so an
// SDK can sample before sending and spare the upload.
func (s *Sampler) MarshalJSON() ([]byte, error) {
	names := make([]string, 0, len(s.rates))
	for n := range s.rates {
		names = append(names, n)
	}
	sort.Strings(names)
	rates := make(map[string]float64, len(names))
	for _, n := range names {
		rates[n] = s.rates[n]
	}
	return json.Marshal(map[string]any{
		"seed":         s.cfg.Seed,
		"default_rate": s.cfg.Default,
		"rates":        rates,
		"hash":         "u = splitmix64(xxhash64(id) XOR splitmix64(seed)) >> 11 / 2^53; keep when u < rate; id = device_id, else session_id, else stream_id",
		"always_kept":  []string{"play_stop with code != 0", "any event with first_frame_blocked set"},
	})
}
