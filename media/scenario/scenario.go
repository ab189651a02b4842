// Package scenario runs a media topology through a realistic audience and a
// timeline of real faults injected into the running components, and writes
// the ground truth: a labels file saying, for each fault, its scope, the
// dimension values it affects and when it started and ended. Scenario files
// live in media/scenarios/ (see docs/scenarios.md).
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"gopkg.in/yaml.v3"

	"github.com/lastmile-qoe/lastmile/media/dns"
	"github.com/lastmile-qoe/lastmile/media/edge"
	"github.com/lastmile-qoe/lastmile/media/origin"
	"github.com/lastmile-qoe/lastmile/media/player"
	"github.com/lastmile-qoe/lastmile/media/publisher"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
	"github.com/lastmile-qoe/lastmile/media/stack"
	"github.com/lastmile-qoe/lastmile/media/topology"
)

// Scenario is a topology, its audience and a fault timeline.
type Scenario struct {
	Name        string        `yaml:"name"`
	Description string        `yaml:"description"`
	Duration    time.Duration `yaml:"duration"`
	// Topology is read over topology.Default(); its players section is the
	// audience (arrivals spread over players.ramp, each watching
	// players.watch; seeded by players.seed).
	Topology topology.Topology `yaml:"topology"`
	Faults   []Fault           `yaml:"faults"`
	// DryFaults labels the faults but injects none: a run whose ground
	// truth is false on purpose, to check that a detector (or a test)
	// notices the fault's absence.
	DryFaults bool `yaml:"-"`
}

// Scopes of faults, as fault localization names them.
const (
	ScopePush      = "push"
	ScopeSource    = "source"
	ScopeTranscode = "transcode"
	ScopeEdge      = "edge"
	ScopeClient    = "client"
	ScopeRollout   = "rollout"
)

// Fault is one entry of the timeline: Kind at a scope, from At for For.
//
//	push:      throttle (room, kbps), disconnect (room)
//	source:    lose_stream (room), unreachable (rooms)
//	transcode: fail (room, rendition), lag (room, rendition, delay per frame)
//	edge:      refuse (node), slow_first_byte (node, delay), stall (node, after, delay),
//	           degrade (cdn, region: every node of that CDN in that region answers slowly and stalls)
//	client:    decoder_render_stall (app_version), decoder_first_frame_fail (app_version),
//	           dns_fail (isp), dns_slow (isp, delay), weak_network (share, kbps)
//	rollout:   ramp (app_version, share: 0 → share over the window, with defect:
//	           render_stall or first_frame_fail)
type Fault struct {
	Name       string        `yaml:"name"`
	Scope      string        `yaml:"scope"`
	Kind       string        `yaml:"kind"`
	At         time.Duration `yaml:"at"`
	For        time.Duration `yaml:"for"`
	Room       string        `yaml:"room"`
	Rooms      []string      `yaml:"rooms"`
	Rendition  string        `yaml:"rendition"`
	Node       string        `yaml:"node"`
	CDN        string        `yaml:"cdn"`
	Region     string        `yaml:"region"`
	ISP        string        `yaml:"isp"`
	AppVersion string        `yaml:"app_version"`
	Kbps       int           `yaml:"kbps"`
	Delay      time.Duration `yaml:"delay"`
	After      time.Duration `yaml:"after"`
	Share      float64       `yaml:"share"`
	Defect     string        `yaml:"defect"`
}

// What a fault does when its file leaves a parameter out, and the fixed
// parameters of the kinds that take none.
const (
	DefaultLagDelay          = 60 * time.Millisecond // per video frame
	DefaultDNSDelay          = 3 * time.Second
	DefaultFirstByteDelay    = 2 * time.Second
	DefaultStallAfter        = 5 * time.Second
	DefaultStallFor          = 4 * time.Second
	DefaultDegradeFirstByte  = 1500 * time.Millisecond
	DefaultDegradeStallAfter = 5 * time.Second
	DegradeStallFor          = 3 * time.Second
	RenderStallEvery         = 3 * time.Second
	RenderStallFor           = 500 * time.Millisecond
)

// withDefaults is f with every parameter its kind uses set: what is
// injected and what the label states.
func (f Fault) withDefaults() Fault {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	switch f.Scope + "/" + f.Kind {
	case "transcode/lag":
		def(&f.Delay, DefaultLagDelay)
	case "client/dns_slow":
		def(&f.Delay, DefaultDNSDelay)
	case "edge/slow_first_byte":
		def(&f.Delay, DefaultFirstByteDelay)
	case "edge/stall":
		def(&f.After, DefaultStallAfter)
		def(&f.Delay, DefaultStallFor)
	case "edge/degrade":
		def(&f.Delay, DefaultDegradeFirstByte)
		def(&f.After, DefaultDegradeStallAfter)
	}
	return f
}

