package hls

import (
	"net/http"
	"path"
	"strconv"
	"time"
)

// Content types from RFC 8216 section 4.
const (
	playlistType = "application/vnd.apple.mpegurl"
	segmentType  = "video/mp2t"
)

// Handler serves the stream: "index.m3u8" and "seg-<n>.ts". Only the last
// element of the request path is looked at, so it works mounted under any
// prefix (the edge mounts it at /live/<stream>/), with or without
// http.StripPrefix.
//
// A request for the segment being written waits up to the target duration
// for it instead of failing at once, so a player polling right at the live
// edge gets the segment as soon as it is cut. A request for the playlist
// before the first segment exists waits for that segment up to
// Options.FirstWait: a live stream's playlist is coming, and a 404 would
// tell the player the stream does not exist (RFC 8216 6.3.4 gives a client
// no reason to retry it), as an edge that has just started packaging a
// stream it pulls must not. Unknown and evicted segments are 404, and so is
// the playlist of a packager that got no segment within FirstWait.
func (p *Packager) Handler() http.Handler {
	return http.HandlerFunc(p.serveHTTP)
}

func (p *Packager) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := path.Base(r.URL.Path)
	if name == "index.m3u8" {
		p.servePlaylist(w, r)
		return
	}
	if n, ok := parseSegmentName(name); ok {
		p.serveSegment(w, r, n)
		return
	}
	http.NotFound(w, r)
}

func (p *Packager) servePlaylist(w http.ResponseWriter, r *http.Request) {
	body, ok := p.await(r, p.opt.FirstWait, func() ([]byte, bool, bool) {
		ready := len(p.segs) > 0 || p.closed
		return p.playlist, ready, !ready
	})
	if !ok {
		http.Error(w, "hls: stream has no segment yet", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", playlistType)
	// The live playlist changes with every segment.
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

func (p *Packager) serveSegment(w http.ResponseWriter, r *http.Request, n uint64) {
	body, ok := p.await(r, p.opt.TargetDuration, func() ([]byte, bool, bool) {
		b, ok := p.segment(n)
		// Only the segment in progress is worth waiting for.
		return b, ok, !ok && !p.closed && n == p.stats.Segments
	})
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", segmentType)
	// A segment never changes, but a republished stream reuses its name.
	h.Set("Cache-Control", p.segmentCache)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// await calls get under the lock until it reports ok. While it reports
// that waiting is worthwhile (the thing asked for is the next thing the
// packager publishes), await waits for a change, at most limit in all, or
// until the client goes away.
func (p *Packager) await(r *http.Request, limit time.Duration, get func() (body []byte, ok, wait bool)) ([]byte, bool) {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		body, ok, wait := get()
		changed := p.changed
		p.mu.Unlock()
		if ok {
			return body, true
		}
		if !wait {
			return nil, false
		}
		if timeout == nil {
			t := time.NewTimer(limit)
			defer t.Stop()
			timeout = t.C
			p.mu.Lock()
			p.waiting++
			p.mu.Unlock()
			defer func() {
				p.mu.Lock()
				p.waiting--
				p.mu.Unlock()
			}()
		}
		select {
		case <-changed:
		case <-timeout:
			return nil, false
		case <-r.Context().Done():
			return nil, false
		}
	}
}
