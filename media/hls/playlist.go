package hls

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// renderPlaylist writes the live media playlist (RFC 8216) for the newest
// Window segments.
func (p *Packager) renderPlaylist() []byte {
	segs := p.segs
	if len(segs) > p.opt.Window {
		segs = segs[len(segs)-p.opt.Window:]
	}
	var seq uint64
	if len(segs) > 0 {
		seq = segs[0].seq
	} else {
		seq = p.stats.Segments
	}
	b := make([]byte, 0, 128+40*len(segs))
	b = append(b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:"...)
	b = strconv.AppendInt(b, int64(p.target), 10)
	b = append(b, "\n#EXT-X-MEDIA-SEQUENCE:"...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '\n')
	// RFC 8216 6.2.1: discontinuities that left the window are counted
	// so players keep renditions aligned.
	discSeq := p.discs
	for _, s := range segs {
		if s.disc {
			discSeq--
		}
	}
	if discSeq > 0 {
		b = append(b, "#EXT-X-DISCONTINUITY-SEQUENCE:"...)
		b = strconv.AppendUint(b, discSeq, 10)
		b = append(b, '\n')
	}
	for _, s := range segs {
		if s.disc {
			b = append(b, "#EXT-X-DISCONTINUITY\n"...)
		}
		b = append(b, "#EXTINF:"...)
		b = strconv.AppendFloat(b, s.dur.Seconds(), 'f', 3, 64)
		b = append(b, ",\n"...)
		b = appendSegmentName(b, s.seq)
		b = append(b, '\n')
	}
	if p.closed {
		b = append(b, "#EXT-X-ENDLIST\n"...)
	}
	return b
}

func appendSegmentName(b []byte, seq uint64) []byte {
	b = append(b, "seg-"...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, ".ts"...)
}

// parseSegmentName is the inverse of appendSegmentName; it accepts only
// the canonical form so one segment has one URL.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, "seg-")
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, ".ts"); !ok || digits == "" {
		return 0, false
	}
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// Playlist is a parsed HLS media playlist.
type Playlist struct {
	Version        int // 1 when the playlist has no #EXT-X-VERSION
	TargetDuration time.Duration
	MediaSequence  uint64 // sequence number of Segments[0]
	// DiscontinuitySequence counts the discontinuities before Segments[0]
	// (#EXT-X-DISCONTINUITY-SEQUENCE).
	DiscontinuitySequence uint64
	Segments              []MediaSegment
	Ended                 bool // #EXT-X-ENDLIST: no segments will be added
}

// MediaSegment is one segment entry of a media playlist.
type MediaSegment struct {
	URI           string // as written, relative to the playlist URL
	Sequence      uint64 // media sequence number
	Duration      time.Duration
	Title         string // the #EXTINF title, usually empty
	Discontinuity bool   // #EXT-X-DISCONTINUITY precedes it
}

// ErrMasterPlaylist is returned by ParsePlaylist for a master (multivariant)
// playlist, which lists renditions rather than segments.
var ErrMasterPlaylist = errors.New("hls: master playlist, not a media playlist")

// maxPlaylistSeconds bounds durations so they convert to time.Duration
// without overflow; no real segment comes close.
const maxPlaylistSeconds = 1 << 32

