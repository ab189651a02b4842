// Package scheduler is the stream scheduling service: it tells a publisher
// where to push and a viewer where to play, with signed URLs.
//
// GET /v1/schedule?room=R&device_id=D&region=X[&isp=Y&app_version=V] answers
// the stream_data of room R for that viewer: per rendition a main and a backup
// line on different CDNs. room, device_id and region are required; region must
// be one some edge serves. Unknown parameters are refused (400) so that a typo
// is not silently ignored.
//
// The main CDN is drawn by the configured weights from a hash of device_id,
// so one viewer always gets the same CDN (and edge) for a given config, and
// the share of viewers per CDN follows the weights. The backup CDN is drawn
// the same way among the other CDNs. Within a CDN the edge is one of the
// viewer's region; when the CDN has none there, any of its edges is used, the
// line says "region_fallback": true and notes explain it.
//
// Example answer (formats flv and hls, two renditions shown):
//
//	{
//	  "room": "r1",
//	  "stream_id": "live/r1",
//	  "device_id": "d42",
//	  "region": "south",
//	  "isp": "isp-a",
//	  "app_version": "1.2.0",
//	  "expires": 1767229200,
//	  "renditions": [
//	    {
//	      "name": "source", "bitrate_kbps": 4000, "width": 1920, "height": 1080,
//	      "main": {
//	        "cdn": "cdn-a", "node": "edge-a-south-1", "region": "south",
//	        "host": "edge-a-south-1.cdn-a.lastmile.test", "port": 8082,
//	        "urls": {
//	          "flv": "http://edge-a-south-1.cdn-a.lastmile.test:8082/live/r1.flv?expires=1767229200&sign=…",
//	          "hls": "http://edge-a-south-1.cdn-a.lastmile.test:8082/live/r1/index.m3u8?expires=1767229200&sign=…"
//	        }
//	      },
//	      "backup": {
//	        "cdn": "cdn-b", "node": "edge-b-north-1", "region": "north", "region_fallback": true,
//	        "host": "edge-b-north-1.cdn-b.lastmile.test", "port": 8091,
//	        "urls": {"flv": "http://…:8091/live/r1.flv?…", "hls": "http://…:8091/live/r1/index.m3u8?…"}
//	      }
//	    },
//	    {
//	      "name": "720p", "bitrate_kbps": 2500, "width": 1280, "height": 720,
//	      "main": {… "urls": {"flv": "http://…:8082/live/r1_720p.flv?…", "hls": "http://…:8082/live/r1_720p/index.m3u8?…"}},
//	      "backup": {…}
//	    }
//	  ],
//	  "notes": ["cdn-b has no edge in region \"south\"; its line uses edge-b-north-1 in \"north\""]
//	}
//
// Every URL is signed with media/sign over its path (/live/r1_720p.flv,
// /live/r1_720p/index.m3u8) and expires at "expires" (Unix seconds).
//
// GET /v1/push?room=R with "Authorization: Bearer <push_token>" answers
// where to publish:
//
//	{"room": "r1", "stream_id": "live/r1", "url": "rtmp://127.0.0.1:1935/live/r1?expires=…&sign=…", "expires": 1767229200}
//
// signed over "/live/r1". A publish URL takes over a room, so it goes to the
// operator's broadcasters only: without the token /v1/push answers 401.
// /v1/schedule stays open: it is how viewers get their play URLs, which only
// play. Errors answer {"error": "..."} with 400 (bad or missing parameters),
// 401 (push without the token) or 405 (method other than GET).
package scheduler

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/internal/cors"
	"github.com/lastmile-qoe/lastmile/media/sign"
)

// ErrBadRequest is wrapped by the errors of Schedule and Push caused by the
// request (missing or unknown parameters); the handler answers them 400.
var ErrBadRequest = errors.New("bad request")

// Request is what a viewer sends to /v1/schedule.
type Request struct {
	Room       string
	DeviceID   string
	Region     string
	ISP        string
	AppVersion string
}

// StreamData is the answer of /v1/schedule (see the package doc).
type StreamData struct {
	Room       string           `json:"room"`
	StreamID   string           `json:"stream_id"`
	DeviceID   string           `json:"device_id"`
	Region     string           `json:"region"`
	ISP        string           `json:"isp,omitempty"`
	AppVersion string           `json:"app_version,omitempty"`
	Expires    int64            `json:"expires"` // Unix seconds; every URL is valid until then
	Renditions []RenditionLines `json:"renditions"`
	Notes      []string         `json:"notes,omitempty"`
}

