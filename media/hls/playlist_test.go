package hls

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParsePlaylist(t *testing.T) {
	in := "#EXTM3U\r\n#EXT-X-VERSION:3\r\n#EXT-X-TARGETDURATION:4\r\n#EXT-X-MEDIA-SEQUENCE:17\r\n" +
		"# a comment\r\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\r\n" +
		"#EXTINF:3.96,first\r\nhttps://cdn.example/a.ts\r\n\r\n" +
		"#EXT-X-DISCONTINUITY\r\n#EXTINF:4,\r\nseg-18.ts\r\n#EXT-X-ENDLIST\r\n"
	pl, err := ParsePlaylist([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Playlist{
		Version: 3, TargetDuration: 4 * time.Second, MediaSequence: 17, Ended: true,
		Segments: []MediaSegment{
			{URI: "https://cdn.example/a.ts", Sequence: 17, Duration: 3960 * time.Millisecond, Title: "first"},
			{URI: "seg-18.ts", Sequence: 18, Duration: 4 * time.Second, Discontinuity: true},
		},
	}
	if !equalPlaylist(pl, want) {
		t.Errorf("got %+v\nwant %+v", pl, want)
	}
}

func equalPlaylist(a, b Playlist) bool {
	if a.Version != b.Version || a.TargetDuration != b.TargetDuration || a.MediaSequence != b.MediaSequence ||
		a.Ended != b.Ended || len(a.Segments) != len(b.Segments) {
		return false
	}
	for i := range a.Segments {
		if a.Segments[i] != b.Segments[i] {
			return false
		}
	}
	return true
}

func TestParsePlaylistErrors(t *testing.T) {
	const head = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
	cases := map[string]struct{ in, want string }{
		"empty":               {"", "want #EXTM3U"},
		"not a playlist":      {"<html>", "want #EXTM3U"},
		"BOM":                 {"\xef\xbb\xbf#EXTM3U\n", "byte order mark"},
		"no target":           {"#EXTM3U\n#EXTINF:1,\na.ts\n", "no #EXT-X-TARGETDURATION"},
		"bad target":          {"#EXTM3U\n#EXT-X-TARGETDURATION:2.5\n", "line 2: bad #EXT-X-TARGETDURATION"},
		"two targets":         {head + "#EXT-X-TARGETDURATION:2\n", "line 3: second #EXT-X-TARGETDURATION"},
		"URI without EXTINF":  {head + "a.ts\n", "line 3: URI"},
		"EXTINF without URI":  {head + "#EXTINF:1,\n", "without a URI at the end"},
		"EXTINF twice":        {head + "#EXTINF:1,\n#EXTINF:1,\na.ts\n", "line 4: #EXTINF follows #EXTINF"},
		"negative duration":   {head + "#EXTINF:-1,\na.ts\n", "bad #EXTINF duration"},
		"NaN duration":        {head + "#EXTINF:NaN,\na.ts\n", "bad #EXTINF duration"},
		"huge duration":       {head + "#EXTINF:1e300,\na.ts\n", "bad #EXTINF duration"},
		"hex duration":        {head + "#EXTINF:0x1p1,\na.ts\n", "bad #EXTINF duration"},
		"over target":         {head + "#EXTINF:2.6,\na.ts\n", "more than the target duration"},
		"sequence after seg":  {head + "#EXTINF:1,\na.ts\n#EXT-X-MEDIA-SEQUENCE:3\n", "after the first segment"},
		"bad sequence":        {head + "#EXT-X-MEDIA-SEQUENCE:-1\n", "bad #EXT-X-MEDIA-SEQUENCE"},
		"bad version":         {head + "#EXT-X-VERSION:0\n", "bad #EXT-X-VERSION"},
		"second EXTM3U":       {head + "#EXTM3U\n", "second #EXTM3U"},
		"master playlist":     {"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n", "master playlist"},
		"bare CR":             {head + "#EXTINF:1,\n\ra.ts\n", "line 4: control character 0xd"},
		"media sequence text": {head + "#EXT-X-MEDIA-SEQUENCE:x\n", "line 3"},
	}
	for name, tc := range cases {
		_, err := ParsePlaylist([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
	_, err := ParsePlaylist([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"))
	if !errors.Is(err, ErrMasterPlaylist) {
		t.Errorf("master playlist: %v, want ErrMasterPlaylist", err)
	}
}

func FuzzParsePlaylist(f *testing.F) {
	p := NewPackager("fuzz", Options{TargetDuration: time.Second, Window: 3})
	feed(f, p, synthStream(5, 25, true, true))
	f.Add(p.Playlist())
	p.Close()
	f.Add(p.Playlist())
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:4,\na\n#EXTINF:4,\nb\n"))
	f.Add([]byte("#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:1.5,t\r\nx.ts\r\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pl, err := ParsePlaylist(b)
		if err != nil {
			return
		}
		for i, s := range pl.Segments {
			if s.URI == "" || s.URI[0] == '#' || strings.ContainsAny(s.URI, "\r\n") {
				t.Errorf("segment %d URI %q", i, s.URI)
			}
			if s.Sequence != pl.MediaSequence+uint64(i) {
				t.Errorf("segment %d sequence %d, media sequence %d", i, s.Sequence, pl.MediaSequence)
			}
			if s.Duration < 0 || s.Duration.Round(time.Second) > pl.TargetDuration {
				t.Errorf("segment %d duration %v, target %v", i, s.Duration, pl.TargetDuration)
			}
		}
	})
}