// ParsePlaylist parses an HLS media playlist (RFC 8216 section 4). It is
// strict about what a player relies on — the #EXTM3U header, one
// #EXT-X-TARGETDURATION, #EXTINF before each URI and within the target
// duration — and ignores tags it does not know, as the RFC asks.
func ParsePlaylist(b []byte) (Playlist, error) {
	var pl Playlist
	if bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		return pl, errors.New("hls: playlist starts with a byte order mark")
	}
	var (
		haveTarget, haveSeq, haveVersion, haveDisc bool
		pending                                    *MediaSegment // after #EXTINF, waiting for its URI
		discontinuity                              bool
		first                                      = true
		lineNo                                     int
	)
	fail := func(format string, args ...any) (Playlist, error) {
		return Playlist{}, fmt.Errorf("hls: playlist line %d: %s", lineNo, fmt.Sprintf(format, args...))
	}
	for rest := b; len(rest) > 0 || first; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		lineNo++
		if first {
			if string(line) != "#EXTM3U" {
				return fail("want #EXTM3U, got %.40q", line)
			}
			first = false
			continue
		}
		if i := bytes.IndexFunc(line, isControl); i >= 0 {
			return fail("control character %#x", line[i])
		}
		s := string(bytes.TrimRight(line, " \t"))
		switch {
		case s == "":
			continue
		case !strings.HasPrefix(s, "#"):
			if pending == nil {
				return fail("URI %.80q without #EXTINF", s)
			}
			pending.URI = s
			pending.Sequence = pl.MediaSequence + uint64(len(pl.Segments))
			pl.Segments = append(pl.Segments, *pending)
			pending = nil
			continue
		case !strings.HasPrefix(s, "#EXT"):
			continue // comment
		}
		tag, value, _ := strings.Cut(s, ":")
		switch tag {
		case "#EXTM3U":
			return fail("second #EXTM3U")
		case "#EXT-X-VERSION":
			if haveVersion {
				return fail("second #EXT-X-VERSION")
			}
			v, err := strconv.ParseUint(value, 10, 8)
			if err != nil || v == 0 {
				return fail("bad #EXT-X-VERSION %.20q", value)
			}
			pl.Version, haveVersion = int(v), true
		case "#EXT-X-TARGETDURATION":
			if haveTarget {
				return fail("second #EXT-X-TARGETDURATION")
			}
			v, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				return fail("bad #EXT-X-TARGETDURATION %.20q", value)
			}
			pl.TargetDuration, haveTarget = time.Duration(v)*time.Second, true
		case "#EXT-X-MEDIA-SEQUENCE":
			if haveSeq {
				return fail("second #EXT-X-MEDIA-SEQUENCE")
			}
			if len(pl.Segments) > 0 || pending != nil {
				return fail("#EXT-X-MEDIA-SEQUENCE after the first segment")
			}
			v, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return fail("bad #EXT-X-MEDIA-SEQUENCE %.20q", value)
			}
			pl.MediaSequence, haveSeq = v, true
		case "#EXT-X-DISCONTINUITY-SEQUENCE":
			if haveDisc {
				return fail("second #EXT-X-DISCONTINUITY-SEQUENCE")
			}
			if len(pl.Segments) > 0 || pending != nil {
				return fail("#EXT-X-DISCONTINUITY-SEQUENCE after the first segment")
			}
			v, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return fail("bad #EXT-X-DISCONTINUITY-SEQUENCE %.20q", value)
			}
			pl.DiscontinuitySequence, haveDisc = v, true
		case "#EXTINF":
			if pending != nil {
				return fail("#EXTINF follows #EXTINF without a URI")
			}
			durText, title, _ := strings.Cut(value, ",")
			d, err := strconv.ParseFloat(durText, 64)
			if err != nil || !isDecimal(durText) || d > maxPlaylistSeconds {
				return fail("bad #EXTINF duration %.20q", durText)
			}
			pending = &MediaSegment{
				Duration:      time.Duration(math.Round(d * float64(time.Second))),
				Title:         title,
				Discontinuity: discontinuity,
			}
			discontinuity = false
		case "#EXT-X-DISCONTINUITY":
			discontinuity = true
		case "#EXT-X-ENDLIST":
			pl.Ended = true
		case "#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-MEDIA":
			return Playlist{}, fmt.Errorf("%w: line %d has %s", ErrMasterPlaylist, lineNo, tag)
		}
	}
	if pending != nil {
		return fail("#EXTINF without a URI at the end")
	}
	if !haveTarget {
		return Playlist{}, errors.New("hls: playlist has no #EXT-X-TARGETDURATION")
	}
	if !haveVersion {
		pl.Version = 1
	}
	// RFC 8216 4.3.3.1: each duration, rounded to whole seconds, is at
	// most the target duration. Players size their buffers on it.
	for _, s := range pl.Segments {
		if s.Duration.Round(time.Second) > pl.TargetDuration {
			return Playlist{}, fmt.Errorf("hls: playlist: segment %q lasts %v, more than the target duration %v", s.URI, s.Duration, pl.TargetDuration)
		}
	}
	return pl, nil
}

// isDecimal reports an RFC 8216 decimal-floating-point: digits with at
// most one '.', no sign, exponent or hex (which ParseFloat would accept).
func isDecimal(s string) bool {
	dot := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0:
			dot = true
		default:
			return false
		}
	}
	return s != ""
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }
