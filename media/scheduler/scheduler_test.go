package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/sign"
)

const exampleYAML = `
secret: test-secret
push_token: test-push-token
sign_ttl: 10m
ingest_url: rtmp://127.0.0.1:1935/live
formats: [flv, hls]
cdns:
  - name: cdn-a
    weight: 60
    edges:
      - {node: edge-a-north-1, region: north, host: edge-a-north-1.cdn-a.lastmile.test, port: 8081}
      - {node: edge-a-north-2, region: north, host: edge-a-north-2.cdn-a.lastmile.test, port: 8083}
      - {node: edge-a-south-1, region: south, host: edge-a-south-1.cdn-a.lastmile.test, port: 8082}
  - name: cdn-b
    weight: 30
    edges:
      - {node: edge-b-north-1, region: north, host: edge-b-north-1.cdn-b.lastmile.test, port: 8091}
  - name: cdn-c
    weight: 10
    edges:
      - {node: edge-c-south-1, region: south, host: edge-c-south-1.cdn-c.lastmile.test, port: 8101}
      - {node: edge-c-west-1, region: west, host: edge-c-west-1.cdn-c.lastmile.test, port: 8102}
renditions:
  - {name: source, bitrate_kbps: 4000, width: 1920, height: 1080}
  - {name: 720p, bitrate_kbps: 2500, width: 1280, height: 720}
  - {name: audio, bitrate_kbps: 128, audio_only: true}
`

