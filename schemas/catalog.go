// Package schemas is the event catalog: the one source of truth for every
// log_type lastmile accepts. The JSON Schema for SDK authors, the Kafka topic of
// each log_type, the ClickHouse DDL and the validation rules of the collector
// and the processor are all derived from the tables in this file.
package schemas

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Kind is the value type of a field. It fixes the JSON type accepted, the
// ClickHouse column type and the Arrow type of the column.
type Kind uint8

const (
	// KindString is free text or an identifier: ClickHouse String.
	KindString Kind = iota
	// KindDim is a low-cardinality dimension (region, cdn, ...):
	// ClickHouse LowCardinality(String).
	KindDim
	// KindInt is a whole number: ClickHouse Int64.
	KindInt
	// KindFloat is a real number: ClickHouse Float64.
	KindFloat
	// KindBool is true/false: ClickHouse Bool.
	KindBool
	// KindTime is milliseconds since the Unix epoch: ClickHouse DateTime64(3).
	KindTime
)

func (k Kind) String() string {
	return [...]string{"string", "dim", "int", "float", "bool", "time"}[k]
}

// Field describes one field of an event.
type Field struct {
	Name     string
	Kind     Kind
	Unit     string // "ms", "kbps", "bytes", "fps", ... ; empty when unitless
	Required bool
	// Min and Max bound numeric values (inclusive). Both zero means unbounded.
	Min, Max float64
	// Enum lists the allowed values of a string field; empty means any.
	Enum []string
	// MaxLen bounds the length of a string in bytes; 0 means the default.
	MaxLen int
	Doc    string
	// Since is the migration that added the column to the events table (0 is
	// 0001): a released migration never changes, so a later field is added
	// by its own (see ColumnsMigration).
	Since int
}

// HasRange reports whether the field has numeric bounds.
func (f *Field) HasRange() bool { return f.Min != 0 || f.Max != 0 }

// Key says how events of a log_type are keyed in Kafka (and so ordered).
type Key uint8

const (
	// KeySession keys by session_id (device_id when absent): one play or push
	// session stays in one partition, in order.
	KeySession Key = iota
	// KeyStream keys by stream_id: stream-level server logs of one stream stay
	// in order.
	KeyStream
)

// LogType is one entry of the catalog.
type LogType struct {
	Name   string
	Source string // "client" or "server"
	Doc    string
	Key    Key
	// Fields are the type-specific fields; the common fields apply to all.
	Fields []Field
	// TraceKey is the id that leads the ORDER BY for this log_type's rows in
	// the events table (the trace_key column): the device for client events,
	// the stream for stream-level events, the session for edge access. Fetching
	// one device's, stream's or session's events then reads a few granules.
	TraceKey string
	// Since is the migration that added the log_type (0 is 0001): its view
	// and its new columns are that migration's (see ColumnsMigration).
	Since int

	columns         []Field
	index           map[string]int
	requiredIDs     []int
	requiredIDNames string
	traceKey        int
	wide            []int
	pos             int // index in Catalog
}

// TraceKeyCol is the position of the trace key among the log_type's columns.
func (lt *LogType) TraceKeyCol() int { return lt.traceKey }

// DefaultMaxLen bounds string fields without their own MaxLen.
const DefaultMaxLen = 1024

// Bounds shared by many fields.
const (
	hourMs = 3_600_000
	dayMs  = 24 * hourMs
)

func ms(name, doc string, max float64) Field {
	return Field{Name: name, Kind: KindInt, Unit: "ms", Min: 0, Max: max, Doc: doc}
}

func req(f Field) Field { f.Required = true; return f }

func since(migration int, f Field) Field { f.Since = migration; return f }

// FirstFramePhases are the phases of first-frame time, in the order a player
// goes through them. play_stop.first_frame_blocked names one of them.
var FirstFramePhases = []string{
	"dns", "tcp_connect", "tcp_first_packet", "video_first_packet", "first_decode", "first_render",
}

