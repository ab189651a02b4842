package player

import "time"

// playback is the buffer model: media time downloaded versus media time
// played. Playback runs at real-time speed from posAt; when it reaches the
// end of what was downloaded, it stalls. It only does arithmetic: the
// session decides when to start, stall and resume.
type playback struct {
	started bool // the playback clock has run (after the first frame and the start threshold)
	stalled bool
	pos     int64     // media ms played at posAt
	posAt   time.Time // wall time of pos
	end     int64     // media ms of the newest frame downloaded
	has     bool      // end is set
}

func msOf(d time.Duration) int64 { return int64(d / time.Millisecond) }

func durMs(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// running reports whether the playback clock advances.
func (p *playback) running() bool { return p.started && !p.stalled }

// position is the media time shown at now, never past what was downloaded.
func (p *playback) position(now time.Time) int64 {
	if !p.running() {
		return p.pos
	}
	return min(p.pos+msOf(now.Sub(p.posAt)), max(p.end, p.pos))
}

// buffer is the media downloaded but not yet played, in ms.
func (p *playback) buffer(now time.Time) int64 {
	if !p.has {
		return 0
	}
	return max(0, p.end-p.position(now))
}

// dryAt is when a running playback runs out of media.
func (p *playback) dryAt() time.Time {
	return p.posAt.Add(durMs(max(0, p.end-p.pos)))
}

// displayAt is the wall time media time ts is (or was) shown at, for a
// running playback.
func (p *playback) displayAt(ts int64) time.Time {
	return p.posAt.Add(durMs(max(0, ts-p.pos)))
}

// run starts (or resumes) the playback clock at now from the current
// position.
func (p *playback) run(now time.Time) {
	p.started, p.stalled, p.posAt = true, false, now
}

// stall stops the clock at the end of the downloaded media, at time at.
func (p *playback) stall(at time.Time) {
	p.pos, p.posAt, p.stalled = max(p.end, p.pos), at, true
}
