// Package topology is the one config file of a media stack: which roles run
// where, the CDN layout the scheduler hands out, the rooms the built-in
// publishers push and the audience of players. `lastmile media up` starts a
// whole topology from it; each `lastmile media <role>` reads its own part.
package topology

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lastmile-qoe/lastmile/media/scheduler"
)

// Topology is a whole media stack. Zero fields take the defaults of
// Default() when loaded with Load.
type Topology struct {
	// Collector is where every component posts its logs.
	Collector Collector `yaml:"collector"`
	// Scheduler is the scheduling service's config: CDNs with their edges,
	// the rendition ladder, the signing secret and the ingest URL.
	Scheduler scheduler.Config `yaml:"scheduler"`
	// SchedulerListen is the scheduler's HTTP address (viewers and
	// broadcasters: /v1/schedule, /v1/push, /healthz).
	SchedulerListen string `yaml:"scheduler_listen"`
	// SchedulerAdmin serves the scheduler's /metrics and /healthz (with
	// media up, the whole stack's), apart from SchedulerListen.
	SchedulerAdmin string `yaml:"scheduler_admin"`
	// DNSListen is the UDP address of the stack's DNS server, which
	// resolves every edge host to EdgeIP.
	DNSListen string `yaml:"dns_listen"`
	// DNSHTTP serves the DNS role's /metrics and /healthz when it runs alone.
	DNSHTTP string `yaml:"dns_http"`
	// EdgeIP is the address the edge hosts resolve to and edges bind.
	EdgeIP string `yaml:"edge_ip"`
	Ingest Ingest `yaml:"ingest"`
	Origin Origin `yaml:"origin"`
	Edge   Edge   `yaml:"edge"`
	// Rooms are pushed by built-in publishers.
	Rooms   []Room  `yaml:"rooms"`
	Players Players `yaml:"players"`
}

// Collector is the lastmile collector the stack reports to.
type Collector struct {
	URL    string `yaml:"url"`
	AppKey string `yaml:"app_key"`
}

// Ingest is the RTMP publish server.
type Ingest struct {
	Listen string `yaml:"listen"` // RTMP
	HTTP   string `yaml:"http"`   // /metrics, /healthz
	Node   string `yaml:"node"`
	Region string `yaml:"region"`
}

// Origin holds live streams and runs the transcode ladder.
type Origin struct {
	RTMP   string `yaml:"rtmp"`  // relays from ingest arrive here
	HTTP   string `yaml:"http"`  // HTTP-FLV for edges, /healthz
	Admin  string `yaml:"admin"` // /metrics, /healthz
	Node   string `yaml:"node"`
	Region string `yaml:"region"`
	// Transcode is "synthetic" (default: a rate-reducing transcoder that
	// fits a topology on 2 cores) or "ffmpeg".
	Transcode string `yaml:"transcode"`
}

// Edge are the settings every edge node shares; the nodes themselves are
// the scheduler's CDN edges.
type Edge struct {
	// QuickStart is the quick-start lower bound: a new viewer starts at the
	// keyframe at or before now − QuickStart.
	QuickStart time.Duration `yaml:"quick_start"`
	// CacheGOPs is the GOPs each edge keeps per stream.
	CacheGOPs int `yaml:"cache_gops"`
	// QueueBytes bounds each viewer's queue; past it the viewer drops to
	// the next keyframe.
	QueueBytes int `yaml:"queue_bytes"`
	// CORSOrigins are the page origins browsers may play from (HLS and
	// HTTP-FLV through MSE players such as hls.js and mpegts.js); empty or
	// "*" allows any.
	CORSOrigins []string `yaml:"cors_origins"`
	// Nodes override QuickStart and CacheGOPs for single edge nodes, by
	// node name; a zero field keeps the shared value.
	Nodes map[string]EdgeSettings `yaml:"nodes"`
}

// EdgeSettings are one edge node's own quick start and GOP cache.
type EdgeSettings struct {
	QuickStart time.Duration `yaml:"quick_start"`
	CacheGOPs  int           `yaml:"cache_gops"`
}

// For returns the settings of edge node: the shared ones, with the node's
// overrides applied.
func (e Edge) For(node string) Edge {
	n := e.Nodes[node]
	if n.QuickStart > 0 {
		e.QuickStart = n.QuickStart
	}
	if n.CacheGOPs > 0 {
		e.CacheGOPs = n.CacheGOPs
	}
	e.Nodes = nil
	return e
}

// Room is one live room and its built-in broadcaster.
type Room struct {
	Name        string `yaml:"name"`
	BitrateKbps int    `yaml:"bitrate_kbps"`
}