// Common are the fields every event may carry. The collector sets app_id (from
// the app key), received_at and sample_rate, and derives event_id when absent.
var Common = []Field{
	{Name: "event_id", Kind: KindString, MaxLen: 128, Doc: "client-generated unique id, used for dedup; derived from the content when absent"},
	{Name: "log_type", Kind: KindDim, Required: true, MaxLen: 64, Doc: "the catalog entry this event belongs to"},
	{Name: "ts", Kind: KindTime, Unit: "ms", Required: true, Doc: "when it happened, sender clock, ms since epoch"},
	{Name: "source", Kind: KindDim, Enum: []string{"client", "server"}, Doc: "client or server; defaults from the log_type"},
	{Name: "app_id", Kind: KindDim, MaxLen: 64, Doc: "set by the collector from the app key"},
	{Name: "device_id", Kind: KindString, MaxLen: 128, Doc: "the player or publisher device"},
	{Name: "user_id", Kind: KindString, MaxLen: 128},
	{Name: "session_id", Kind: KindString, MaxLen: 128, Doc: "one play or push session; joins client and server events"},
	{Name: "room_id", Kind: KindString, MaxLen: 128},
	{Name: "stream_id", Kind: KindString, MaxLen: 256},
	{Name: "region", Kind: KindDim, MaxLen: 64},
	{Name: "isp", Kind: KindDim, MaxLen: 64},
	{Name: "cdn", Kind: KindDim, MaxLen: 64},
	{Name: "node_id", Kind: KindDim, MaxLen: 128, Doc: "edge, origin, ingest or transcode node"},
	{Name: "protocol", Kind: KindDim, MaxLen: 32, Doc: "rtmp, http-flv, hls, ..."},
	{Name: "rendition", Kind: KindDim, MaxLen: 32, Doc: "source, 1080p, 720p, ..."},
	{Name: "codec", Kind: KindDim, MaxLen: 32},
	{Name: "app_version", Kind: KindDim, MaxLen: 64},
	{Name: "os", Kind: KindDim, MaxLen: 64},
	{Name: "network", Kind: KindDim, MaxLen: 32, Doc: "wifi, 4g, 5g, ethernet, ..."},
}

// ServerFields are set by the collector on every kept event; a sender's own
// values for them are replaced.
var ServerFields = []Field{
	{Name: "received_at", Kind: KindTime, Unit: "ms", Doc: "collector clock when the event arrived"},
	{Name: "sample_rate", Kind: KindFloat, Min: 0, Max: 1, Doc: "probability this event was kept; weight rows by 1/sample_rate"},
}