func newService(t *testing.T) *Service {
	t.Helper()
	cfg, err := ParseConfig([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var now = time.Unix(1_800_000_000, 0)

func TestParseConfig(t *testing.T) {
	s := newService(t)
	if s.cfg.SignTTL != 10*time.Minute || len(s.cfg.CDNs) != 3 || s.cfg.CDNs[2].Edges[1].Port != 8102 || !s.cfg.Renditions[2].AudioOnly {
		t.Fatalf("parsed %+v", s.cfg)
	}
	if _, err := ParseConfig([]byte("secret: x\nsign_tll: 1m\n")); err == nil || !strings.Contains(err.Error(), "sign_tll") {
		t.Errorf("misspelt key: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		c, err := ParseConfig([]byte(exampleYAML))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" = valid
	}{
		{"example", func(*Config) {}, ""},
		{"no secret", func(c *Config) { c.Secret = "" }, "secret is empty"},
		{"no push token", func(c *Config) { c.PushToken = "" }, "push_token is empty"},
		{"negative ttl", func(c *Config) { c.SignTTL = -time.Second }, "sign_ttl"},
		{"ttl over the maximum", func(c *Config) { c.SignTTL = 25 * time.Hour }, "longer than max_sign_ttl 24h0m0s"},
		{"ttl over a set maximum", func(c *Config) { c.MaxSignTTL = 5 * time.Minute }, "longer than max_sign_ttl 5m0s"},
		{"http ingest", func(c *Config) { c.IngestURL = "http://x/live" }, "ingest_url"},
		{"ingest without app", func(c *Config) { c.IngestURL = "rtmp://x:1935/" }, "ingest_url"},
		{"one cdn", func(c *Config) { c.CDNs = c.CDNs[:1] }, "at least 2"},
		{"all weights 0", func(c *Config) {
			for i := range c.CDNs {
				c.CDNs[i].Weight = 0
			}
		}, "every weight is 0"},
		{"negative weight", func(c *Config) { c.CDNs[1].Weight = -1 }, "negative"},
		{"duplicate cdn", func(c *Config) { c.CDNs[1].Name = "cdn-a" }, "duplicate name"},
		{"duplicate node", func(c *Config) { c.CDNs[1].Edges[0].Node = "edge-a-north-1" }, "node id used twice"},
		{"bad port", func(c *Config) { c.CDNs[0].Edges[0].Port = 0 }, "port 0"},
		{"edge without region", func(c *Config) { c.CDNs[0].Edges[0].Region = "" }, "region and host are required"},
		{"cdn without edges", func(c *Config) { c.CDNs[1].Edges = nil }, "no edges"},
		{"bad format", func(c *Config) { c.Formats = []string{"dash"} }, "unknown format"},
		{"no renditions", func(c *Config) { c.Renditions = nil }, "renditions: none"},
		{"rendition with underscore", func(c *Config) { c.Renditions[1].Name = "hd_1" }, "letters, digits and dashes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(&c)
			_, err := New(c, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	c := base()
	c.SignTTL, c.Formats = 0, nil
	s, err := New(c, nil)
	if err != nil || s.cfg.SignTTL != DefaultSignTTL || len(s.cfg.Formats) != 2 {
		t.Errorf("defaults not filled: %v %+v", err, s)
	}
}

// Over many viewers the main CDN shares follow the weights (within 5 sigma
// of the binomial), and the backup is always another CDN.
func TestWeightsRespected(t *testing.T) {
	s := newService(t)
	const n = 20000
	mains := map[string]int{}
	backups := map[string]int{}
	for i := 0; i < n; i++ {
		sd, err := s.Schedule(Request{Room: "r1", DeviceID: fmt.Sprintf("dev-%d", i), Region: "north"}, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range sd.Renditions {
			if r.Main.CDN == r.Backup.CDN {
				t.Fatalf("device %d: main and backup both on %s", i, r.Main.CDN)
			}
			if r.Main.CDN != sd.Renditions[0].Main.CDN || r.Main.Node != sd.Renditions[0].Main.Node {
				t.Fatalf("device %d: renditions on different main lines", i)
			}
		}
		mains[sd.Renditions[0].Main.CDN]++
		backups[sd.Renditions[0].Backup.CDN]++
	}
	for cdn, w := range map[string]float64{"cdn-a": 0.6, "cdn-b": 0.3, "cdn-c": 0.1} {
		mean, sigma := n*w, math.Sqrt(n*w*(1-w))
		if got := float64(mains[cdn]); math.Abs(got-mean) > 5*sigma {
			t.Errorf("%s is main for %v of %d devices, want %v ± %.0f", cdn, got, n, mean, 5*sigma)
		}
	}
	// Backup of a cdn-a viewer is cdn-b with odds 30:10, etc.; every CDN is
	// somebody's backup.
	for _, cdn := range []string{"cdn-a", "cdn-b", "cdn-c"} {
		if backups[cdn] == 0 {
			t.Errorf("%s is never a backup", cdn)
		}
	}
}

func TestWeightZeroIsBackupOnly(t *testing.T) {
	c, _ := ParseConfig([]byte(exampleYAML))
	c.CDNs[2].Weight = 0
	c.CDNs = []CDN{c.CDNs[0], c.CDNs[2]} // cdn-a (60) and cdn-c (0)
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		sd, err := s.Schedule(Request{Room: "r1", DeviceID: fmt.Sprint(i), Region: "south"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if m, b := sd.Renditions[0].Main.CDN, sd.Renditions[0].Backup.CDN; m != "cdn-a" || b != "cdn-c" {
			t.Fatalf("main %s backup %s", m, b)
		}
	}
}

func TestPickWeighted(t *testing.T) {
	tests := []struct {
		weights []int
		u       float64
		want    int
	}{
		{[]int{1, 1}, 0, 0},
		{[]int{1, 1}, 0.49, 0},
		{[]int{1, 1}, 0.5, 1},
		{[]int{0, 3, 0, 1}, 0, 1},
		{[]int{0, 3, 0, 1}, 0.74, 1},
		{[]int{0, 3, 0, 1}, 0.75, 3},
		{[]int{0, 3, 0, 1}, math.Nextafter(1, 0), 3},
		{[]int{0, 0}, 0.3, -1},
		{nil, 0.3, -1},
	}
	for _, tt := range tests {
		if got := pickWeighted(tt.weights, tt.u); got != tt.want {
			t.Errorf("pickWeighted(%v, %v) = %d, want %d", tt.weights, tt.u, got, tt.want)
		}
	}
}

// A viewer gets edges of their region; a CDN with no edge there falls back
// to another region and says so.
func TestRegionSelection(t *testing.T) {
	s := newService(t)
	edgeRegion := map[string]map[string]bool{"cdn-a": {"north": true, "south": true}, "cdn-b": {"north": true}, "cdn-c": {"south": true, "west": true}}
	seen := map[string]bool{}
	for i := 0; i < 300; i++ {
		for _, region := range []string{"north", "south", "west"} {
			sd, err := s.Schedule(Request{Room: "r1", DeviceID: fmt.Sprint("d", i), Region: region}, now)
			if err != nil {
				t.Fatal(err)
			}
			fallbacks := 0
			for _, l := range []Line{sd.Renditions[0].Main, sd.Renditions[0].Backup} {
				seen[l.Node] = true
				has := edgeRegion[l.CDN][region]
				if has && (l.Region != region || l.RegionFallback) {
					t.Fatalf("%s viewer on %s got %s in %s (fallback %v)", region, l.CDN, l.Node, l.Region, l.RegionFallback)
				}
				if !has {
					if !l.RegionFallback || l.Region == region {
						t.Fatalf("%s viewer on %s: line %+v should be a marked fallback", region, l.CDN, l)
					}
					fallbacks++
				}
			}
			if len(sd.Notes) != fallbacks {
				t.Fatalf("%d fallbacks but notes %q", fallbacks, sd.Notes)
			}
		}
	}
	// Both north edges of cdn-a get viewers.
	if !seen["edge-a-north-1"] || !seen["edge-a-north-2"] {
		t.Errorf("edges used: %v", seen)
	}
}

func TestDeterministicPerDevice(t *testing.T) {
	s1, s2 := newService(t), newService(t)
	for i := 0; i < 50; i++ {
		req := Request{Room: "r1", DeviceID: fmt.Sprint("viewer-", i), Region: "south"}
		a, _ := s1.Schedule(req, now)
		b, _ := s2.Schedule(req, now.Add(time.Hour))
		for j := range a.Renditions {
			am, bm := a.Renditions[j].Main, b.Renditions[j].Main
			ab, bb := a.Renditions[j].Backup, b.Renditions[j].Backup
			if am.Node != bm.Node || ab.Node != bb.Node {
				t.Fatalf("device %s: %s/%s then %s/%s", req.DeviceID, am.Node, ab.Node, bm.Node, bb.Node)
			}
		}
	}
}

// Every URL has the documented shape and verifies with media/sign until it
// expires; without its signature or on another path it does not.
func TestSignedURLs(t *testing.T) {
	s := newService(t)
	sd, err := s.Schedule(Request{Room: "r1", DeviceID: "d1", Region: "north"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if sd.StreamID != "live/r1" || sd.Expires != now.Add(10*time.Minute).Unix() || len(sd.Renditions) != 3 {
		t.Fatalf("stream data %+v", sd)
	}
	wantPath := map[string]map[string]string{
		"source": {"flv": "/live/r1.flv", "hls": "/live/r1/index.m3u8"},
		"720p":   {"flv": "/live/r1_720p.flv", "hls": "/live/r1_720p/index.m3u8"},
		"audio":  {"flv": "/live/r1_audio.flv", "hls": "/live/r1_audio/index.m3u8"},
	}
	for _, r := range sd.Renditions {
		for _, l := range []Line{r.Main, r.Backup} {
			if len(l.URLs) != 2 {
				t.Fatalf("%s %s: urls %v", r.Name, l.CDN, l.URLs)
			}
			for f, raw := range l.URLs {
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatal(err)
				}
				if u.Scheme != "http" || u.Hostname() != l.Host || u.Port() != fmt.Sprint(l.Port) || u.Path != wantPath[r.Name][f] {
					t.Errorf("%s %s url %s", r.Name, f, raw)
				}
				q := u.Query()
				tests := []struct {
					name  string
					path  string
					q     url.Values
					at    time.Time
					want  error
					valid bool
				}{
					{"fresh", u.Path, q, now, nil, true},
					{"just before expiry", u.Path, q, now.Add(10 * time.Minute), nil, true},
					{"expired", u.Path, q, now.Add(10*time.Minute + time.Second), sign.ErrExpired, false},
					{"unsigned", u.Path, url.Values{}, now, sign.ErrUnsigned, false},
					{"other room", strings.Replace(u.Path, "r1", "r2", 1), q, now, sign.ErrBadSignature, false},
				}
				for _, tt := range tests {
					err := sign.Verify("test-secret", tt.path, tt.q, tt.at, 0)
					if tt.valid && err != nil || !tt.valid && !errors.Is(err, tt.want) {
						t.Errorf("%s: %s: Verify = %v, want %v", raw, tt.name, err, tt.want)
					}
				}
			}
		}
	}
}

func TestPush(t *testing.T) {
	s := newService(t)
	pd, err := s.Push("r1", now)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(pd.URL)
	if err != nil || u.Scheme != "rtmp" || u.Host != "127.0.0.1:1935" || u.Path != "/live/r1" || pd.StreamID != "live/r1" {
		t.Fatalf("push %+v", pd)
	}
	if err := sign.Verify("test-secret", "/live/r1", u.Query(), now.Add(time.Minute), 0); err != nil {
		t.Errorf("push url: %v", err)
	}
	if err := sign.Verify("test-secret", "/live/r1", u.Query(), now.Add(11*time.Minute), 0); !errors.Is(err, sign.ErrExpired) {
		t.Errorf("push url after ttl: %v", err)
	}
	if err := sign.Verify("test-secret", "/live/r2", u.Query(), now, 0); !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("push url for another room: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	s := newService(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	const bearer = "Bearer test-push-token"
	tests := []struct {
		name, method, target string
		status               int
		errHas               string
		auth                 string
	}{
		{"schedule", "GET", "/v1/schedule?room=r1&region=north&isp=isp-a&app_version=1.2.0&device_id=d1", 200, "", ""},
		{"push", "GET", "/v1/push?room=r1", 200, "", bearer},
		{"push without token", "GET", "/v1/push?room=r1", 401, "bearer token", ""},
		{"push with wrong token", "GET", "/v1/push?room=r1", 401, "bearer token", "Bearer test-push-tokem"},
		{"push with the secret as token", "GET", "/v1/push?room=r1", 401, "bearer token", "Bearer test-secret"},
		{"push with the token unprefixed", "GET", "/v1/push?room=r1", 401, "bearer token", "test-push-token"},
		{"missing room", "GET", "/v1/schedule?region=north&device_id=d1", 400, "room is required", ""},
		{"missing device", "GET", "/v1/schedule?room=r1&region=north", 400, "device_id is required", ""},
		{"missing region", "GET", "/v1/schedule?room=r1&device_id=d1", 400, "region is required", ""},
		{"unknown region", "GET", "/v1/schedule?room=r1&region=east&device_id=d1", 400, `unknown region "east": known regions are north, south, west`, ""},
		{"unknown param", "GET", "/v1/schedule?room=r1&region=north&device_id=d1&rooom=x", 400, `unknown parameter "rooom"`, ""},
		{"repeated param", "GET", "/v1/schedule?room=r1&room=r2&region=north&device_id=d1", 400, `"room" given 2 times`, ""},
		{"room with underscore", "GET", "/v1/push?room=r1_720p", 400, "letters, digits and dashes", bearer},
		{"room with slash", "GET", "/v1/push?room=a%2Fb", 400, "letters, digits and dashes", bearer},
		{"push missing room", "GET", "/v1/push", 400, "room is required", bearer},
		{"bad query", "GET", "/v1/push?room=%zz", 400, "query string", bearer},
		{"post", "POST", "/v1/schedule?room=r1&region=north&device_id=d1", 405, "only GET", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.target, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("answer is not JSON: %v", err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tt.status, body)
			}
			if tt.errHas != "" {
				if msg, _ := body["error"].(string); !strings.Contains(msg, tt.errHas) {
					t.Errorf("error %q, want it to contain %q", msg, tt.errHas)
				}
			}
		})
	}
	// The 200 answer decodes into the documented shape.
	resp, err := http.Get(srv.URL + "/v1/schedule?room=r1&region=west&isp=isp-a&device_id=d1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sd StreamData
	if err := json.NewDecoder(resp.Body).Decode(&sd); err != nil {
		t.Fatal(err)
	}
	if sd.Room != "r1" || sd.ISP != "isp-a" || sd.Region != "west" || len(sd.Renditions) != 3 || sd.Renditions[0].Main.URLs["flv"] == "" {
		t.Errorf("decoded %+v", sd)
	}
}