// Players is the audience: Count players arrive evenly over Ramp, each
// watches Watch, with dimensions drawn (seeded) from the lists.
type Players struct {
	Count       int           `yaml:"count"`
	Ramp        time.Duration `yaml:"ramp"`
	Watch       time.Duration `yaml:"watch"`
	Seed        uint64        `yaml:"seed"`
	Regions     []string      `yaml:"regions"`
	ISPs        []string      `yaml:"isps"`
	AppVersions []string      `yaml:"app_versions"`
	OSes        []string      `yaml:"oses"`
	Networks    []string      `yaml:"networks"`
	Format      string        `yaml:"format"` // flv or hls; "" mixes both
	// WeakShare of the players are on a weak network: their downloads are
	// capped at WeakKbps, below the stream's bitrate, so they stall.
	WeakShare float64 `yaml:"weak_share"`
	WeakKbps  int     `yaml:"weak_kbps"`
	// DecoderDefect gives one app version a decoder that freezes the
	// picture every RenderStallEvery for RenderStallFor (render stalls).
	DecoderDefect DecoderDefect `yaml:"decoder_defect"`
	// RunID, when set, goes into every device and user id, so two runs of
	// one seed do not share devices (`lastmile demo` sets one per run).
	RunID string `yaml:"run_id"`
}

// DecoderDefect is an app version with a render-stall defect.
type DecoderDefect struct {
	AppVersion       string        `yaml:"app_version"`
	RenderStallEvery time.Duration `yaml:"render_stall_every"`
	RenderStallFor   time.Duration `yaml:"render_stall_for"`
}

// Domain is the DNS zone of edge hosts.
const Domain = "lastmile.test"

// Default is a topology that fits a 2-core machine: 2 regions × 2 CDNs with
// one edge each, one room at 2 Mbit/s with a four-step ladder, 50 players.
func Default() Topology {
	edge := func(cdn, region string, port int) scheduler.Edge {
		node := "edge-" + cdn[len(cdn)-1:] + "-" + region + "-1"
		return scheduler.Edge{Node: node, Region: region, Host: node + "." + cdn + "." + Domain, Port: port}
	}
	return Topology{
		Collector: Collector{URL: "http://127.0.0.1:8080", AppKey: "dev-key"},
		Scheduler: scheduler.Config{
			// No secret and no push token: a role that signs or verifies
			// refuses to start without them (Secrets).
			SignTTL:   time.Hour,
			IngestURL: "rtmp://127.0.0.1:1935/live",
			CDNs: []scheduler.CDN{
				{Name: "cdn-a", Weight: 60, Edges: []scheduler.Edge{edge("cdn-a", "north", 7101), edge("cdn-a", "south", 7102)}},
				{Name: "cdn-b", Weight: 40, Edges: []scheduler.Edge{edge("cdn-b", "north", 7201), edge("cdn-b", "south", 7202)}},
			},
			Renditions: []scheduler.Rendition{
				{Name: "source", BitrateKbps: 2000, Width: 1280, Height: 720},
				{Name: "480p", BitrateKbps: 800, Width: 854, Height: 480},
				{Name: "360p", BitrateKbps: 500, Width: 640, Height: 360},
				{Name: "audio", BitrateKbps: 64, AudioOnly: true},
			},
		},
		SchedulerListen: "127.0.0.1:7000",
		SchedulerAdmin:  "127.0.0.1:7001",
		DNSListen:       "127.0.0.1:7053",
		DNSHTTP:         "127.0.0.1:7054",
		EdgeIP:          "127.0.0.1",
		Ingest:          Ingest{Listen: "127.0.0.1:1935", HTTP: "127.0.0.1:7010", Node: "ingest-1", Region: "north"},
		Origin:          Origin{RTMP: "127.0.0.1:1936", HTTP: "127.0.0.1:7020", Admin: "127.0.0.1:7021", Node: "origin-1", Region: "north", Transcode: "synthetic"},
		Edge:            Edge{QuickStart: time.Second, CacheGOPs: 2, QueueBytes: 4 << 20},
		Rooms:           []Room{{Name: "room1", BitrateKbps: 2000}},
		Players: Players{
			Count: 50, Ramp: 10 * time.Second, Watch: 60 * time.Second, Seed: 1,
			Regions:     []string{"north", "south"},
			ISPs:        []string{"isp-a", "isp-b", "isp-c"},
			AppVersions: []string{"5.1.0", "5.2.0"},
			OSes:        []string{"android", "ios", "web"},
			Networks:    []string{"wifi", "4g", "5g"},
			WeakShare:   0.1, WeakKbps: 1200,
		},
	}
}