// Catalog lists every log_type, in a stable order.
var Catalog = []LogType{
	{
		Name: "play_start", Source: "client", Key: KeySession, TraceKey: "device_id",
		Doc: "a player starts a play attempt (after scheduling, before connecting)",
		Fields: []Field{
			{Name: "url", Kind: KindString, MaxLen: 2048, Doc: "the play URL"},
			{Name: "line", Kind: KindDim, Enum: []string{"main", "backup"}, Doc: "which line of the rendition"},
			{Name: "attempt", Kind: KindInt, Min: 0, Max: 1000, Doc: "0 for the first try, then retries"},
			ms("schedule_ms", "time to get stream_data from the scheduler", hourMs),
		},
	},
	{
		Name: "first_frame", Source: "client", Key: KeySession, TraceKey: "device_id",
		Doc: "the first video frame was rendered; total and per-phase times",
		Fields: []Field{
			req(ms("total_ms", "from play start to first rendered frame", hourMs)),
			ms("dns_ms", "DNS resolution of the edge host", hourMs),
			ms("tcp_connect_ms", "TCP connect", hourMs),
			ms("tcp_first_packet_ms", "request sent to first response byte", hourMs),
			ms("video_first_packet_ms", "first byte to first video packet", hourMs),
			ms("first_decode_ms", "first video packet to first decoded frame", hourMs),
			ms("first_render_ms", "first decoded frame to first rendered frame", hourMs),
			{Name: "server_ip", Kind: KindString, MaxLen: 64},
			{Name: "edge_cached", Kind: KindBool, Doc: "the edge already had the stream (no back-to-source)"},
		},
	},
	{
		Name: "stall", Source: "client", Key: KeySession, TraceKey: "device_id",
		Doc: "playback stopped because the buffer ran dry (rebuffering; excludes startup and seeking)",
		Fields: []Field{
			req(ms("duration_ms", "how long playback was stalled", dayMs)),
			ms("buffer_ms_before", "buffer level shortly before the stall", hourMs),
			{Name: "cause", Kind: KindDim, MaxLen: 64, Doc: "network, server, unknown, ..."},
		},
	},
	{
		Name: "render_stall", Source: "client", Key: KeySession, TraceKey: "device_id",
		Doc: "frames were available but not rendered in time (decoder or renderer)",
		Fields: []Field{
			req(ms("duration_ms", "how long rendering was stalled", dayMs)),
			ms("buffer_ms_before", "buffer level when it began", hourMs),
			{Name: "cause", Kind: KindDim, MaxLen: 64, Doc: "decode, render, ..."},
			{Name: "dropped_frames", Kind: KindInt, Min: 0, Max: 1e7},
		},
	},
	{
		Name: "play_stop", Source: "client", Key: KeySession, TraceKey: "device_id",
		Doc: "a play session ended; code 0 is a normal stop",
		Fields: []Field{
			{Name: "code", Kind: KindInt, Required: true, Min: -1e9, Max: 1e9, Doc: "0 normal stop, otherwise the error code"},
			{Name: "first_frame_blocked", Kind: KindDim, Enum: append([]string{""}, FirstFramePhases...), Doc: "the phase it was stuck in when no first frame came"},
			ms("play_duration_ms", "from play start to stop", 30*dayMs),
			{Name: "stall_count", Kind: KindInt, Min: 0, Max: 1e6},
			ms("stall_total_ms", "sum of stall durations", 30*dayMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15},
			ms("latency_ms", "glass-to-glass latency at stop, as heartbeat latency_ms", hourMs),
			{Name: "reason", Kind: KindString, MaxLen: 256, Doc: "free text: user_exit, error message, ..."},
			since(8, Field{Name: "render_stall_count", Kind: KindInt, Min: 0, Max: 1e6, Doc: "render stalls of the play"}),
			since(8, ms("render_stall_total_ms", "sum of render stall durations", 30*dayMs)),
			since(8, Field{Name: "will_retry", Kind: KindBool, Doc: "the player tries again in the same session: this attempt's end is not the view's end"}),
		},
	},
	{
		Name: "heartbeat", Source: "client", Key: KeySession, TraceKey: "device_id",
		Doc: "periodic playback state while playing",
		Fields: []Field{
			ms("interval_ms", "time since the previous heartbeat", hourMs),
			ms("buffer_ms", "playback buffer level", hourMs),
			{Name: "bitrate_kbps", Kind: KindFloat, Unit: "kbps", Min: 0, Max: 1e6},
			{Name: "fps", Kind: KindFloat, Unit: "fps", Min: 0, Max: 1000},
			ms("latency_ms", "glass-to-glass latency from the capture stamp (an estimate before one is seen)", hourMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15, Doc: "bytes received since the previous heartbeat"},
			{Name: "stall_count", Kind: KindInt, Min: 0, Max: 1e6, Doc: "stalls since the previous heartbeat"},
			ms("stall_ms", "stalled time since the previous heartbeat", hourMs),
			since(8, Field{Name: "render_stall_count", Kind: KindInt, Min: 0, Max: 1e6, Doc: "render stalls that ended since the previous heartbeat"}),
			since(8, ms("render_stall_ms", "duration of the render stalls that ended since the previous heartbeat", hourMs)),
			{Name: "state", Kind: KindDim, Enum: []string{"", "playing", "stalled", "paused", "seeking"}},
		},
	},
	{
		Name: "push_start", Source: "client", Key: KeySession, TraceKey: "stream_id",
		Doc: "a broadcaster started pushing a stream",
		Fields: []Field{
			{Name: "url", Kind: KindString, MaxLen: 2048},
			{Name: "target_bitrate_kbps", Kind: KindFloat, Unit: "kbps", Min: 0, Max: 1e6},
			{Name: "fps", Kind: KindFloat, Unit: "fps", Min: 0, Max: 1000},
			{Name: "width", Kind: KindInt, Min: 0, Max: 16384},
			{Name: "height", Kind: KindInt, Min: 0, Max: 16384},
			ms("connect_ms", "RTMP connect and publish handshake", hourMs),
			{Name: "server_ip", Kind: KindString, MaxLen: 64},
		},
	},
	{
		Name: "push_stats", Source: "client", Key: KeySession, TraceKey: "stream_id",
		Doc: "periodic uplink statistics of a broadcaster",
		Fields: []Field{
			ms("interval_ms", "time since the previous stats", hourMs),
			{Name: "bitrate_kbps", Kind: KindFloat, Unit: "kbps", Min: 0, Max: 1e6},
			{Name: "fps", Kind: KindFloat, Unit: "fps", Min: 0, Max: 1000},
			{Name: "dropped_frames", Kind: KindInt, Min: 0, Max: 1e9},
			ms("rtt_ms", "round trip time to ingest", hourMs),
			ms("send_buffer_ms", "media queued locally, not yet sent", hourMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15},
		},
	},
	{
		Name: "push_stop", Source: "client", Key: KeySession, TraceKey: "stream_id",
		Doc: "a broadcaster stopped pushing",
		Fields: []Field{
			{Name: "code", Kind: KindInt, Required: true, Min: -1e9, Max: 1e9, Doc: "0 normal stop"},
			{Name: "reason", Kind: KindString, MaxLen: 256},
			ms("duration_ms", "push duration", 365*dayMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15},
		},
	},
	{
		Name: "ingest_session", Source: "server", Key: KeyStream, TraceKey: "stream_id",
		Doc: "the ingest server's view of one publish session (start, periodic stats, stop)",
		Fields: []Field{
			{Name: "state", Kind: KindDim, Required: true, Enum: []string{"start", "stats", "stop"}},
			{Name: "bitrate_kbps", Kind: KindFloat, Unit: "kbps", Min: 0, Max: 1e6},
			{Name: "fps", Kind: KindFloat, Unit: "fps", Min: 0, Max: 1000},
			{Name: "dropped_frames", Kind: KindInt, Min: 0, Max: 1e9},
			ms("duration_ms", "session age", 365*dayMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15},
			{Name: "client_ip", Kind: KindString, MaxLen: 64},
			{Name: "stop_reason", Kind: KindString, MaxLen: 256},
		},
	},
	{
		Name: "relay", Source: "server", Key: KeyStream, TraceKey: "stream_id",
		Doc: "ingest relaying a stream to the origin",
		Fields: []Field{
			{Name: "state", Kind: KindDim, Required: true, Enum: []string{"start", "stats", "stop", "error"}},
			{Name: "target", Kind: KindString, MaxLen: 256},
			ms("latency_ms", "capture (publisher stamp) to relayed, of the latest stamped frame; 0 before one", hourMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15},
			{Name: "retries", Kind: KindInt, Min: 0, Max: 1e6},
			{Name: "error", Kind: KindString, MaxLen: 512},
		},
	},
	{
		Name: "origin_stream", Source: "server", Key: KeyStream, TraceKey: "stream_id",
		Doc: "the origin's view of a live stream",
		Fields: []Field{
			{Name: "state", Kind: KindDim, Required: true, Enum: []string{"start", "stats", "stop", "lost"}},
			{Name: "bitrate_kbps", Kind: KindFloat, Unit: "kbps", Min: 0, Max: 1e6},
			{Name: "fps", Kind: KindFloat, Unit: "fps", Min: 0, Max: 1000},
			ms("gop_cache_ms", "media held in the GOP cache", hourMs),
			{Name: "pulls", Kind: KindInt, Min: 0, Max: 1e9, Doc: "edges pulling this stream"},
			{Name: "error", Kind: KindString, MaxLen: 512},
		},
	},
	{
		Name: "transcode", Source: "server", Key: KeyStream, TraceKey: "stream_id",
		Doc: "one rendition worker of the transcode ladder",
		Fields: []Field{
			{Name: "status", Kind: KindDim, Required: true, Enum: []string{"ok", "lagging", "error", "stopped"}},
			ms("latency_ms", "capture (publisher stamp) to rendition output, of the latest stamped frame; 0 before one", hourMs),
			{Name: "fps", Kind: KindFloat, Unit: "fps", Min: 0, Max: 1000},
			{Name: "bitrate_kbps", Kind: KindFloat, Unit: "kbps", Min: 0, Max: 1e6},
			{Name: "error", Kind: KindString, MaxLen: 512},
		},
	},
	{
		Name: "edge_access", Source: "server", Key: KeySession, TraceKey: "session_id",
		Doc: "one play request served by a CDN edge node",
		Fields: []Field{
			{Name: "http_status", Kind: KindInt, Required: true, Min: 100, Max: 599, Doc: "HTTP status of the response"},
			{Name: "cache_hit", Kind: KindBool, Doc: "the edge had the stream; false means back-to-source"},
			ms("back_to_source_ms", "time to get the stream from the origin or parent", hourMs),
			ms("first_byte_ms", "request to first response byte", hourMs),
			{Name: "bytes", Kind: KindInt, Unit: "bytes", Min: 0, Max: 1e15},
			ms("duration_ms", "how long the response lasted", 30*dayMs),
			{Name: "client_ip", Kind: KindString, MaxLen: 64},
			{Name: "path", Kind: KindString, MaxLen: 2048},
			{Name: "dropped_packets", Kind: KindInt, Min: 0, Max: 1e12, Doc: "viewer-queue drops"},
			{Name: "error", Kind: KindString, MaxLen: 512},
			// The request's CMCD (CTA-5004): the keys metrics use, typed;
			// the rest as CMCD text, which the store also shows as the map
			// column cmcd (see Derived).
			since(11, ms("cmcd_bl", "CMCD bl: the player's buffer length when it asked", dayMs)),
			since(11, Field{Name: "cmcd_br", Kind: KindInt, Unit: "kbps", Min: 0, Max: 1e9, Doc: "CMCD br: encoded bitrate of the object asked for"}),
			since(11, Field{Name: "cmcd_mtp", Kind: KindInt, Unit: "kbps", Min: 0, Max: 1e9, Doc: "CMCD mtp: throughput the player measured"}),
			since(11, ms("cmcd_d", "CMCD d: playback duration of the object asked for", dayMs)),
			since(11, Field{Name: "cmcd_rtp", Kind: KindInt, Unit: "kbps", Min: 0, Max: 1e9, Doc: "CMCD rtp: throughput the player asks the edge for"}),
			since(11, Field{Name: "cmcd_ot", Kind: KindDim, MaxLen: 16, Doc: "CMCD ot: object type (m manifest, a audio, v video, av muxed, i init, ...)"}),
			since(11, Field{Name: "cmcd_sf", Kind: KindDim, MaxLen: 16, Doc: "CMCD sf: streaming format (h HLS, d DASH, s Smooth, o other)"}),
			since(11, Field{Name: "cmcd_st", Kind: KindDim, MaxLen: 16, Doc: "CMCD st: stream type (l live, v VOD)"}),
			since(11, Field{Name: "cmcd_su", Kind: KindBool, Doc: "CMCD su: the player is starting up or seeking (buffer empty)"}),
			since(11, Field{Name: "cmcd_rest", Kind: KindString, MaxLen: 2048, Doc: "the request's other CMCD keys as CMCD text, k=v,... with flags as k=true (sid is session_id); SQL reads them as the map cmcd"}),
		},
	},
	{
		// A play's own record of each media request, from CMCD v2 event
		// mode's e=rr reports (docs/players.md): the player's timing, where
		// edge_access has the edge's.
		Name: "request", Source: "client", Key: KeySession, TraceKey: "device_id", Since: 12,
		Doc: "one media request of a play as the player timed it (CMCD e=rr)",
		Fields: []Field{
			{Name: "url", Kind: KindString, MaxLen: 2048, Doc: "the object asked for, without its query or fragment (signatures, tokens)"},
			{Name: "http_status", Kind: KindInt, Min: 0, Max: 599, Doc: "HTTP status of the response; 0 when none came"},
			since(12, ms("ttfb_ms", "request sent to first response byte", hourMs)),
			since(12, ms("ttlb_ms", "request sent to last response byte", hourMs)),
			since(11, Field{Name: "cmcd_ot", Kind: KindDim, MaxLen: 16, Doc: "CMCD ot: object type (m manifest, a audio, v video, av muxed, i init, ...)"}),
			since(11, Field{Name: "cmcd_br", Kind: KindInt, Unit: "kbps", Min: 0, Max: 1e9, Doc: "CMCD br: encoded bitrate of the object"}),
			since(11, ms("cmcd_d", "CMCD d: playback duration of the object", dayMs)),
			since(11, ms("cmcd_bl", "CMCD bl: the player's buffer length when it reported", dayMs)),
			since(11, Field{Name: "cmcd_mtp", Kind: KindInt, Unit: "kbps", Min: 0, Max: 1e9, Doc: "CMCD mtp: throughput the player measured"}),
		},
	},
}

