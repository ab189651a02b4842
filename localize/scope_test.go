package localize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// world writes a synthetic run's events: two streams (live/room1,
// live/room2) each with a 480p rendition, pushed, relayed and served by
// four edge nodes (one per CDN × region), and a viewer arriving every
// second. Faults are hooks that change events inside the fault window.
type world struct {
	t0       time.Time
	dur      time.Duration
	from, to time.Duration // the fault window
	rows     []map[string]any
	n        int

	push      func(stream string, at time.Duration, ev map[string]any) // push_stats, push_stop, push_start
	server    func(ev map[string]any)                                  // relay, origin_stream, transcode, edge_access
	play      func(p *play)
	extraRows func(w *world)
}

type play struct {
	at                            time.Duration
	stream, node, cdn, region     string
	isp, version, network         string
	code                          int
	blocked                       string
	dns, connect, firstPk, decode float64
	stalls, renderStalls          int
	skip                          bool
}

var worldNodes = []struct{ node, cdn, region string }{
	{"edge-a-north-1", "cdn-a", "north"}, {"edge-a-south-1", "cdn-a", "south"},
	{"edge-b-north-1", "cdn-b", "north"}, {"edge-b-south-1", "cdn-b", "south"},
}

func newWorld() *world {
	// Recent: the events table drops rows past its TTL.
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	return &world{t0: t0, dur: 120 * time.Second, from: 50 * time.Second, to: 90 * time.Second}
}

func (w *world) in(at time.Duration) bool { return at >= w.from && at < w.to }

func (w *world) add(lt string, at time.Duration, kv map[string]any) map[string]any {
	w.n++
	ev := map[string]any{"event_id": fmt.Sprintf("ev-%06d", w.n), "log_type": lt, "app_id": "test",
		"ts": w.t0.Add(at).Format("2006-01-02 15:04:05.000"), "sample_rate": 1, "source": "server"}
	if strings.HasPrefix(lt, "push_") || strings.HasPrefix(lt, "play_") || lt == "first_frame" || lt == "stall" || lt == "render_stall" {
		ev["source"] = "client"
	}
	for k, v := range kv {
		ev[k] = v
	}
	// As the processor keys rows for traces (schemas.Catalog TraceKey).
	switch {
	case ev["source"] == "client" && !strings.HasPrefix(lt, "push_"):
		ev["trace_key"] = ev["device_id"]
	case lt == "edge_access":
		ev["trace_key"] = fmt.Sprintf("sess-%d", w.n%500)
	default:
		ev["trace_key"] = ev["stream_id"]
	}
	w.rows = append(w.rows, ev)
	return ev
}

