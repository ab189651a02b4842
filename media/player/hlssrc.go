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

// liveEdgeSegments is how far behind the newest segment a live play starts
// (RFC 8216 6.3.3 asks for at least three target durations from the end).
const liveEdgeSegments = 3

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
	var next uint64 // the media sequence number of the next segment to fetch
	if n := len(pl.Segments); n > liveEdgeSegments && !pl.Ended {
		next = pl.Segments[n-liveEdgeSegments].Sequence
	} else if n > 0 {
		next = pl.Segments[0].Sequence
	}
	for {
		loaded := c.now()
		fetched := false
		for _, seg := range pl.Segments {
			if seg.Sequence < next {
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