// Topic prefixes. One topic per log_type keeps consumers independent.
const (
	TopicPrefix   = "lastmile."
	RejectedTopic = "lastmile.rejected"
	RejectedTable = "rejected"
)

// Topics returns every topic lastmile uses: one per log_type, then the
// rejected (dead-letter) topic.
func Topics() []string {
	var ts []string
	for _, n := range Names() {
		ts = append(ts, TopicOf(n))
	}
	return append(ts, RejectedTopic)
}

// TopicOf returns the Kafka topic of a log_type.
func TopicOf(logType string) string { return TopicPrefix + logType }

// TableOf returns the ClickHouse table of a log_type.
func TableOf(logType string) string { return logType }

var byName = func() map[string]*LogType {
	m := make(map[string]*LogType, len(Catalog))
	for i := range Catalog {
		m[Catalog[i].Name] = &Catalog[i]
	}
	return m
}()

// Lookup returns the catalog entry of a log_type, or nil.
func Lookup(name string) *LogType { return byName[name] }

// LookupBytes is Lookup without converting the name to a string on the heap.
func LookupBytes(name []byte) *LogType { return byName[string(name)] }

// Names returns every log_type name, sorted.
func Names() []string {
	out := make([]string, 0, len(Catalog))
	for i := range Catalog {
		out = append(out, Catalog[i].Name)
	}
	sort.Strings(out)
	return out
}

