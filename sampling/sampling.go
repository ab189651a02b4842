// Package sampling decides which events the collector keeps.
//
// The unit is the play (or push) session: the decision is a seeded,
// deterministic hash of the event's session_id, so a kept session is whole
// across its client events and the server logs that carry its id (an edge
// knows the session from the player's CMCD sid, ingest from the push URL's
// sid), on every collector replica, and an edge or SDK can decide the same
// before it sends (GET /v1/config describes the decision exactly). A player
// keeps its session_id across the retries of one view, so a view is kept or
// dropped whole. Events without a session fall back to the device, then
// the stream (stream-level server logs: a stream's logs are kept whole),
// then the event itself. A viewer's trace by device or user shows its kept
// sessions, not all of them.
//
// Failures (play_stop with a non-zero code, any event with
// first_frame_blocked) are always kept, at rate 1, so failure counts are
// exact. A failure of a dropped session is then stored alone: the session's
// other events were dropped before it was known to fail, and its server
// logs cannot know of it, so they follow the session's draw. Every kept event
// carries the rate it was kept at, so that counts re-weighted by 1/rate stay
// unbiased: each unit is kept with probability rate, whatever it holds.
package sampling

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/cespare/xxhash/v2"
	"gopkg.in/yaml.v3"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Config is the sampling policy, as loaded from the config file and served to
// SDKs by GET /v1/config.
type Config struct {
	// Seed changes which sessions are kept; all replicas must share it.
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

// UnitIDs are the ids the decision hashes, in order of preference: an
// event's unit is the first of them it has (non-empty). The collector sets
// event_id (derived from the content) before it decides.
var UnitIDs = []string{"session_id", "device_id", "stream_id", "event_id"}

// unitCols are UnitIDs' positions in an event's values: common fields, the
// same in every log_type.
var unitCols = func() []int {
	var cols []int
	for _, id := range UnitIDs {
		i := slices.IndexFunc(schemas.Common, func(f schemas.Field) bool { return f.Name == id })
		if i < 0 {
			panic("sampling: unit id " + id + " is not a common field")
		}
		cols = append(cols, i)
	}
	return cols
}()

// UnitID returns the id an event's decision hashes and its name (UnitIDs);
// an event with none of them hashes the empty id.
func UnitID(ev *schemas.Event) (id []byte, name string) {
	for i, c := range unitCols {
		if v := ev.Vals[c].S; len(v) > 0 {
			return v, UnitIDs[i]
		}
	}
	return nil, ""
}

// Unit maps an id to a number in [0, 1): the unit's fixed draw. A unit is
// kept at rate r exactly when Unit(id) < r, so a session kept at a low rate
// is also kept at every higher rate: its trace stays whole across log_types.
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
	id, _ := UnitID(ev)
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

// Description texts of GET /v1/config: what an SDK or an edge needs to
// decide as the collector does.
const (
	descUnit = "the event's unit id is the first of unit it has (non-empty): a play or push session's events, " +
		"client and server alike (an edge's edge_access carries the player's CMCD sid as session_id), share one " +
		"decision; a player keeps its session_id across the retries of one view. Events without a session fall " +
		"back to device_id, then stream_id (stream-level server logs), then event_id (the collector derives one " +
		"from the app and the event's bytes when it has none)"
	descHash = "xxhash64(b) is XXH64 of the id's UTF-8 bytes with seed 0; splitmix64(x) is, mod 2^64: " +
		"z = x + 0x9e3779b97f4a7c15; z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) * 0x94d049bb133111eb; " +
		"z ^ (z >> 31). u = (splitmix64(xxhash64(id) XOR splitmix64(seed)) >> 11) / 2^53, in [0, 1)"
	descKeep = "keep when rate >= 1, or the event is always kept, or u < rate (rate = rates[log_type]); " +
		"a unit kept at one rate is kept at every higher one. A kept event is stored with sample_rate = rate " +
		"(1 when always kept): weight it by 1/sample_rate"
	descAlwaysKept = "always kept at rate 1, whatever the unit's draw, so failure counts are exact; " +
		"of a dropped session only these events are stored: its other events and its server logs " +
		"(which cannot know of the failure) follow the session's draw"
)

// configJSON is the GET /v1/config document.
type configJSON struct {
	Seed        uint64             `json:"seed"`
	DefaultRate float64            `json:"default_rate"`
	Rates       map[string]float64 `json:"rates"`
	Unit        []string           `json:"unit"`
	UnitDoc     string             `json:"unit_doc"`
	Hash        string             `json:"hash"`
	Keep        string             `json:"keep"`
	AlwaysKept  []string           `json:"always_kept"`
	AlwaysDoc   string             `json:"always_kept_doc"`
	Check       map[string]float64 `json:"check"`
}

// checkIDs are ids whose draws GET /v1/config lists, to test a port of the
// hash against.
var checkIDs = []string{"", "session-1", "device-1", "a-session-id-longer-than-32-bytes-0123456789"}

// MarshalJSON serves the policy with an exact description of the decision,
// so an SDK or an edge can sample before sending and spare the upload.
func (s *Sampler) MarshalJSON() ([]byte, error) {
	check := make(map[string]float64, len(checkIDs))
	for _, id := range checkIDs {
		check[id] = Unit(s.cfg.Seed, []byte(id))
	}
	return json.Marshal(configJSON{
		Seed: s.cfg.Seed, DefaultRate: s.cfg.Default, Rates: s.rates, // every log_type, encoding/json sorts keys
		Unit: UnitIDs, UnitDoc: descUnit, Hash: descHash, Keep: descKeep,
		AlwaysKept: []string{"play_stop with code != 0", "any event with first_frame_blocked set"}, AlwaysDoc: descAlwaysKept,
		Check: check,
	})
}