func (w *world) build() []byte {
	for _, s := range []string{"room1", "room2"} {
		stream := "live/" + s
		ids := map[string]any{"stream_id": stream, "room_id": s}
		with := func(kv map[string]any) map[string]any {
			for k, v := range ids {
				kv[k] = v
			}
			return kv
		}
		ev := w.add("push_start", 0, with(map[string]any{"target_bitrate_kbps": 1500, "fps": 25, "rendition": "source"}))
		if w.push != nil {
			w.push(stream, 0, ev)
		}
		for at := 5 * time.Second; at < w.dur; at += 5 * time.Second {
			ev := w.add("push_stats", at, with(map[string]any{"bitrate_kbps": 1560, "fps": 25, "dropped_frames": 0, "send_buffer_ms": 0, "rendition": "source"}))
			if w.push != nil {
				w.push(stream, at, ev)
			}
			for _, ev := range []map[string]any{
				w.add("ingest_session", at, with(map[string]any{"state": "stats", "bitrate_kbps": 1560, "fps": 25, "node_id": "ingest-1"})),
				w.add("relay", at, with(map[string]any{"state": "stats", "latency_ms": 1, "retries": 0, "node_id": "ingest-1"})),
				w.add("origin_stream", at, with(map[string]any{"state": "stats", "fps": 25, "bitrate_kbps": 1560, "rendition": "source", "node_id": "origin-1"})),
				w.add("transcode", at, with(map[string]any{"status": "ok", "fps": 25, "latency_ms": 2, "rendition": "480p", "node_id": "origin-1"})),
			} {
				if w.server != nil {
					w.server(ev)
				}
			}
		}
		for at := time.Second; at < w.dur; at += 2 * time.Second {
			for _, n := range worldNodes {
				ev := w.add("edge_access", at, with(map[string]any{"node_id": n.node, "cdn": n.cdn, "region": n.region,
					"http_status": 200, "first_byte_ms": 3, "rendition": "source", "cache_hit": true}))
				if w.server != nil {
					w.server(ev)
				}
			}
		}
	}
	isps, nets := []string{"isp-a", "isp-b", "isp-c"}, []string{"wifi", "4g"}
	for i := 0; time.Duration(i)*time.Second < w.dur-10*time.Second; i++ {
		n := worldNodes[i%4]
		p := &play{at: time.Duration(i) * time.Second, stream: fmt.Sprintf("live/room%d", 1+(i/4)%2), node: n.node, cdn: n.cdn, region: n.region,
			isp: isps[i%3], version: "5.2.0", network: nets[i%2], dns: 5, connect: 5, firstPk: 20, decode: 15}
		if i%7 == 0 {
			p.version = "5.3.0"
		}
		if w.play != nil {
			w.play(p)
		}
		if !p.skip {
			w.addPlay(i, p)
		}
	}
	if w.extraRows != nil {
		w.extraRows(w)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range w.rows {
		if r["drop"] == nil {
			enc.Encode(r)
		}
	}
	return b.Bytes()
}

func (w *world) addPlay(i int, p *play) {
	ids := func(kv map[string]any) map[string]any {
		for k, v := range map[string]any{"stream_id": p.stream, "room_id": strings.TrimPrefix(p.stream, "live/"), "node_id": p.node,
			"cdn": p.cdn, "region": p.region, "isp": p.isp, "app_version": p.version, "network": p.network, "rendition": "source",
			"device_id": fmt.Sprintf("dev-%d", i), "session_id": fmt.Sprintf("s-%d", i)} {
			kv[k] = v
		}
		return kv
	}
	w.add("play_start", p.at, ids(map[string]any{}))
	if p.code == 0 {
		w.add("first_frame", p.at+time.Second, ids(map[string]any{"total_ms": p.dns + p.connect + p.firstPk + p.decode,
			"dns_ms": p.dns, "tcp_connect_ms": p.connect, "tcp_first_packet_ms": p.firstPk, "first_decode_ms": p.decode}))
	}
	for k := 0; k < p.stalls; k++ {
		w.add("stall", p.at+2*time.Second, ids(map[string]any{"duration_ms": 1000}))
	}
	for k := 0; k < p.renderStalls; k++ {
		w.add("render_stall", p.at+2*time.Second, ids(map[string]any{"duration_ms": 500}))
	}
	w.add("play_stop", p.at+8*time.Second, ids(map[string]any{"code": p.code, "first_frame_blocked": p.blocked}))
}

func loadWorld(t *testing.T, w *world) Store {
	t.Helper()
	st := storetest.Embedded(t)
	if err := st.Exec(context.Background(), "TRUNCATE TABLE "+schemas.EventsTable); err != nil {
		t.Fatal(err)
	}
	insertRows(t, st, w.build())
	return st
}

// TestScopeVerdicts decides synthetic incidents, one per verdict and per
// rival a verdict must rule out, and checks the verdict, the evidence
// that carries it and the fact that rules the rival out.
func TestScopeVerdicts(t *testing.T) {
	room2 := map[string]string{"room_id": "room2", "stream_id": "live/room2"}
	room1 := map[string]string{"room_id": "room1", "stream_id": "live/room1"}
	cases := []struct {
		name  string
		fault func(w *world)
		dims  map[string]string
		scope string
		// evidence: a fact (source: text fragment) the verdict must cite;
		// ruled: one it must rule a rival out with ("" for none); note:
		// another fact it must cite, topology rather than the fault's.
		evidence, ruled, note string
		// dims: the incident's dims after the verdict, when set.
		dims2 map[string]string
	}{{
		name: "uplink collapse is push",
		fault: func(w *world) {
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && w.in(at) && ev["log_type"] == "push_stats" {
					ev["fps"], ev["bitrate_kbps"], ev["dropped_frames"], ev["send_buffer_ms"] = 7.0, 650.0, 90, 640
				}
			}
		},
		dims: room2, scope: ScopePush, evidence: "push_stats: the uplink collapsed", ruled: "source origin_stream: not lost",
	}, {
		name: "a room's collapsed uplink is push, its stream found in the logs",
		fault: func(w *world) {
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && w.in(at) && ev["log_type"] == "push_stats" {
					ev["fps"], ev["dropped_frames"] = 5.0, 100
				}
			}
		},
		dims: map[string]string{"room_id": "room2"}, scope: ScopePush, evidence: "push_stats: of live/room2: the uplink collapsed",
	}, {
		name: "publisher cut is push",
		fault: func(w *world) {
			w.extraRows = func(w *world) {
				w.add("push_stop", w.from+time.Second, map[string]any{"stream_id": "live/room2", "room_id": "room2", "code": 2004, "reason": "disconnected"})
				w.add("push_start", w.from+3*time.Second, map[string]any{"stream_id": "live/room2", "room_id": "room2", "fps": 25})
				w.add("ingest_session", w.from+time.Second, map[string]any{"stream_id": "live/room2", "room_id": "room2", "state": "stop"})
			}
			w.server = func(ev map[string]any) { // the edges lose the stream after the publisher does
				if ev["log_type"] == "edge_access" && ev["stream_id"] == "live/room2" && w.inTS(ev) && w.afterTS(ev, w.from+5*time.Second) {
					ev["http_status"], ev["error"] = 502, "origin answered 404 Not Found"
				}
			}
		},
		dims: room2, scope: ScopePush, evidence: "push_stop: code 2004", ruled: "source edge_access: the push failure explains it",
	}, {
		// The edges' 404s for the stream are logged before the push side's
		// evidence (a loaded publisher logs its stop late): the order of
		// the edges' errors says nothing, the publisher stopped.
		name: "publisher cut logged after the edges' errors is push, not source",
		fault: func(w *world) {
			w.extraRows = func(w *world) {
				for at := w.from + 8*time.Second; at < w.to; at += 2 * time.Second {
					w.add("push_stop", at, map[string]any{"stream_id": "live/room2", "room_id": "room2", "code": 2004, "reason": "disconnected"})
				}
			}
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["stream_id"] == "live/room2" && w.inTS(ev) {
					ev["http_status"], ev["error"] = 502, "origin answered 404 Not Found"
				}
			}
		},
		dims: room2, scope: ScopePush, evidence: "push_stop: code 2004", ruled: "source edge_access: the push failure explains it",
	}, {
		// The span starts after the publisher left (the viewers' failures
		// are counted late): its push_stop and the pause of its stats lie
		// before the span's margin, in the look-back.
		name: "publisher cut before a span that starts late is push",
		fault: func(w *world) {
			cut := w.from - 20*time.Second
			w.extraRows = func(w *world) {
				w.add("push_stop", cut, map[string]any{"stream_id": "live/room2", "room_id": "room2", "code": 2004, "reason": "disconnected"})
			}
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && at >= cut && at < w.from+5*time.Second && ev["log_type"] == "push_stats" {
					ev["drop"] = true
				}
			}
			w.server = func(ev map[string]any) {
				at := w.tsOf(ev)
				if ev["stream_id"] == "live/room2" && at >= cut && at < w.from+5*time.Second {
					switch ev["log_type"] {
					case "edge_access":
						ev["http_status"], ev["error"] = 502, "origin answered 404 Not Found"
					case "ingest_session":
						ev["drop"] = true
					}
				}
			}
		},
		dims: room2, scope: ScopePush, evidence: "push_stop: code 2004",
	}, {
		name: "a publisher whose reports pause, without a push_stop, is push",
		fault: func(w *world) {
			gone := func(at time.Duration) bool { return at >= w.from && at < w.from+25*time.Second }
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && gone(at) && ev["log_type"] == "push_stats" {
					ev["drop"] = true
				}
			}
			w.server = func(ev map[string]any) {
				if ev["stream_id"] == "live/room2" && gone(w.tsOf(ev)) {
					switch ev["log_type"] {
					case "edge_access":
						ev["http_status"], ev["error"] = 502, "origin answered 404 Not Found"
					case "ingest_session":
						ev["drop"] = true
					}
				}
			}
		},
		dims: room2, scope: ScopePush, evidence: "push_stats: stopped reporting", ruled: "source edge_access: the push failure explains it",
	}, {
		// A loaded publisher's reports come late; the ingest still sees
		// the stream: one reporter's pause is not the publisher gone.
		name: "back-to-source errors while only push_stats pause is source",
		fault: func(w *world) {
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && at >= w.from+5*time.Second && at < w.from+20*time.Second && ev["log_type"] == "push_stats" {
					ev["drop"] = true
				}
			}
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["stream_id"] == "live/room2" && w.inTS(ev) {
					ev["http_status"], ev["error"], ev["cache_hit"] = 502, "origin answered 503", false
				}
			}
		},
		dims: map[string]string{"stream_id": "live/room2"}, scope: ScopeSource, evidence: "edge_access: on 4 of its 4 nodes",
	}, {
		// Rows lost here and there: each reporter pauses, at different
		// times.
		name: "back-to-source errors while the reporters pause at different times is source",
		fault: func(w *world) {
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && at >= w.from && at < w.from+15*time.Second && ev["log_type"] == "push_stats" {
					ev["drop"] = true
				}
			}
			w.server = func(ev map[string]any) {
				if ev["stream_id"] != "live/room2" || !w.inTS(ev) {
					return
				}
				switch at := w.tsOf(ev); ev["log_type"] {
				case "edge_access":
					ev["http_status"], ev["error"], ev["cache_hit"] = 502, "origin answered 503", false
				case "ingest_session":
					if at >= w.from+20*time.Second && at < w.from+35*time.Second {
						ev["drop"] = true
					}
				}
			}
		},
		dims: map[string]string{"stream_id": "live/room2"}, scope: ScopeSource, evidence: "edge_access: on 4 of its 4 nodes",
	}, {
		name: "origin lost with a clean uplink is source, not push",
		fault: func(w *world) {
			w.extraRows = func(w *world) {
				w.add("origin_stream", w.from, map[string]any{"stream_id": "live/room1", "room_id": "room1", "rendition": "source", "state": "lost", "error": "origin lost the stream"})
				// The publisher is refused afterwards: a push_stop error
				// that the source caused.
				w.add("push_stop", w.from+4*time.Second, map[string]any{"stream_id": "live/room1", "room_id": "room1", "code": 2003, "reason": "publish refused"})
			}
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "relay" && ev["stream_id"] == "live/room1" && w.inTS(ev) {
					ev["state"], ev["error"], ev["retries"] = "error", "publish refused: room1 is lost", 3
				}
			}
		},
		dims: room1, scope: ScopeSource, evidence: "origin_stream: lost", ruled: "push push_stop: the source failed first",
	}, {
		name: "back-to-source errors for one stream on every node is source",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["stream_id"] == "live/room2" && w.inTS(ev) {
					ev["http_status"], ev["error"], ev["cache_hit"] = 502, "origin answered 503", false
				}
			}
		},
		dims: map[string]string{"stream_id": "live/room2"}, scope: ScopeSource, evidence: "edge_access: on 4 of its 4 nodes", ruled: "push push_stats: 0 dropped frames",
	}, {
		// The span runs into the next fault: the other stream's errors
		// come after this one's, and over the span they are more.
		name: "one stream's back-to-source errors, then another's later in the span, is source",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] != "edge_access" || !w.inTS(ev) {
					return
				}
				at := w.tsOf(ev)
				if (ev["stream_id"] == "live/room2" && at < w.from+12*time.Second) || (ev["stream_id"] == "live/room1" && at >= w.from+15*time.Second) {
					ev["http_status"], ev["error"], ev["cache_hit"] = 502, "origin answered 503", false
				}
			}
		},
		dims: map[string]string{"stream_id": "live/room2"}, scope: ScopeSource, evidence: "edge_access: on 4 of its 4 nodes",
	}, {
		// The viewers' failures are counted late: the span starts as the
		// back-to-source errors end, before its margin.
		name: "back-to-source errors before a span that starts late is source",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if at := w.tsOf(ev); ev["log_type"] == "edge_access" && ev["stream_id"] == "live/room2" && at >= w.from-28*time.Second && at < w.from-6*time.Second {
					ev["http_status"], ev["error"], ev["cache_hit"] = 502, "origin answered 503", false
				}
			}
		},
		dims: map[string]string{"stream_id": "live/room2"}, scope: ScopeSource, evidence: "edge_access: on 4 of its 4 nodes",
	}, {
		name: "a lagging rendition is transcode",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "transcode" && ev["stream_id"] == "live/room1" && w.inTS(ev) {
					ev["status"], ev["fps"], ev["latency_ms"] = "lagging", 6.0, 4000
				}
			}
		},
		dims: map[string]string{"room_id": "room1", "stream_id": "live/room1", "rendition": "480p"}, scope: ScopeTranscode,
		evidence: "transcode: lagging or failed", ruled: "push push_stats: 25.0 fps",
	}, {
		name: "errors on one node is edge",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-b-south-1" && w.inTS(ev) {
					ev["http_status"], ev["error"] = 503, "overloaded"
				}
			}
		},
		dims: map[string]string{"node_id": "edge-b-south-1"}, scope: ScopeEdge, evidence: "edge_access: requests failed (503 overloaded)", ruled: "push cohort: other viewers of the same streams",
	}, {
		name: "a node that stops answering is edge",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-a-south-1" && w.inTS(ev) {
					ev["drop"] = true // no access log: connections refused
				}
			}
			w.play = func(p *play) {
				if p.node == "edge-a-south-1" && w.in(p.at) {
					p.code, p.blocked = 1002, "tcp_connect"
				}
			}
		},
		dims: map[string]string{"node_id": "edge-a-south-1"}, scope: ScopeEdge, evidence: "edge_access: it stopped answering",
	}, {
		name: "a slow CDN region with one node is edge, said ambiguous",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["cdn"] == "cdn-b" && ev["region"] == "north" && w.inTS(ev) {
					ev["first_byte_ms"] = 1500
				}
			}
		},
		dims: map[string]string{"cdn": "cdn-b", "region": "north"}, scope: ScopeEdge, evidence: "edge_access: 1000 ms or more for the first byte",
		note: "edge_access: cannot be told apart",
	}, {
		name: "a region whose slow node is diluted by a healthy one is edge, naming the node",
		fault: func(w *world) {
			k := 0
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-b-south-1" && w.inTS(ev) {
					if k++; k%6 == 0 { // 1 request in 6: under EdgeErrorShare over the region's two nodes
						ev["first_byte_ms"] = 2500
					}
				}
			}
		},
		dims: map[string]string{"region": "south"}, scope: ScopeEdge, evidence: "edge_access: edge-b-south-1 (of south)",
		dims2: map[string]string{"region": "south", "node_id": "edge-b-south-1", "cdn": "cdn-b"},
	}, {
		name: "a CDN region's one node with errors is edge, naming the node in its CDN region",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-a-south-1" && w.inTS(ev) {
					ev["http_status"], ev["error"] = 503, "overloaded"
				}
			}
		},
		dims: map[string]string{"cdn": "cdn-a", "region": "south"}, scope: ScopeEdge, evidence: "edge_access: only edge-a-south-1's edge logs",
		dims2: map[string]string{"region": "south", "node_id": "edge-a-south-1", "cdn": "cdn-a"},
	}, {
		// Refused connections leave no access log; its share of the
		// requests falls by half only (viewers already connected), so
		// the edge logs do not name it: its viewers' failed starts do.
		name: "a CDN region's one node refusing connections is edge, named by its viewers' failed connects",
		fault: func(w *world) {
			k := 0
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-a-south-1" && w.inTS(ev) {
					if k++; k%2 == 0 {
						ev["drop"] = true
					}
				}
			}
			w.play = func(p *play) {
				if p.node == "edge-a-south-1" && w.in(p.at) {
					p.code, p.blocked = 1002, "tcp_connect"
				}
			}
		},
		dims: map[string]string{"cdn": "cdn-a", "region": "south"}, scope: ScopeEdge, evidence: "play_stop: were all on edge-a-south-1",
		dims2: map[string]string{"region": "south", "node_id": "edge-a-south-1", "cdn": "cdn-a"},
	}, {
		name: "a CDN whose every node fails is edge, naming no node",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["cdn"] == "cdn-a" && w.inTS(ev) {
					ev["http_status"], ev["error"] = 503, "overloaded"
				}
			}
		},
		dims: map[string]string{"cdn": "cdn-a"}, scope: ScopeEdge, evidence: "edge_access: on cdn-a",
		dims2: map[string]string{"cdn": "cdn-a"},
	}, {
		name: "DNS failures of one ISP on every node is client",
		fault: func(w *world) {
			w.play = func(p *play) {
				if p.isp == "isp-c" && w.in(p.at) {
					p.code, p.blocked = 1001, "dns"
				}
			}
		},
		dims: map[string]string{"isp": "isp-c"}, scope: ScopeClient, evidence: "play_stop: blocked at dns", ruled: "edge cohort: 4 nodes of 2 CDNs",
	}, {
		name: "an old version's render stalls is client, not rollout",
		fault: func(w *world) {
			w.play = func(p *play) {
				if p.version == "5.3.0" && w.in(p.at) {
					p.renderStalls = 3
				}
			}
		},
		dims: map[string]string{"app_version": "5.3.0"}, scope: ScopeClient, evidence: "render_stall: per play", ruled: "rollout play_start: not a new version",
	}, {
		name: "a new version ramping up is rollout",
		fault: func(w *world) {
			w.play = func(p *play) {
				if w.in(p.at) && int(p.at/time.Second)%4 < int((p.at-w.from)/(10*time.Second)) {
					p.version, p.renderStalls = "6.0.0", 3
				}
			}
		},
		dims: map[string]string{"app_version": "6.0.0"}, scope: ScopeRollout, evidence: "play_start: a new version", ruled: "client render_stall: the rollout failure explains it",
	}, {
		// Under 5% of the plays before the span, but steady: a small
		// prior share alone does not make a version new.
		name: "a steady rare version's render stalls is client, not rollout",
		fault: func(w *world) {
			w.play = func(p *play) {
				if int(p.at/time.Second)%30 == 11 {
					p.version = "5.0.9"
					if w.in(p.at) {
						p.renderStalls = 3
					}
				}
			}
		},
		dims: map[string]string{"app_version": "5.0.9"}, scope: ScopeClient, evidence: "render_stall: per play", ruled: "rollout play_start: not a new version",
	}, {
		// The span starts once the ramp is over (its viewers' failures
		// counted late): the version already had a large share before it.
		name: "a rollout whose span starts after its ramp is rollout",
		fault: func(w *world) {
			w.play = func(p *play) {
				if p.at >= w.from-30*time.Second && p.at < w.from+10*time.Second && int(p.at/time.Second)%2 == 0 {
					p.version, p.renderStalls = "6.0.0", 3
				}
			}
		},
		dims: map[string]string{"app_version": "6.0.0"}, scope: ScopeRollout, evidence: "play_start: a new version",
	}, {
		name: "a rendition on every stream is transcode",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "transcode" && w.inTS(ev) {
					ev["status"], ev["error"] = "error", "transcode worker failed"
				}
			}
		},
		dims: map[string]string{"rendition": "480p"}, scope: ScopeTranscode, evidence: "transcode: of live/room2 480p",
	}, {
		// Cohorts cut across scopes: a stream on one node, the logs decide.
		name: "a stream on one node failing there only is edge, not push",
		fault: func(w *world) {
			w.server = func(ev map[string]any) {
				if ev["log_type"] == "edge_access" && ev["node_id"] == "edge-b-south-1" && ev["stream_id"] == "live/room2" && w.inTS(ev) {
					ev["http_status"], ev["error"] = 502, "back to source: upstream reset"
				}
			}
		},
		dims:  map[string]string{"stream_id": "live/room2", "node_id": "edge-b-south-1"},
		scope: ScopeEdge, evidence: "edge_access: requests failed", ruled: "push push_stats: 0 dropped frames",
	}, {
		name: "a stream on one CDN with its uplink collapsed is push, not edge",
		fault: func(w *world) {
			w.push = func(s string, at time.Duration, ev map[string]any) {
				if s == "live/room2" && w.in(at) && ev["log_type"] == "push_stats" {
					ev["fps"], ev["dropped_frames"] = 6.0, 120
				}
			}
		},
		dims:  map[string]string{"stream_id": "live/room2", "cdn": "cdn-a"},
		scope: ScopePush, evidence: "push_stats: the uplink collapsed", ruled: "edge edge_access: 0.0% of",
	}, {
		name: "a cohort of unknown dimensions is unknown",
		dims: map[string]string{"line": "backup"}, scope: ScopeUnknown, evidence: "cohort: no dimension a verdict is known for",
	}, {
		name: "everyone is system",
		dims: map[string]string{}, scope: ScopeSystem, evidence: "cohort: every viewer",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			if tc.fault != nil {
				tc.fault(w)
			}
			st := loadWorld(t, w)
			inc := &Incident{From: w.t0.Add(w.from), To: w.t0.Add(w.to), Dims: maps.Clone(tc.dims), Confidence: 1}
			if err := DefaultScopePlan.Decide(context.Background(), st, inc); err != nil {
				t.Fatal(err)
			}
			logIncident(t, inc)
			if inc.Scope != tc.scope {
				t.Fatalf("scope %s, want %s", inc.Scope, tc.scope)
			}
			if !cites(inc.Evidence, tc.scope, tc.evidence) {
				t.Errorf("evidence does not cite %q", tc.evidence)
			}
			if tc.dims2 != nil && !maps.Equal(inc.Dims, tc.dims2) {
				t.Errorf("dims %v, want %v", inc.Dims, tc.dims2)
			}
			if tc.note != "" && !cites(inc.Evidence, tc.scope, tc.note) {
				t.Errorf("evidence does not cite %q", tc.note)
			}
			if tc.ruled != "" {
				scope, rest, _ := strings.Cut(tc.ruled, " ")
				if !cites(inc.RuledOut, scope, rest) {
					t.Errorf("ruled out does not cite %q", tc.ruled)
				}
			}
		})
		if tc.fault == nil {
			continue
		}
		// The same incident without the fault in the logs: the evidence
		// must come from the logs, not from the cohort.
		t.Run(tc.name+"/control", func(t *testing.T) {
			w := newWorld()
			st := loadWorld(t, w)
			inc := &Incident{From: w.t0.Add(w.from), To: w.t0.Add(w.to), Dims: maps.Clone(tc.dims), Confidence: 1}
			if err := DefaultScopePlan.Decide(context.Background(), st, inc); err != nil {
				t.Fatal(err)
			}
			if cites(inc.Evidence, tc.scope, tc.evidence) {
				logIncident(t, inc)
				t.Errorf("evidence cites %q with no fault in the logs", tc.evidence)
			}
			if inc.Confidence >= 1 {
				t.Errorf("confidence %.2f with no server evidence", inc.Confidence)
			}
		})
	}
}