// Columns returns the full, ordered column list of a log_type's table: common
// fields, server fields, then the type-specific ones.
func (lt *LogType) Columns() []Field {
	out := make([]Field, 0, len(Common)+len(ServerFields)+len(lt.Fields))
	out = append(out, Common...)
	out = append(out, ServerFields...)
	return append(out, lt.Fields...)
}

// ClientOnlyIDs are the ids only a player or broadcaster knows: a server
// learns them from the client (a CMCD sid, a publish URL) or not at all.
var ClientOnlyIDs = []string{"session_id", "device_id", "user_id"}

// RequiredIDs lists the id fields an event of this type must carry to be
// traceable. A server log requires only the ids its server always knows
// (the stream it serves, itself), never ClientOnlyIDs: an edge's log of a
// request without a CMCD sid (ffplay, curl, a refused request) is kept, and
// joins a session whenever it has the sid.
func (lt *LogType) RequiredIDs() []string {
	if lt.Key == KeyStream {
		return []string{"stream_id"}
	}
	if lt.Source == "server" {
		return []string{"node_id"}
	}
	if lt.Source == "client" && (lt.Name == "push_start" || lt.Name == "push_stats" || lt.Name == "push_stop") {
		return []string{"session_id", "stream_id"}
	}
	return []string{"session_id", "device_id"}
}

