package scheduler

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lastmile-qoe/lastmile/media/sign"
)

// Formats a line can be played in.
const (
	FormatFLV = "flv" // HTTP-FLV: http://HOST:PORT/live/R_720p.flv
	FormatHLS = "hls" // HLS: http://HOST:PORT/live/R_720p/index.m3u8
)

// SourceRendition is the rendition name of the stream as pushed: its stream
// name is the room itself (live/R), not live/R_source.
const SourceRendition = "source"

// DefaultSignTTL is how long signed URLs stay valid when SignTTL is unset.
const DefaultSignTTL = time.Hour

// Config of the scheduler, loadable from YAML:
//
//	secret: <32+ random bytes, the same on ingest and edges>   # or $LASTMILE_MEDIA_SECRET
//	push_token: <random>                                       # or $LASTMILE_MEDIA_PUSH_TOKEN
//	sign_ttl: 1h
//	max_sign_ttl: 24h
//	ingest_url: rtmp://127.0.0.1:1935/live
//	formats: [flv, hls]
//	cors_origins: ["*"]                                       # pages that may call /v1/schedule
//	cdns:
//	  - name: cdn-a
//	    weight: 70
//	    edges:
//	      - {node: edge-a-north-1, region: north, host: edge-a-north-1.cdn-a.lastmile.test, port: 8081}
//	      - {node: edge-a-south-1, region: south, host: edge-a-south-1.cdn-a.lastmile.test, port: 8082}
//	  - name: cdn-b
//	    weight: 30
//	    edges:
//	      - {node: edge-b-north-1, region: north, host: edge-b-north-1.cdn-b.lastmile.test, port: 8091}
//	renditions:
//	  - {name: source, bitrate_kbps: 4000, width: 1920, height: 1080}
//	  - {name: 720p, bitrate_kbps: 2500, width: 1280, height: 720}
//	  - {name: audio, bitrate_kbps: 128, audio_only: true}
type Config struct {
	// Secret signs every URL; edges and ingest verify with the same secret
	// (media/sign). There is no default: New refuses an empty one.
	Secret string `yaml:"secret"`
	// PushToken is the bearer token /v1/push asks for: publish URLs go to
	// the operator's broadcasters only. New refuses an empty one.
	PushToken string `yaml:"push_token"`
	// SignTTL is how long a signed URL stays valid; default DefaultSignTTL.
	SignTTL time.Duration `yaml:"sign_ttl"`
	// MaxSignTTL is the longest lifetime edges and ingest accept in a signed
	// URL (its expires minus now); default sign.DefaultMaxTTL (24h).
	MaxSignTTL time.Duration `yaml:"max_sign_ttl"`
	// IngestURL is the RTMP application publishers push to; its path is the
	// app ("live") used in every stream path.
	IngestURL  string      `yaml:"ingest_url"`
	CDNs       []CDN       `yaml:"cdns"`
	Renditions []Rendition `yaml:"renditions"`
	// Formats offered per line: flv, hls. Default both.
	Formats []string `yaml:"formats"`
	// CORSOrigins are the page origins whose scripts may call /v1/schedule
	// (e.g. ["https://app.example.com"]); empty or "*" allows any, as a
	// schedule is public: anyone may ask for one with curl.
	CORSOrigins []string `yaml:"cors_origins"`
}

// CDN is one CDN vendor. Weight is its share of viewers as main line; a CDN
// with weight 0 only serves backup lines.
type CDN struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight"`
	Edges  []Edge `yaml:"edges"`
}

// Edge is one edge node of a CDN.
type Edge struct {
	Node   string `yaml:"node"`   // node_id in logs
	Region string `yaml:"region"` // viewers of this region are sent here
	Host   string `yaml:"host"`   // DNS name the player resolves
	Port   int    `yaml:"port"`
}

// Rendition is one quality of the ladder. Name is used in stream paths
// (R_<name>); SourceRendition means the stream as pushed.
type Rendition struct {
	Name        string `yaml:"name"`
	BitrateKbps int    `yaml:"bitrate_kbps"`
	Width       int    `yaml:"width"`
	Height      int    `yaml:"height"`
	AudioOnly   bool   `yaml:"audio_only"`
}

// ParseConfig reads a YAML config; unknown keys are errors, so a typo does
// not silently fall back to a default.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("scheduler config: %w", err)
	}
	return c, nil
}