// RenditionLines is one rendition with its two lines.
type RenditionLines struct {
	Name        string `json:"name"`
	BitrateKbps int    `json:"bitrate_kbps"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
	AudioOnly   bool   `json:"audio_only,omitempty"`
	Main        Line   `json:"main"`
	Backup      Line   `json:"backup"`
}

// Line is where to play a rendition from: one edge of one CDN.
type Line struct {
	CDN    string `json:"cdn"`
	Node   string `json:"node"`
	Region string `json:"region"` // the edge's region
	// RegionFallback is set when the CDN has no edge in the viewer's region.
	RegionFallback bool              `json:"region_fallback,omitempty"`
	Host           string            `json:"host"`
	Port           int               `json:"port"`
	URLs           map[string]string `json:"urls"` // format (flv, hls) → signed URL
}

// PushData is the answer of /v1/push.
type PushData struct {
	Room     string `json:"room"`
	StreamID string `json:"stream_id"`
	URL      string `json:"url"`
	Expires  int64  `json:"expires"`
}

// Service schedules streams. It is safe for concurrent use.
type Service struct {
	cfg     Config
	ingest  *url.URL
	app     string
	regions []string // sorted, every region some edge serves
	logger  log.Logger

	requests  *prometheus.CounterVec
	mains     *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
}

// New validates cfg (filling defaults) and returns the Service.
func New(cfg Config, logger log.Logger) (*Service, error) {
	if err := cfg.validate(true); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	ing, _ := url.Parse(cfg.IngestURL) // validated
	s := &Service{
		cfg:    cfg,
		ingest: ing,
		app:    strings.Trim(ing.Path, "/"),
		logger: log.With(logger, "component", "scheduler"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_scheduler_requests_total", Help: "Scheduler HTTP requests, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		mains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_scheduler_schedules_total", Help: "Schedules answered, by main CDN.",
		}, []string{"cdn"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastmile_scheduler_region_fallbacks_total", Help: "Lines given an edge outside the viewer's region because the CDN has none there, by CDN.",
		}, []string{"cdn"}),
	}
	for _, c := range cfg.CDNs {
		for _, e := range c.Edges {
			if !slices.Contains(s.regions, e.Region) {
				s.regions = append(s.regions, e.Region)
			}
		}
	}
	slices.Sort(s.regions)
	return s, nil
}

// Collectors returns the service's Prometheus metrics.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.requests, s.mains, s.fallbacks}
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

func checkRoom(room string) error {
	if room == "" {
		return badRequest("room is required")
	}
	if !pathSafe(room, 64) {
		return badRequest("room %q: want 1-64 letters, digits and dashes ('_' separates room and rendition in stream names)", room)
	}
	return nil
}

// Schedule answers req at time now (URLs expire at now + SignTTL). The lines
// depend only on the config and req, never on now.
func (s *Service) Schedule(req Request, now time.Time) (*StreamData, error) {
	if err := checkRoom(req.Room); err != nil {
		return nil, err
	}
	switch {
	case req.DeviceID == "":
		return nil, badRequest("device_id is required: it keeps a viewer on the same CDN")
	case len(req.DeviceID) > 128:
		return nil, badRequest("device_id is longer than 128 bytes")
	case req.Region == "":
		return nil, badRequest("region is required (one of %s)", strings.Join(s.regions, ", "))
	case !slices.Contains(s.regions, req.Region):
		return nil, badRequest("unknown region %q: known regions are %s", req.Region, strings.Join(s.regions, ", "))
	case len(req.ISP) > 64 || len(req.AppVersion) > 64:
		return nil, badRequest("isp and app_version must be at most 64 bytes")
	}

	mainIdx := s.pickMain(req.DeviceID)
	backupIdx := s.pickBackup(req.DeviceID, mainIdx)
	var notes []string
	line := func(ci int) Line {
		cdn := &s.cfg.CDNs[ci]
		e, fallback := pickEdge(cdn, req.Region, req.DeviceID)
		if fallback {
			s.fallbacks.WithLabelValues(cdn.Name).Inc()
			notes = append(notes, fmt.Sprintf("%s has no edge in region %q; its line uses %s in %q", cdn.Name, req.Region, e.Node, e.Region))
		}
		return Line{CDN: cdn.Name, Node: e.Node, Region: e.Region, RegionFallback: fallback, Host: e.Host, Port: e.Port}
	}
	main, backup := line(mainIdx), line(backupIdx)
	s.mains.WithLabelValues(main.CDN).Inc()

	expires := now.Add(s.cfg.SignTTL)
	sd := &StreamData{
		Room: req.Room, StreamID: s.app + "/" + req.Room, DeviceID: req.DeviceID,
		Region: req.Region, ISP: req.ISP, AppVersion: req.AppVersion,
		Expires: expires.Unix(), Notes: notes,
	}
	for _, r := range s.cfg.Renditions {
		rl := RenditionLines{Name: r.Name, BitrateKbps: r.BitrateKbps, Width: r.Width, Height: r.Height, AudioOnly: r.AudioOnly,
			Main: main, Backup: backup}
		rl.Main.URLs = s.urls(main, req.Room, r.Name, now)
		rl.Backup.URLs = s.urls(backup, req.Room, r.Name, now)
		sd.Renditions = append(sd.Renditions, rl)
	}
	return sd, nil
}

// StreamName is the stream name of a room's rendition: the room itself for
// the source, room_rendition otherwise. Edges and the transcoder use the same
// names.
func StreamName(room, rendition string) string {
	if rendition == SourceRendition {
		return room
	}
	return room + "_" + rendition
}

func (s *Service) urls(l Line, room, rendition string, now time.Time) map[string]string {
	name := StreamName(room, rendition)
	out := make(map[string]string, len(s.cfg.Formats))
	for _, f := range s.cfg.Formats {
		p := "/" + s.app + "/" + name + ".flv"
		if f == FormatHLS {
			p = "/" + s.app + "/" + name + "/index.m3u8"
		}
		u := &url.URL{Scheme: "http", Host: net.JoinHostPort(l.Host, strconv.Itoa(l.Port)), Path: p}
		sign.SignURL(s.cfg.Secret, u, s.cfg.SignTTL, now)
		out[f] = u.String()
	}
	return out
}

// Push returns the signed RTMP URL to publish room at, valid from now for
// SignTTL.
func (s *Service) Push(room string, now time.Time) (*PushData, error) {
	if err := checkRoom(room); err != nil {
		return nil, err
	}
	u := *s.ingest
	u.Path = "/" + s.app + "/" + room
	u.RawPath = ""
	u.RawQuery = ""
	sign.SignURL(s.cfg.Secret, &u, s.cfg.SignTTL, now)
	return &PushData{Room: room, StreamID: s.app + "/" + room, URL: u.String(), Expires: now.Add(s.cfg.SignTTL).Unix()}, nil
}

// hashUnit maps (salt, parts) to [0, 1). The salt keeps the draws for main
// CDN, backup CDN and edge independent of each other and of the collector's
// sampling hash (xxhash of device_id): were they correlated, the devices kept
// by sampling would cluster on some CDNs and bias per-CDN metrics.
func hashUnit(salt string, parts ...string) float64 {
	h := fnv.New64a()
	h.Write([]byte(salt))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	// splitmix64 finalizer: FNV alone is poorly mixed in its high bits for
	// short, similar ids like "dev-1", "dev-2".
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// pickWeighted returns the index i of weights chosen with probability
// weights[i]/sum for u uniform in [0, 1), or -1 when the sum is 0.
func pickWeighted(weights []int, u float64) int {
	total := 0
	for _, w := range weights {
		total += max(w, 0)
	}
	if total == 0 {
		return -1
	}
	target := int(u * float64(total))
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		if target < w {
			return i
		}
		target -= w
	}
	// u*total rounds to total only for u within 2^-53 of 1: the last
	// positive weight.
	for i := len(weights) - 1; i >= 0; i-- {
		if weights[i] > 0 {
			return i
		}
	}
	return -1
}

func (s *Service) pickMain(device string) int {
	w := make([]int, len(s.cfg.CDNs))
	for i, c := range s.cfg.CDNs {
		w[i] = c.Weight
	}
	return pickWeighted(w, hashUnit("main-cdn", device)) // ≥ 0: validate requires a positive weight
}

// pickBackup draws among the CDNs other than main by weight, or uniformly
// when they all have weight 0 (backup-only CDNs).
func (s *Service) pickBackup(device string, main int) int {
	w := make([]int, len(s.cfg.CDNs))
	for i, c := range s.cfg.CDNs {
		if i != main {
			w[i] = c.Weight
		}
	}
	u := hashUnit("backup-cdn", device)
	if i := pickWeighted(w, u); i >= 0 {
		return i
	}
	for i := range w {
		if i != main {
			w[i] = 1
		}
	}
	return pickWeighted(w, u)
}

// pickEdge chooses the device's edge of cdn in region, or among all its edges
// when it has none there (fallback).
func pickEdge(cdn *CDN, region, device string) (e Edge, fallback bool) {
	var in []int
	for i, e := range cdn.Edges {
		if e.Region == region {
			in = append(in, i)
		}
	}
	u := hashUnit("edge", cdn.Name, device)
	if len(in) == 0 {
		return cdn.Edges[int(u*float64(len(cdn.Edges)))%len(cdn.Edges)], true
	}
	return cdn.Edges[in[int(u*float64(len(in)))%len(in)]], false
}

// Handler serves GET /v1/schedule and GET /v1/push.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/schedule", s.serveSchedule)
	mux.HandleFunc("/v1/push", s.servePush)
	p := APICORS
	p.Origins = s.cfg.CORSOrigins
	return p.Wrap(mux)
}

// APICORS lets pages read schedules: GET and HEAD, which need no request
// header of their own, so /v1/push's Authorization is refused in a
// preflight (broadcasters are not web pages). Origins come from
// Config.CORSOrigins.
var APICORS = cors.Policy{
	Methods: []string{http.MethodGet, http.MethodHead},
	MaxAge:  10 * time.Minute,
}

// params reads the query, refusing unknown and repeated parameters.
func params(r *http.Request, known ...string) (map[string]string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query string: %v", err)
	}
	out := make(map[string]string, len(q))
	for k, v := range q {
		if !slices.Contains(known, k) {
			return nil, badRequest("unknown parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
		if len(v) > 1 {
			return nil, badRequest("parameter %q given %d times", k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

func (s *Service) serveSchedule(w http.ResponseWriter, r *http.Request) {
	if !s.allowGet(w, r, "schedule") {
		return
	}
	p, err := params(r, "room", "device_id", "region", "isp", "app_version")
	var sd *StreamData
	if err == nil {
		sd, err = s.Schedule(Request{Room: p["room"], DeviceID: p["device_id"], Region: p["region"], ISP: p["isp"], AppVersion: p["app_version"]}, time.Now())
	}
	if err != nil {
		s.fail(w, r, "schedule", err)
		return
	}
	level.Debug(s.logger).Log("msg", "scheduled", "room", sd.Room, "device_id", sd.DeviceID, "region", sd.Region,
		"main", sd.Renditions[0].Main.Node, "backup", sd.Renditions[0].Backup.Node)
	s.reply(w, "schedule", http.StatusOK, sd)
}

func (s *Service) servePush(w http.ResponseWriter, r *http.Request) {
	if !s.allowGet(w, r, "push") {
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.PushToken)) != 1 {
		level.Info(s.logger).Log("msg", "push url refused: missing or wrong token", "remote", r.RemoteAddr, "query", r.URL.RawQuery)
		w.Header().Set("WWW-Authenticate", `Bearer realm="lastmile scheduler"`)
		s.reply(w, "push", http.StatusUnauthorized, errorBody{Error: "missing or wrong bearer token: /v1/push needs Authorization: Bearer <scheduler.push_token>"})
		return
	}
	p, err := params(r, "room")
	var pd *PushData
	if err == nil {
		pd, err = s.Push(p["room"], time.Now())
	}
	if err != nil {
		s.fail(w, r, "push", err)
		return
	}
	level.Debug(s.logger).Log("msg", "push url issued", "room", pd.Room)
	s.reply(w, "push", http.StatusOK, pd)
}

func (s *Service) allowGet(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET")
	s.reply(w, endpoint, http.StatusMethodNotAllowed, errorBody{Error: r.Method + " " + r.URL.Path + ": only GET is allowed"})
	return false
}

type errorBody struct {
	Error string `json:"error"`
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, ErrBadRequest) {
		status = http.StatusBadRequest
	}
	level.Info(s.logger).Log("msg", "request refused", "path", r.URL.Path, "query", r.URL.RawQuery, "status", status, "err", err)
	s.reply(w, endpoint, status, errorBody{Error: err.Error()})
}

func (s *Service) reply(w http.ResponseWriter, endpoint string, status int, v any) {
	s.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // signed, per-viewer answers
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