func init() {
	// A malformed catalog is a programming error: fail at start, not at 3 a.m.
	for i := range Catalog {
		lt := &Catalog[i]
		seen := map[string]bool{}
		for _, f := range lt.Columns() {
			if seen[f.Name] {
				panic(fmt.Sprintf("schemas: log_type %s has field %s twice", lt.Name, f.Name))
			}
			seen[f.Name] = true
			if f.Max < f.Min || math.IsNaN(f.Min) {
				panic(fmt.Sprintf("schemas: %s.%s has an empty range", lt.Name, f.Name))
			}
		}
		if !seen[lt.TraceKey] {
			panic(fmt.Sprintf("schemas: %s trace key %s is not a column", lt.Name, lt.TraceKey))
		}
		lt.columns = lt.Columns()
		lt.index = make(map[string]int, len(lt.columns))
		for j, f := range lt.columns {
			lt.index[f.Name] = j
		}
		ids := lt.RequiredIDs()
		for _, id := range ids {
			lt.requiredIDs = append(lt.requiredIDs, lt.index[id])
		}
		lt.requiredIDNames = strings.Join(ids, " and ")
		lt.traceKey = lt.index[lt.TraceKey]
		lt.pos = i
		lt.wide = make([]int, len(lt.columns))
		for j, f := range lt.columns {
			lt.wide[j] = EventColumnIndex[f.Name]
		}
	}
}