// params are the injected strengths, as the label states them.
func (f Fault) params() map[string]string {
	f = f.withDefaults()
	ms := func(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }
	p := map[string]string{}
	switch f.Scope + "/" + f.Kind {
	case "push/throttle":
		p["kbps"] = fmt.Sprint(f.Kbps)
	case "transcode/lag":
		p["frame_delay_ms"] = ms(f.Delay)
	case "client/dns_slow":
		p["dns_delay_ms"] = ms(f.Delay)
	case "edge/slow_first_byte":
		p["first_byte_delay_ms"] = ms(f.Delay)
	case "edge/stall":
		p["stall_after_ms"], p["stall_ms"] = ms(f.After), ms(f.Delay)
	case "edge/degrade":
		p["first_byte_delay_ms"], p["stall_after_ms"], p["stall_ms"] = ms(f.Delay), ms(f.After), ms(DegradeStallFor)
	case "client/weak_network":
		p["share"], p["kbps"] = fmt.Sprint(f.Share), fmt.Sprint(f.Kbps)
	case "client/decoder_render_stall":
		p["render_stall_every_ms"], p["render_stall_ms"] = ms(RenderStallEvery), ms(RenderStallFor)
	case "rollout/ramp":
		p["share"], p["defect"] = fmt.Sprint(f.Share), f.Defect
		if f.Defect == "render_stall" {
			p["render_stall_every_ms"], p["render_stall_ms"] = ms(RenderStallEvery), ms(RenderStallFor)
		}
	}
	return p
}

// Label is the ground truth of one fault in a run.
type Label struct {
	Name  string            `json:"name"`
	Scope string            `json:"scope"`
	Kind  string            `json:"kind"`
	Dims  map[string]string `json:"dims"`
	Start time.Time         `json:"start"`
	End   time.Time         `json:"end"`
}