// cites says a list has a fact of scope whose source is want's "source:"
// prefix and whose text has the rest.
func cites(list []Evidence, scope, want string) bool {
	src, text, _ := strings.Cut(want, ": ")
	for _, e := range list {
		if e.Scope == scope && e.Source == src && strings.Contains(e.Text, strings.TrimSpace(text)) {
			return true
		}
	}
	return false
}

func logIncident(t *testing.T, inc *Incident) {
	t.Helper()
	t.Logf("%v → %s (confidence %.2f)", inc.Dims, inc.Scope, inc.Confidence)
	for _, e := range inc.Evidence {
		t.Logf("  + [%s %s] %s", e.Scope, e.Source, e.Text)
	}
	for _, e := range inc.RuledOut {
		t.Logf("  - [%s %s] %s", e.Scope, e.Source, e.Text)
	}
}

func (w *world) tsOf(ev map[string]any) time.Duration {
	ts, _ := time.Parse("2006-01-02 15:04:05.000", ev["ts"].(string))
	return ts.Sub(w.t0)
}

func (w *world) inTS(ev map[string]any) bool { return w.in(w.tsOf(ev)) }

func (w *world) afterTS(ev map[string]any, at time.Duration) bool { return w.tsOf(ev) >= at }

// BenchmarkScopeDecide decides a stream incident's scope over about 1M
// events: a 30-minute synthetic run whose rows are copied 50 times (same
// times, new ids), the live localizer's window size.
func BenchmarkScopeDecide(b *testing.B) {
	w := newWorld()
	w.t0 = w.t0.Add(-30 * time.Minute)
	w.dur, w.from, w.to = 30*time.Minute, 20*time.Minute, 25*time.Minute
	st := storetest.Embedded(b)
	ctx := context.Background()
	if err := st.Exec(ctx, "TRUNCATE TABLE "+schemas.EventsTable); err != nil {
		b.Fatal(err)
	}
	insertRows(b, st, w.build())
	if err := st.Exec(ctx, "INSERT INTO "+schemas.EventsTable+" SELECT e.* REPLACE (concat(e.event_id, '-', toString(number)) AS event_id) FROM "+
		schemas.EventsTable+" AS e, numbers(49) AS k"); err != nil {
		b.Fatal(err)
	}
	out, err := st.QueryJSON(ctx, "SELECT count() AS n FROM "+schemas.EventsTable)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("events: %s", bytes.TrimSpace(out))
	for _, dims := range []map[string]string{{"stream_id": "live/room2"}, {"node_id": "edge-a-north-1"}, {"app_version": "5.3.0"}} {
		b.Run(strings.Join(keys(setOf(dims)), ","), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				inc := &Incident{From: w.t0.Add(w.from), To: w.t0.Add(w.to), Dims: map[string]string{}}
				for k, v := range dims {
					inc.Dims[k] = v
				}
				if err := DefaultScopePlan.Decide(ctx, st, inc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func setOf(m map[string]string) map[string]bool {
	s := map[string]bool{}
	for k := range m {
		s[k] = true
	}
	return s
}