// EventColumns is the column list of the events table: the common fields,
// the server fields, then every type-specific field once, in catalog order.
// A field name means the same thing in every log_type that has it (init
// checks the kinds agree), so the types share columns.
var EventColumns = func() []Field {
	out := append(append([]Field{}, Common...), ServerFields...)
	seen := map[string]int{}
	for i, f := range out {
		seen[f.Name] = i
	}
	for _, lt := range Catalog {
		for _, f := range lt.Fields {
			if j, ok := seen[f.Name]; ok {
				if out[j].Kind != f.Kind || out[j].Since != f.Since {
					panic(fmt.Sprintf("schemas: field %s is %s (since %d) in %s but %s (since %d) elsewhere", f.Name, f.Kind, f.Since, lt.Name, out[j].Kind, out[j].Since))
				}
				continue
			}
			seen[f.Name] = len(out)
			f.Required = false // required for its own log_type only
			out = append(out, f)
		}
	}
	return out
}()

// EventColumnIndex maps a column name to its position in EventColumns.
var EventColumnIndex = func() map[string]int {
	m := make(map[string]int, len(EventColumns))
	for i, f := range EventColumns {
		m[f.Name] = i
	}
	return m
}()

// WideIndex maps each of a log_type's columns (LogType.Columns order) to its
// position in EventColumns.
func (lt *LogType) WideIndex() []int { return lt.wide }

// Nullable reports whether a column is stored as Nullable: optional numbers
// and booleans, where "not reported" must stay distinct from zero. Strings
// default to "" and the server fields are always set.
func (f *Field) Nullable() bool {
	if f.Required || f.Name == "received_at" || f.Name == "sample_rate" {
		return false
	}
	switch f.Kind {
	case KindInt, KindFloat, KindBool:
		return true
	}
	return false
}