// Labels is the labels file of a run.
type Labels struct {
	Scenario string    `json:"scenario"`
	Seed     uint64    `json:"seed"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Faults   []Label   `json:"faults"`
}

// Load reads a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	sc, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return sc, nil
}

// Parse reads a scenario from YAML; unknown keys are errors.
func Parse(b []byte) (*Scenario, error) {
	sc := &Scenario{Topology: topology.Default()}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(sc); err != nil {
		return nil, err
	}
	return sc, sc.Validate()
}

// Validate checks the timeline against the topology, reporting every
// problem at once.
func (sc *Scenario) Validate() error {
	var errs []error
	if sc.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if sc.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if err := sc.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	rooms, nodes, cdnRegion, rends := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range sc.Topology.Rooms {
		rooms[r.Name] = true
	}
	for _, e := range sc.Topology.Edges() {
		nodes[e.Node] = true
		cdnRegion[e.CDN+"/"+e.Region] = true
	}
	for _, r := range sc.Topology.Scheduler.Renditions {
		rends[r.Name] = true
	}
	for i, f := range sc.Faults {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("faults[%d] (%s %s): %s", i, f.Scope, f.Kind, fmt.Sprintf(format, args...)))
		}
		if f.At < 0 || f.For <= 0 || f.At+f.For > sc.Duration {
			bad("at %s for %s must lie within the duration %s", f.At, f.For, sc.Duration)
		}
		needRoom := func() {
			if !rooms[f.Room] {
				bad("room %q is not a room of the topology", f.Room)
			}
		}
		switch f.Scope + "/" + f.Kind {
		case "push/throttle":
			needRoom()
			if f.Kbps <= 0 {
				bad("kbps must be positive")
			}
		case "push/disconnect", "source/lose_stream":
			needRoom()
		case "source/unreachable":
			for _, r := range f.Rooms {
				if !rooms[r] {
					bad("room %q is not a room of the topology", r)
				}
			}
			if len(f.Rooms) == 0 {
				bad("rooms is empty")
			}
		case "transcode/fail", "transcode/lag":
			needRoom()
			if !rends[f.Rendition] || f.Rendition == "source" {
				bad("rendition %q is not a transcoded rendition of the ladder", f.Rendition)
			}
		case "edge/refuse", "edge/slow_first_byte", "edge/stall":
			if !nodes[f.Node] {
				bad("node %q is not an edge of the topology", f.Node)
			}
		case "edge/degrade":
			if !cdnRegion[f.CDN+"/"+f.Region] {
				bad("no edge of %s in region %q", f.CDN, f.Region)
			}
		case "client/decoder_render_stall", "client/decoder_first_frame_fail":
			if !slices.Contains(sc.Topology.Players.AppVersions, f.AppVersion) {
				bad("app_version %q is not in players.app_versions", f.AppVersion)
			}
		case "client/dns_fail", "client/dns_slow":
			if !slices.Contains(sc.Topology.Players.ISPs, f.ISP) {
				bad("isp %q is not in players.isps", f.ISP)
			}
		case "client/weak_network":
			if f.Share <= 0 || f.Share > 1 || f.Kbps <= 0 {
				bad("share must be in (0, 1] and kbps positive")
			}
		case "rollout/ramp":
			if f.AppVersion == "" || f.Share <= 0 || f.Share > 1 {
				bad("app_version and a share in (0, 1] are required")
			}
			if f.Defect != "render_stall" && f.Defect != "first_frame_fail" {
				bad("defect %q: want render_stall or first_frame_fail", f.Defect)
			}
		default:
			bad("unknown fault (see the kinds in docs/scenarios.md)")
		}
	}
	return errors.Join(errs...)
}

// Dims are the dimension values a fault affects, as the labels file and
// fault localization name them, and its strength (params: kbps, delays in
// ms, share, defect) as injected.
func (f *Fault) Dims(top *topology.Topology) map[string]string {
	d := f.params()
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	switch f.Scope {
	case ScopePush, ScopeSource, ScopeTranscode:
		if f.Room != "" {
			set("room_id", f.Room)
			set("stream_id", "live/"+f.Room)
		}
		if len(f.Rooms) > 0 {
			var ss []string
			for _, r := range f.Rooms {
				ss = append(ss, "live/"+r)
			}
			sort.Strings(ss)
			set("stream_id", joinComma(ss))
		}
		set("rendition", f.Rendition)
	case ScopeEdge:
		set("node_id", f.Node)
		set("cdn", f.CDN)
		set("region", f.Region)
		if f.Node != "" {
			for _, e := range top.Edges() {
				if e.Node == f.Node {
					set("cdn", e.CDN)
					set("region", e.Region)
				}
			}
		}
	case ScopeClient, ScopeRollout:
		set("app_version", f.AppVersion)
		set("isp", f.ISP)
		if f.Kind == "weak_network" {
			set("network", "weak")
		}
	}
	return d
}

func joinComma(ss []string) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	return b.String()
}

// Plan returns the labels of a run starting at start: the configured
// timeline in absolute time.
func (sc *Scenario) Plan(start time.Time) Labels {
	l := Labels{Scenario: sc.Name, Seed: sc.Topology.Players.Seed, Start: start.UTC(), End: start.Add(sc.Duration).UTC(), Faults: []Label{}}
	for i := range sc.Faults {
		f := &sc.Faults[i]
		name := f.Name
		if name == "" {
			name = f.Scope + "-" + f.Kind
		}
		l.Faults = append(l.Faults, Label{Name: name, Scope: f.Scope, Kind: f.Kind, Dims: f.Dims(&sc.Topology),
			Start: start.Add(f.At).UTC(), End: start.Add(f.At + f.For).UTC()})
	}
	return l
}

// WriteLabels writes the labels file (JSON).
func WriteLabels(path string, l Labels) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Progress is what a running scenario reports.
type Progress struct {
	Elapsed   time.Duration
	Started   int // players started
	Playing   int // players playing now
	NextFault string
	NextAt    time.Duration
}

// Run plays the scenario on a started stack: it plans the audience
// (changing the cohorts client-side faults affect), applies and clears
// server-side faults on time, writes the labels file at labelsPath, and
// returns when the duration is over or ctx ends. progress, when not nil,
// is called every second.
func Run(ctx context.Context, sc *Scenario, st *stack.Stack, labelsPath string, progress func(Progress), logger log.Logger) (Labels, error) {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	start := time.Now()
	labels := sc.Plan(start)
	if labelsPath != "" {
		if err := WriteLabels(labelsPath, labels); err != nil {
			return labels, fmt.Errorf("scenario: labels: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, sc.Duration)
	defer cancel()

	viewers := st.Audience()
	if !sc.DryFaults {
		applyClientFaults(sc, viewers)
	}

	var started, playing int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		// playing = sessions started − sessions over: a session may log
		// several play_stops (one per failed attempt), so ends are counted
		// when the player returns.
		st.RunViewers(ctx, wrapCount(viewers, &mu, &started, &playing), func(stack.Viewer, player.Result) {
			mu.Lock()
			playing--
			mu.Unlock()
		})
	})
	for i := range sc.Faults {
		f := sc.Faults[i]
		if f.Scope == ScopeClient && f.Kind != "dns_fail" && f.Kind != "dns_slow" || f.Scope == ScopeRollout {
			continue // applied to the audience's configs
		}
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(f.At))):
			}
			level.Info(logger).Log("msg", "fault on", "scope", f.Scope, "kind", f.Kind, "for", f.For, "dry", sc.DryFaults)
			if sc.DryFaults {
				return
			}
			if err := apply(st, &f, true); err != nil {
				level.Error(logger).Log("msg", "fault failed", "scope", f.Scope, "kind", f.Kind, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(start.Add(f.At + f.For))):
			}
			level.Info(logger).Log("msg", "fault off", "scope", f.Scope, "kind", f.Kind)
			if err := apply(st, &f, false); err != nil {
				level.Error(logger).Log("msg", "fault clear failed", "scope", f.Scope, "kind", f.Kind, "err", err)
			}
		})
	}
	if progress != nil {
		wg.Go(func() {
			tk := time.NewTicker(time.Second)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
				el := time.Since(start)
				p := Progress{Elapsed: el}
				mu.Lock()
				p.Started, p.Playing = int(started), int(playing)
				mu.Unlock()
				for _, f := range sc.Faults {
					if f.At > el && (p.NextFault == "" || f.At < p.NextAt) {
						p.NextFault, p.NextAt = f.Scope+" "+f.Kind, f.At
					}
				}
				progress(p)
			}
		})
	}
	wg.Wait()
	return labels, nil
}

// wrapCount counts the sessions that started (their first play_start).
func wrapCount(vs []stack.Viewer, mu *sync.Mutex, started, playing *int64) []stack.Viewer {
	out := make([]stack.Viewer, len(vs))
	for i, v := range vs {
		rep := v.Config.Reporter
		v.Config.Reporter = counting{next: rep, mu: mu, started: started, playing: playing}
		out[i] = v
	}
	return out
}

type counting struct {
	next             player.Reporter
	mu               *sync.Mutex
	started, playing *int64
}

func (c counting) Log(ev report.Event) {
	switch ev["log_type"] {
	case "play_start":
		c.mu.Lock()
		if ev["attempt"] == 0 || ev["attempt"] == nil {
			*c.started++
			*c.playing++
		}
		c.mu.Unlock()
	}
	if c.next != nil {
		c.next.Log(ev)
	}
}

// applyClientFaults changes the configs of the viewers a client-side or
// rollout fault affects: those arriving in its window (and matching its
// cohort).
func applyClientFaults(sc *Scenario, vs []stack.Viewer) {
	rng := rand.New(rand.NewPCG(sc.Topology.Players.Seed, 0x5ce))
	for i := range vs {
		v := &vs[i]
		for _, f := range sc.Faults {
			if v.At < f.At || v.At >= f.At+f.For {
				continue
			}
			switch f.Scope + "/" + f.Kind {
			case "client/decoder_render_stall":
				if v.Config.AppVersion == f.AppVersion {
					v.Config.Decode.RenderStallEvery, v.Config.Decode.RenderStallFor = RenderStallEvery, RenderStallFor
				}
			case "client/decoder_first_frame_fail":
				if v.Config.AppVersion == f.AppVersion {
					v.Config.Decode.FailFirstDecode = true
				}
			case "client/weak_network":
				if rng.Float64() < f.Share {
					v.Config.Network, v.Config.MaxKbps = "weak", f.Kbps
				}
			case "rollout/ramp":
				share := f.Share * float64(v.At-f.At) / float64(f.For)
				if rng.Float64() < share {
					v.Config.AppVersion = f.AppVersion
					switch f.Defect {
					case "render_stall":
						v.Config.Decode.RenderStallEvery, v.Config.Decode.RenderStallFor = RenderStallEvery, RenderStallFor
					case "first_frame_fail":
						v.Config.Decode.FailFirstDecode = true
					}
				}
			}
		}
	}
}

// apply sets (on) or clears a server-side or DNS fault.
func apply(st *stack.Stack, f *Fault, on bool) error {
	d := f.withDefaults()
	f = &d
	switch f.Scope + "/" + f.Kind {
	case "push/throttle":
		d := publisher.Degrade{}
		if on {
			d.ThrottleKbps = f.Kbps
		}
		return withPublisher(st, f.Room, func(p *publisher.Publisher) { p.SetDegrade(d) })
	case "push/disconnect":
		return withPublisher(st, f.Room, func(p *publisher.Publisher) { p.SetDegrade(publisher.Degrade{Disconnect: on}) })
	case "source/lose_stream":
		st.Origin.SetLost(f.Room, on)
		return nil
	case "source/unreachable":
		if on {
			st.Origin.SetUnreachable(f.Rooms)
		} else {
			st.Origin.SetUnreachable(nil)
		}
		return nil
	case "transcode/fail", "transcode/lag":
		tf := origin.TranscodeFault{}
		if on && f.Kind == "fail" {
			tf.Fail = true
		}
		if on && f.Kind == "lag" {
			tf.Lag = f.Delay
		}
		st.Origin.SetTranscodeFault(f.Room, f.Rendition, tf)
		return nil
	case "edge/refuse", "edge/slow_first_byte", "edge/stall":
		e := st.Edges[f.Node]
		if e == nil {
			return fmt.Errorf("no edge %s", f.Node)
		}
		return e.SetFault(edgeFault(f, on))
	case "edge/degrade":
		var errs []error
		for _, n := range st.Top.Edges() {
			if n.CDN == f.CDN && n.Region == f.Region {
				errs = append(errs, st.Edges[n.Node].SetFault(edgeFault(f, on)))
			}
		}
		return errors.Join(errs...)
	case "client/dns_fail", "client/dns_slow":
		d := st.ISPDNS[f.ISP]
		if d == nil {
			return fmt.Errorf("no resolver for isp %s", f.ISP)
		}
		if !on {
			d.ClearFaults()
			return nil
		}
		if f.Kind == "dns_fail" {
			d.SetFault(dns.Fault{Fail: true})
		} else {
			d.SetFault(dns.Fault{Delay: f.Delay})
		}
		return nil
	}
	return fmt.Errorf("fault %s/%s cannot be applied to servers", f.Scope, f.Kind)
}

func edgeFault(f *Fault, on bool) edge.Fault {
	if !on {
		return edge.Fault{}
	}
	switch f.Kind {
	case "refuse":
		return edge.Fault{Refuse: true}
	case "slow_first_byte":
		return edge.Fault{FirstByteDelay: f.Delay}
	case "stall":
		return edge.Fault{StallAfter: f.After, StallFor: f.Delay}
	default: // degrade
		return edge.Fault{FirstByteDelay: f.Delay, StallAfter: f.After, StallFor: DegradeStallFor}
	}
}

func withPublisher(st *stack.Stack, room string, fn func(*publisher.Publisher)) error {
	p := st.Publishers[room]
	if p == nil {
		return fmt.Errorf("no publisher for room %s", room)
	}
	fn(p)
	return nil
}

// Examples picks viewers to look at: device ids of viewers the first fault
// affects (arriving in its window and in its cohort, as the scheduler
// routes them) and of viewers it does not. Both are empty when there is no
// fault.
func Examples(sc *Scenario, st *stack.Stack, viewers []stack.Viewer) (affected, unaffected []string) {
	if len(sc.Faults) == 0 {
		return nil, nil
	}
	f := sc.Faults[0]
	for _, v := range viewers {
		if v.At < f.At || v.At >= f.At+f.For {
			continue
		}
		hit := false
		c := v.Config
		switch f.Scope {
		case ScopePush, ScopeSource:
			hit = c.Room == f.Room || slices.Contains(f.Rooms, c.Room)
		case ScopeTranscode:
			hit = c.Room == f.Room && c.Rendition == f.Rendition
		case ScopeClient, ScopeRollout:
			hit = (f.AppVersion != "" && c.AppVersion == f.AppVersion) || (f.ISP != "" && c.ISP == f.ISP) || c.Network == "weak"
		case ScopeEdge:
			sd, err := st.Scheduler.Schedule(schedulerRequest(c), time.Now())
			if err == nil && len(sd.Renditions) > 0 {
				for _, r := range sd.Renditions {
					if r.Name == c.Rendition || (c.Rendition == "" && r.Name == "source") {
						m := r.Main
						hit = m.Node == f.Node || (f.CDN != "" && m.CDN == f.CDN && m.Region == f.Region)
					}
				}
			}
		}
		if hit && len(affected) < 3 {
			affected = append(affected, c.DeviceID)
		} else if !hit && len(unaffected) < 3 {
			unaffected = append(unaffected, c.DeviceID)
		}
	}
	return affected, unaffected
}

func schedulerRequest(c player.Config) scheduler.Request {
	return scheduler.Request{Room: c.Room, Region: c.Region, ISP: c.ISP, AppVersion: c.AppVersion, DeviceID: c.DeviceID}
}