// LoadConfig reads a YAML config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("scheduler config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// pathSafe reports whether s is a non-empty token of letters, digits and
// dashes, safe in URL paths and free of '_', which separates room and
// rendition in stream names.
func pathSafe(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks everything but the secret and the push token, which
// may come from the environment (media/topology) after the file is read.
func (c Config) Validate() error { return c.validate(false) }

// validate checks c and fills defaults; with secrets, the secret and the
// push token must be set too.
func (c *Config) validate(secrets bool) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if secrets && c.Secret == "" {
		bad("secret is empty: set scheduler.secret or $LASTMILE_MEDIA_SECRET to a long random string, the same for scheduler, ingest and edges (URLs signed with an empty or public secret can be forged by anyone)")
	}
	if secrets && c.PushToken == "" {
		bad("push_token is empty: set scheduler.push_token or $LASTMILE_MEDIA_PUSH_TOKEN, the bearer token broadcasters send to /v1/push")
	}
	if c.SignTTL < 0 || c.MaxSignTTL < 0 {
		bad("sign_ttl %v or max_sign_ttl %v is negative", c.SignTTL, c.MaxSignTTL)
	}
	if c.SignTTL == 0 {
		c.SignTTL = DefaultSignTTL
	}
	if c.MaxSignTTL == 0 {
		c.MaxSignTTL = sign.DefaultMaxTTL
	}
	if c.SignTTL > c.MaxSignTTL {
		bad("sign_ttl %v is longer than max_sign_ttl %v: edges and ingest would refuse every URL", c.SignTTL, c.MaxSignTTL)
	}
	if u, err := url.Parse(c.IngestURL); err != nil || u.Scheme != "rtmp" || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		bad("ingest_url %q: want rtmp://HOST:PORT/APP", c.IngestURL)
	} else if app := strings.Trim(u.Path, "/"); !pathSafe(app, 64) {
		bad("ingest_url %q: app %q must be letters, digits and dashes", c.IngestURL, app)
	}
	if len(c.Formats) == 0 {
		c.Formats = []string{FormatFLV, FormatHLS}
	}
	for _, f := range c.Formats {
		if f != FormatFLV && f != FormatHLS {
			bad("formats: unknown format %q (want %s or %s)", f, FormatFLV, FormatHLS)
		}
	}
	if len(c.CDNs) < 2 {
		bad("cdns: %d configured, want at least 2 so that backup lines use another CDN than main", len(c.CDNs))
	}
	cdns, nodes := map[string]bool{}, map[string]bool{}
	total := 0
	for i, cdn := range c.CDNs {
		where := fmt.Sprintf("cdns[%d] (%s)", i, cdn.Name)
		if !pathSafe(cdn.Name, 64) {
			bad("%s: name must be 1-64 letters, digits and dashes", where)
		}
		if cdns[cdn.Name] {
			bad("%s: duplicate name", where)
		}
		cdns[cdn.Name] = true
		if cdn.Weight < 0 {
			bad("%s: weight %d is negative", where, cdn.Weight)
		}
		total += max(cdn.Weight, 0)
		if len(cdn.Edges) == 0 {
			bad("%s: no edges", where)
		}
		for j, e := range cdn.Edges {
			ew := fmt.Sprintf("%s: edges[%d] (%s)", where, j, e.Node)
			if e.Node == "" || e.Region == "" || e.Host == "" {
				bad("%s: node, region and host are required", ew)
			}
			if nodes[e.Node] {
				bad("%s: node id used twice; node ids must be unique across CDNs", ew)
			}
			nodes[e.Node] = true
			if e.Port < 1 || e.Port > 65535 {
				bad("%s: port %d out of range 1-65535", ew, e.Port)
			}
		}
	}
	if len(c.CDNs) > 0 && total == 0 {
		bad("cdns: every weight is 0; at least one CDN must take main lines")
	}
	if len(c.Renditions) == 0 {
		bad("renditions: none configured")
	}
	rends := map[string]bool{}
	for i, r := range c.Renditions {
		where := fmt.Sprintf("renditions[%d] (%s)", i, r.Name)
		if !pathSafe(r.Name, 32) {
			bad("%s: name must be 1-32 letters, digits and dashes", where)
		}
		if rends[r.Name] {
			bad("%s: duplicate name", where)
		}
		rends[r.Name] = true
		if r.BitrateKbps < 0 || r.Width < 0 || r.Height < 0 {
			bad("%s: negative bitrate or size", where)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scheduler config: %w", err)
	}
	return nil
}
