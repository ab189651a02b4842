package stack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/media/dns"
	"github.com/lastmile-qoe/lastmile/media/player"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
)

// Viewer is one planned player of the audience.
type Viewer struct {
	At     time.Duration // arrival after the audience starts
	Config player.Config
}

// Audience plans the topology's players: arrivals spread evenly over Ramp,
// dimensions drawn with the topology's seed, so a run is reproducible.
func (s *Stack) Audience() []Viewer {
	p := s.Top.Players
	rng := rand.New(rand.NewPCG(p.Seed, 0x6c6d))
	pick := func(xs []string, def string) string {
		if len(xs) == 0 {
			return def
		}
		return xs[rng.IntN(len(xs))]
	}
	var out []Viewer
	for i := 0; i < p.Count; i++ {
		id := fmt.Sprintf("viewer-%04d", i)
		if p.RunID != "" {
			id = p.RunID + "-" + id
		}
		room := s.Top.Rooms[i%len(s.Top.Rooms)].Name
		cfg := player.Config{
			SchedulerURL: s.SchedURL, Room: room, DeviceID: "dev-" + id, UserID: "user-" + id,
			Region: pick(p.Regions, "north"), ISP: pick(p.ISPs, "isp-a"), AppVersion: pick(p.AppVersions, "5.2.0"),
			OS: pick(p.OSes, "android"), Network: pick(p.Networks, "wifi"), Format: p.Format,
			Rendition: s.pickRendition(rng), Reporter: s.Rep,
			Duration: p.Watch, HeartbeatEvery: 10 * time.Second,
		}
		cfg.Resolver = dns.Resolver(s.ResolverAddr(cfg.ISP))
		if cfg.Format == "" {
			cfg.Format = player.FormatFLV
			if rng.Float64() < 0.3 {
				cfg.Format = player.FormatHLS
			}
		}
		if rng.Float64() < p.WeakShare {
			cfg.Network, cfg.MaxKbps = "weak", p.WeakKbps
		}
		if d := p.DecoderDefect; d.AppVersion != "" && d.AppVersion == cfg.AppVersion {
			cfg.Decode.RenderStallEvery, cfg.Decode.RenderStallFor = d.RenderStallEvery, d.RenderStallFor
		}
		at := time.Duration(0)
		if p.Count > 1 {
			at = p.Ramp * time.Duration(i) / time.Duration(p.Count-1)
		}
		out = append(out, Viewer{At: at, Config: cfg})
	}
	return out
}

// pickRendition: most viewers watch the source, the rest a lower rung.
func (s *Stack) pickRendition(rng *rand.Rand) string {
	var lower []string
	for _, r := range s.Top.Scheduler.Renditions {
		if r.Name != scheduler.SourceRendition && !r.AudioOnly {
			lower = append(lower, r.Name)
		}
	}
	if len(lower) == 0 || rng.Float64() < 0.6 {
		return scheduler.SourceRendition
	}
	return lower[rng.IntN(len(lower))]
}

// RunAudience plays the audience and returns when every player stopped
// (or ctx ended and they stopped early). progress, when not nil, is called
// after each play with the result.
func (s *Stack) RunAudience(ctx context.Context, progress func(Viewer, player.Result)) {
	s.RunViewers(ctx, s.Audience(), progress)
}

// RunViewers plays viewers, each at its arrival time, and returns when all
// stopped. Scenarios plan the audience with Audience, change some viewers'
// configs (a fault's cohort), then run them here.
func (s *Stack) RunViewers(ctx context.Context, viewers []Viewer, progress func(Viewer, player.Result)) {
	start := time.Now()
	var wg sync.WaitGroup
	for _, v := range viewers {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(v.At))):
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			res := player.Play(ctx, v.Config)
			level.Debug(s.logger).Log("msg", "play ended", "device", v.Config.DeviceID, "code", res.Code, "first_frame", res.FirstFrame)
			if progress != nil {
				progress(v, res)
			}
		})
	}
	wg.Wait()
}
