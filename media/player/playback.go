package player

import "time"

// playback is the buffer model: media time downloaded versus media time
// played. A frame at media time ts is shown from ts until the next frame,
// so the downloaded media ends at the newest frame's ts plus its duration,
// and the buffer is the media from the playhead to that end. Playback runs
// at real-time speed from posAt; when the playhead reaches the end of the
// buffer, it stalls. It only does arithmetic: the session decides when to
// start, stall and resume.
type playback struct {
	started bool // the playback clock has run (after the first frame and the start threshold)
	stalled bool
	pos     int64     // media ms played at posAt
	posAt   time.Time // wall time of pos
	newest  int64     // media ms of the newest frame downloaded
	end     int64     // media ms where the downloaded media ends: newest plus its duration
	has     bool      // newest and end are set
}

func msOf(d time.Duration) int64 { return int64(d / time.Millisecond) }

func durMs(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// running reports whether the playback clock advances.
func (p *playback) running() bool { return p.started && !p.stalled }

// add appends a frame at media time ts lasting durMs (the frame interval:
// a frame is shown until the next one is due).
func (p *playback) add(ts, dur int64) {
	p.newest, p.end, p.has = ts, ts+dur, true
}

// drop empties the buffer at media time at, as a player reopening the
// stream does: the next frame is expected at at, one frame after the
// newest (so a frame interval measured across the drop is dur).
func (p *playback) drop(at, dur int64) {
	p.pos, p.end, p.newest = at, at, at-dur
}

// position is the media time shown at now, never past the end of the
// buffer.
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

// dryAt is when a running playback reaches the end of the buffer.
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

// stall stops the clock at the end of the buffer, at time at.
func (p *playback) stall(at time.Time) {
	p.pos, p.posAt, p.stalled = max(p.end, p.pos), at, true
}
