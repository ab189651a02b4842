// Package player is the headless player of the media stack: one Play is one
// viewer's session. It asks the scheduler where to play, resolves the edge
// through the stack's DNS, pulls HTTP-FLV (or HLS) over a real socket, runs a
// playback buffer at real-time speed, models the decoder and renderer, and
// reports what a player SDK reports: play_start, first_frame, stall,
// render_stall, heartbeat, play_stop (schemas/catalog.go).
//
// # Attempts and lines
//
// Each connection to an edge is an attempt and starts with a play_start
// (url, line main|backup, attempt 0, 1, …; schedule_ms on attempt 0 only).
// An attempt that fails before the first frame ends with its own play_stop
// (code, first_frame_blocked = the phase it was in) and the next attempt
// tries the other line, up to Config.MaxLineSwitches switches. After the
// first frame a failed connection (read error, reset, no media for
// FirstFrameTimeout, or an early end when Duration is set) reconnects on the
// other line with a new play_start but no play_stop: like a player reopening
// the stream it drops its buffer, and a stall with cause "reconnect" lasts
// until the new line's media reaches the resume threshold. The play's one
// play_stop comes at the end; when no switch is left it comes at once with
// the failure's code. A decode failure never switches lines.
//
// # First-frame phases
//
// Phases are contiguous, measured from the attempt's play_start, so they
// add up to first_frame.total_ms exactly:
//
//	dns                 resolving the edge host (Config.Resolver); 0 for an IP
//	tcp_connect         TCP connect to the resolved address
//	tcp_first_packet    request sent → first response byte
//	video_first_packet  first response byte → first video tag parsed (HLS: the
//	                    playlist's first byte → first video PES of a segment,
//	                    including the wait for a just-started playlist to grow;
//	                    see Buffer and stalls)
//	first_decode        first video tag → first keyframe decoded: waiting for the
//	                    sequence header and a keyframe, then the DecodeModel cost
//	first_render        the DecodeModel's render cost
//
// An HTTP error status is blocked at video_first_packet: the edge answered,
// but not with video. For an audio-only rendition the audio track plays the
// part of video.
//
// # play_stop codes
//
//	   0  normal stop: watched Config.Duration, the stream ended (Duration 0),
//	      or the viewer left (ctx done; reason "user_exit")
//	1001  DNS failure: lookup error or no address for the edge host
//	1002  TCP connect to the edge failed
//	1003  the edge answered HTTP status >= 400 (reason has the status)
//	1004  no first frame within Config.FirstFrameTimeout (or, for a
//	      reconnect, no media within it)
//	1005  the stream ended early: before the first frame, or before
//	      Duration when one was asked for
//	1006  read error: connection reset, malformed FLV / TS / playlist, no
//	      media for FirstFrameTimeout mid-play
//	1007  decode failure (DecodeModel defect)
//	1008  scheduling failed: scheduler unreachable or refusing, rendition or
//	      format not offered; first_frame_blocked is "dns", the first phase
//	1009  bad Config (unknown format)
//	1099  internal error (a bug, or a panicking DecodeModel.Hook)
//
// Each failed attempt's play_stop gives its own failure in reason. When a
// play that reconnected mid-play fails for good, its code is the last
// failure's and its reason lists each line's failure.
//
// # Events and fields
//
// Every event carries log_type, ts (ms), source "client", app_id,
// device_id, user_id, session_id, room_id, stream_id, region, isp, cdn,
// node_id (of the attempt's line), protocol ("http-flv" or "hls"),
// rendition, codec (once known: h264, hevc, aac …), app_version, os,
// network. Then:
//
//	play_start    url, line, attempt, schedule_ms (attempt 0)
//	first_frame   total_ms, dns_ms, tcp_connect_ms, tcp_first_packet_ms,
//	              video_first_packet_ms, first_decode_ms, first_render_ms,
//	              server_ip, edge_cached (only when the edge sent X-Cache)
//	stall         duration_ms, buffer_ms_before, cause ("network", or
//	              "reconnect" when the line was switched meanwhile);
//	              ts is when the stall began
//	render_stall  duration_ms, dropped_frames, buffer_ms_before, cause
//	              "decoder"; ts is when it began
//	heartbeat     interval_ms, bitrate_kbps, fps, bytes, buffer_ms,
//	              stall_count, stall_ms (both in the interval), state
//	              (playing|stalled), latency_ms
//	play_stop     code, first_frame_blocked, play_duration_ms, stall_count,
//	              stall_total_ms, bytes, latency_ms (after a first frame),
//	              reason
//
// Heartbeats run every HeartbeatEvery from the first frame; one more for
// the last partial interval comes just before play_stop, so that viewing
// and stall time sum up: the heartbeats' stall_count and stall_ms add up to
// play_stop's stall_count and stall_total_ms, which are the count and the
// sum of duration_ms of the stall events.
//
// # Buffer and stalls
//
// The buffer is media time downloaded ahead of the playhead: a frame at
// media time t is shown until the next frame is due, so the downloaded
// media ends at the newest frame's time plus the frame interval. Playback
// starts when Buffer.Start is buffered after the first frame, runs at
// real-time speed, and stalls only when the playhead reaches the end of
// the buffer; it resumes when Buffer.Resume is buffered again. How media
// arrives does not matter: HLS delivers a segment's frames in one burst,
// HTTP-FLV frame by frame, and neither stalls while the buffer holds media.
// buffer_ms_before of a stall is the buffer left when it began: 0 when the
// playhead ran out, the dropped buffer for a reconnect.
//
// A live HLS play starts at the newest segment that starts at least three
// target durations from the end of the playlist (RFC 8216 6.3.3), so it
// plays that far behind the live edge and a segment can come late by up to
// two target durations without a stall. A player one segment from the end
// would run dry just as each next segment is published. When the playlist
// is shorter than that and still growing (an edge that has just started
// packaging the stream), the player reloads it until it is long enough
// before fetching the first segment, as AVPlayer does; a sliding window
// that stays shorter, or a finished playlist, starts at its first segment.
//
// latency_ms is glass-to-glass latency: now minus the publisher's capture
// time of the picture showing now. Video frames carry their capture time
// in an SEI message (media/clock; the built-in publisher stamps every
// keyframe and a frame each second); the latest stamp read from FLV or TS
// gives the offset from media time to capture time, so buffering, stalls
// and every delay upstream count. Until a stamp has been seen (a stream
// from an outside encoder, an audio-only rendition) latency_ms is an
// estimate instead: the frame that arrived soonest after its timestamp is
// taken as the live edge (anchor = min over frames of arrival wall time −
// media time), and latency = now − (media time playing + anchor); that is
// a lower bound, as delay upstream of the edge is not seen. A reconnect or
// a timestamp jump drops both until the next stamp or frame.
//
// # What the player sends to and expects from an edge
//
// Every request carries the session id in CMCD, both as the CMCD query
// parameter (appended after the signed query, which media/sign does not
// cover) and as the CMCD-Session header: cid (stream id), sf, sid, st. The
// edge reads edge_access.session_id from sid. The player reads the X-Cache
// response header (HIT or MISS) for first_frame.edge_cached. HLS segment
// URIs without a query of their own inherit the playlist URL's query
// (signature and CMCD). An HTTP error on the playlist fails the attempt
// (RFC 8216 gives no reason to retry a 404); an edge serving a live stream
// answers the first playlist request once its first segment exists
// (media/hls Handler) rather than 404.
package player

// play_stop codes; see the package doc.
const (
	CodeOK                = 0
	CodeDNS               = 1001
	CodeConnect           = 1002
	CodeHTTPStatus        = 1003
	CodeFirstFrameTimeout = 1004
	CodeStreamEnded       = 1005
	CodeReadError         = 1006
	CodeDecode            = 1007
	CodeSchedule          = 1008
	CodeConfig            = 1009
	CodeInternal          = 1099
)