// Load reads a topology file over the defaults: keys present in the file
// replace the default's; unknown keys are errors, so a typo is not silently
// ignored.
func Load(path string) (Topology, error) {
	t := Default()
	if path == "" {
		return t, t.Validate()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return t, fmt.Errorf("topology: %w", err)
	}
	return Parse(b)
}

// Parse reads a topology from YAML over the defaults.
func Parse(b []byte) (Topology, error) {
	t := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("topology: %w", err)
	}
	return t, t.Validate()
}

// Validate reports every problem at once.
func (t *Topology) Validate() error {
	var errs []error
	if t.Collector.URL == "" {
		errs = append(errs, errors.New("collector.url is empty"))
	}
	if err := t.Scheduler.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("scheduler: %w", err))
	}
	seen := map[string]bool{}
	for _, r := range t.Rooms {
		if r.Name == "" || seen[r.Name] {
			errs = append(errs, fmt.Errorf("rooms: empty or repeated room %q", r.Name))
		}
		seen[r.Name] = true
		if r.BitrateKbps <= 0 {
			errs = append(errs, fmt.Errorf("rooms: %s: bitrate_kbps must be positive", r.Name))
		}
	}
	if t.Players.WeakShare < 0 || t.Players.WeakShare > 1 {
		errs = append(errs, fmt.Errorf("players.weak_share %v: want 0 to 1", t.Players.WeakShare))
	}
	if t.Players.Count < 0 {
		errs = append(errs, errors.New("players.count is negative"))
	}
	if t.Players.Count > 0 && (len(t.Players.Regions) == 0 || len(t.Rooms) == 0) {
		errs = append(errs, errors.New("players need at least one region and one room"))
	}
	for node := range t.Edge.Nodes {
		if !slices.ContainsFunc(t.Edges(), func(e EdgeNode) bool { return e.Node == node }) {
			errs = append(errs, fmt.Errorf("edge.nodes: %q is no edge of scheduler.cdns", node))
		}
	}
	switch t.Origin.Transcode {
	case "", "synthetic", "ffmpeg":
	default:
		errs = append(errs, fmt.Errorf("origin.transcode %q: want synthetic or ffmpeg", t.Origin.Transcode))
	}
	switch t.Players.Format {
	case "", "flv", "hls":
	default:
		errs = append(errs, fmt.Errorf("players.format %q: want flv, hls or empty (both)", t.Players.Format))
	}
	return errors.Join(errs...)
}

// Edges lists every edge node with its CDN.
func (t *Topology) Edges() []EdgeNode {
	var out []EdgeNode
	for _, c := range t.Scheduler.CDNs {
		for _, e := range c.Edges {
			out = append(out, EdgeNode{CDN: c.Name, Edge: e})
		}
	}
	return out
}

// EdgeNode is one edge with the CDN it belongs to.
type EdgeNode struct {
	CDN string
	scheduler.Edge
}

// The environment variables that override the topology's secrets, so that
// a topology file can be shared without them.
const (
	EnvSecret    = "LASTMILE_MEDIA_SECRET"
	EnvPushToken = "LASTMILE_MEDIA_PUSH_TOKEN"
)

// What a role needs, for Secrets.
const (
	NeedSecret    = "scheduler.secret"
	NeedPushToken = "scheduler.push_token"
)

// Secrets takes scheduler.secret and scheduler.push_token from the
// environment when set there (getenv: os.Getenv). Then, with generate,
// each one still empty is drawn at random, and its name returned: only for
// a stack whose signers and verifiers all run in one process (media up, a
// scenario, the demo). Without generate, each one in need that is empty is
// an error: the scheduler needs both, ingest and edges the secret, a
// publisher asking the scheduler the push token.
func (t *Topology) Secrets(getenv func(string) string, generate bool, need ...string) (generated []string, err error) {
	if v := getenv(EnvSecret); v != "" {
		t.Scheduler.Secret = v
	}
	if v := getenv(EnvPushToken); v != "" {
		t.Scheduler.PushToken = v
	}
	fields := []struct {
		name, env string
		v         *string
	}{
		{NeedSecret, EnvSecret, &t.Scheduler.Secret},
		{NeedPushToken, EnvPushToken, &t.Scheduler.PushToken},
	}
	var errs []error
	for _, f := range fields {
		switch {
		case *f.v != "":
		case generate:
			var raw [32]byte
			if _, err := rand.Read(raw[:]); err != nil {
				return nil, fmt.Errorf("topology: %s: %w", f.name, err)
			}
			*f.v = hex.EncodeToString(raw[:])
			generated = append(generated, f.name)
		case slices.Contains(need, f.name):
			errs = append(errs, fmt.Errorf("%s is not set: set it in the topology file or $%s to a long random string (the same in every role's config); no built-in value is used", f.name, f.env))
		}
	}
	return generated, errors.Join(errs...)
}
