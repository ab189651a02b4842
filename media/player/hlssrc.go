package player

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/lastmile-qoe/lastmile/media/hls"
)

// maxPlaylist bounds a media playlist; a live window is a few hundred bytes.
const maxPlaylist = 1 << 20

// liveHoldBack is how far from the end of a live playlist a play starts, in
// target durations. RFC 8216 6.3.3: a client SHOULD NOT choose a segment
// that starts less than three target durations from the end, as doing so
// can trigger playback stalls: segments arrive whole, one target duration
// apart, so a playhead one segment from the end runs dry before each new
// one.
const liveHoldBack = 3

// startSegment is where a live play of pl starts: the newest segment that
// starts at least liveHoldBack target durations from the end. ok is false
// while the playlist is too short and still growing (a packager that has
// just started; first is the media sequence of the first playlist loaded):
// the player reloads it until it holds enough, as AVPlayer does. A window
// that is sliding but short (a server keeping fewer segments), or a
// finished playlist, starts at its first segment.
func startSegment(pl hls.Playlist, first uint64) (seq uint64, ok bool) {
	if len(pl.Segments) == 0 {
		return 0, pl.Ended
	}
	if pl.Ended {
		return pl.Segments[0].Sequence, true
	}
	var ahead time.Duration
	for i := len(pl.Segments) - 1; i >= 0; i-- {
		ahead += pl.Segments[i].Duration
		if ahead >= liveHoldBack*pl.TargetDuration {
			return pl.Segments[i].Sequence, true
		}
	}
	if pl.MediaSequence > first {
		return pl.Segments[0].Sequence, true
	}
	return 0, false
}

// playHLS follows a live media playlist: it fetches each new segment in
// order, demuxes it into frames, and reloads the playlist as RFC 8216 6.3.4
// says. first is the response to the first playlist request.
func (c *conn) playHLS(ctx context.Context, plURL *url.URL, first *http.Response, get func(*url.URL) (*http.Response, error)) (int, error) {
	demux := newTSDemuxer(func(f frame) error {
		f.at = c.now()
		if !c.send(ctx, msg{kind: msgFrame, at: f.at, f: f}) {
			return ctx.Err()
		}
		return nil
	})
	pl, err := readPlaylist(first)
	if err != nil {
		return CodeReadError, err
	}
	firstSeq := pl.MediaSequence
	var next uint64 // the media sequence number of the next segment to fetch
	started := false
	for {
		loaded := c.now()
		fetched := false
		if !started {
			next, started = startSegment(pl, firstSeq)
		}
		for _, seg := range pl.Segments {
			if !started || seg.Sequence < next {
				continue
			}
			if code, err := c.segment(ctx, plURL, seg.URI, get, demux); err != nil {
				return code, err
			}
			next, fetched = seg.Sequence+1, true
		}
		if pl.Ended {
			return CodeStreamEnded, io.EOF
		}
		// Reload after a target duration, or half of one when nothing was
		// new, counted from the last load.
		wait := pl.TargetDuration
		if !fetched {
			wait /= 2
		}
		if wait <= 0 {
			wait = 500 * time.Millisecond
		}
		if d := wait - c.now().Sub(loaded); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return 0, ctx.Err()
			}
		}
		resp, err := get(plURL)
		if err != nil {
			return CodeReadError, fmt.Errorf("hls: reloading the playlist: %w", err)
		}
		if resp.StatusCode >= 400 {
			resp.Body.Close()
			return CodeHTTPStatus, fmt.Errorf("hls: playlist reload answered HTTP %s", resp.Status)
		}
		if pl, err = readPlaylist(resp); err != nil {
			return CodeReadError, err
		}
	}
}

func readPlaylist(resp *http.Response) (hls.Playlist, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPlaylist+1))
	if err != nil {
		return hls.Playlist{}, fmt.Errorf("hls: reading the playlist: %w", err)
	}
	if len(b) > maxPlaylist {
		return hls.Playlist{}, fmt.Errorf("hls: playlist larger than %d bytes", maxPlaylist)
	}
	pl, err := hls.ParsePlaylist(b)
	if err != nil {
		return hls.Playlist{}, fmt.Errorf("hls: %w", err)
	}
	return pl, nil
}

// segment fetches one segment and feeds it to the demuxer as it arrives.
// A segment URI without a query inherits the playlist's (the signature,
// CMCD), so edges that check signatures on segments accept it.
func (c *conn) segment(ctx context.Context, plURL *url.URL, uri string, get func(*url.URL) (*http.Response, error), demux *tsDemuxer) (int, error) {
	ref, err := url.Parse(uri)
	if err != nil {
		return CodeReadError, fmt.Errorf("hls: bad segment uri %q: %w", uri, err)
	}
	target := plURL.ResolveReference(ref)
	if ref.RawQuery == "" {
		target.RawQuery = plURL.RawQuery
	}
	resp, err := get(target)
	if err != nil {
		return CodeReadError, fmt.Errorf("hls: segment %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return CodeHTTPStatus, fmt.Errorf("hls: segment %s answered HTTP %s", uri, resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, 32<<10)
	var p [tsPacketSize]byte
	for {
		_, err := io.ReadFull(br, p[:])
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return CodeReadError, fmt.Errorf("hls: segment %s ends inside a TS packet", uri)
			}
			return CodeReadError, fmt.Errorf("hls: segment %s: %w", uri, err)
		}
		if err := demux.packet(p[:]); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return CodeReadError, fmt.Errorf("hls: segment %s: %w", uri, err)
		}
	}
	if err := demux.flush(); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return CodeReadError, fmt.Errorf("hls: segment %s: %w", uri, err)
	}
	return 0, nil
}
