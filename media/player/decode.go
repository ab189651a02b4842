package player

import "time"

// The decode model: costs of the first decode and render, and the defects
// a scenario injects (see DecodeModel).

// jitter spreads d by ± the model's jitter fraction.
func (s *session) jitter(d time.Duration) time.Duration {
	j := s.cfg.Decode.Jitter
	if j == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + j*(2*s.rng.Float64()-1)))
}

// decodeCost models decoding the first keyframe: a fixed part plus a part
// proportional to the picture size.
func (s *session) decodeCost() time.Duration {
	w, h := s.width, s.height
	if w <= 0 || h <= 0 {
		w, h = 1280, 720
	}
	d := &s.cfg.Decode
	return s.jitter(d.DecodeBase + time.Duration(float64(d.DecodePerMegapixel)*float64(w*h)/1e6))
}

// fault asks the decode model's defects about a frame.
func (s *session) fault(fr Frame) Fault {
	d := &s.cfg.Decode
	var f Fault
	if fr.Index == 0 && d.FailFirstDecode {
		f.Fail = true
	}
	if fr.Index > 0 && d.RenderStallEvery > 0 && d.RenderStallFor > 0 && msOf(fr.Time)-s.lastRSMedia >= msOf(d.RenderStallEvery) {
		f.Stall = d.RenderStallFor
		s.lastRSMedia = msOf(fr.Time)
	}
	if d.Hook != nil {
		h := d.Hook(fr)
		f.Fail = f.Fail || h.Fail
		f.Stall = max(f.Stall, h.Stall)
	}
	return f
}
