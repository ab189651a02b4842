package localize

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// checkPush looks at each cohort stream's uplink: push_stats collapsing
// (frame rate, bitrate, dropped frames, send buffer), push_stats stopping,
// push_stop with an error code, the publisher reconnecting.
func (sp ScopePlan) checkPush(c *cohort, f *facts) finding {
	var fd finding
	for _, s := range c.streams {
		ps, start := f.stream(s, "", "push_stats"), f.stream(s, "", "push_start")
		stop, ingest := f.stream(s, "", "push_stop"), f.stream(s, "", "ingest_session")
		nominal := ps.FPSBefore
		if nominal == 0 {
			nominal = start.FPSMax
		}
		target := start.Target
		switch {
		case ps.N > 0:
			var bad []string
			if nominal > 0 && ps.FPS < sp.PushFPSRatio*nominal {
				bad = append(bad, fmt.Sprintf("%.1f fps against %.0f", ps.FPS, nominal))
			}
			if target > 0 && ps.Kbps < sp.PushBitrateRatio*target {
				bad = append(bad, fmt.Sprintf("%.0f kbps against a %.0f kbps target", ps.Kbps, target))
			}
			if ps.Dropped >= sp.PushDroppedFrames {
				bad = append(bad, fmt.Sprintf("%.0f dropped frames", ps.Dropped))
			}
			if ps.SendBuf >= sp.PushSendBufferMs {
				bad = append(bad, fmt.Sprintf("send buffer up to %.0f ms", ps.SendBuf))
			}
			text := fmt.Sprintf("push_stats of %s: %.0f reports, %.0f kbps, %.1f fps, %.0f dropped frames, send buffer up to %.0f ms",
				s, ps.N, ps.Kbps, ps.FPS, ps.Dropped, ps.SendBuf)
			if len(bad) > 0 {
				text = fmt.Sprintf("push_stats of %s: the uplink collapsed: %s (%.0f reports)", s, strings.Join(bad, ", "), ps.N)
				fd.sustained = true
				fd.support = append(fd.support, Evidence{Scope: ScopePush, Source: "push_stats", Text: text})
			} else {
				fd.clean = append(fd.clean, Evidence{Scope: ScopePush, Source: "push_stats", Text: text})
			}
		case ps.NBefore > 0:
			fd.support = append(fd.support, Evidence{Scope: ScopePush, Source: "push_stats",
				Text: fmt.Sprintf("push_stats of %s stopped: none in the span, %.0f before it", s, ps.NBefore)})
		}
		if at, gap, every := sp.reportGap(ps, ingest); at > 0 {
			fd.first = earliest(fd.first, at)
			fd.support = append(fd.support, Evidence{Scope: ScopePush, Source: "push_stats",
				Text: fmt.Sprintf("the publisher of %s stopped reporting: no push_stats or ingest stats for %.0f s from %s (every %.0f s otherwise)",
					s, gap.Seconds(), time.UnixMilli(at).UTC().Format("15:04:05"), every.Seconds())})
		}
		if stop.Bad > 0 {
			fd.first = earliest(fd.first, stop.FirstBad)
			fd.support = append(fd.support, Evidence{Scope: ScopePush, Source: "push_stop",
				Text: fmt.Sprintf("push_stop of %s: %.0f stops with code %.0f (%s)", s, stop.Bad, stop.Code, stop.Err)})
		}
		if start.Starts > 0 && (stop.Stops > 0 || ingest.Stops > 0) {
			fd.support = append(fd.support, Evidence{Scope: ScopePush, Source: "push_start",
				Text: fmt.Sprintf("the publisher of %s reconnected: %.0f push_start, %.0f ingest_session stops in the span", s, start.Starts, ingest.Stops)})
		}
	}
	return fd
}

// reportGap finds when a stream's publisher was gone: each report series
// (the publisher's push_stats, the ingest's session stats) that has
// reports pauses at its longest, and the pauses overlap for PushGapFactor
// × the series' usual (median) interval: two reporters agreeing, so that
// a loaded process's late report, or a lost row, is not a stop. at is
// when the overlap began plus that interval (the first report missed, Unix
// ms), 0 for no pause.
func (sp ScopePlan) reportGap(rows ...streamRow) (at int64, gap, every time.Duration) {
	var lo, hi, usual int64
	seen := 0
	for _, r := range rows {
		ts := r.Times
		if len(ts) < 3 {
			continue
		}
		d := make([]int64, len(ts)-1)
		for i := range d {
			d[i] = ts[i+1] - ts[i]
		}
		med := slices.Clone(d)
		slices.Sort(med)
		i := slices.Index(d, slices.Max(d))
		if seen == 0 {
			lo, hi = ts[i], ts[i+1]
		} else {
			lo, hi = max(lo, ts[i]), min(hi, ts[i+1])
		}
		usual = max(usual, med[len(med)/2])
		seen++
	}
	if seen == 0 || usual <= 0 || float64(hi-lo) < sp.PushGapFactor*float64(usual) {
		return 0, 0, 0
	}
	return lo + usual, time.Duration(hi-lo) * time.Millisecond, time.Duration(usual) * time.Millisecond
}

// checkSource looks past the uplink: origin_stream lost, relay errors
// and retries, and edges failing back to source for the cohort's streams
// on several nodes while other streams are served.
func (sp ScopePlan) checkSource(c *cohort, f *facts) finding {
	var fd finding
	for _, s := range c.streams {
		origin, relay := f.stream(s, "source", "origin_stream"), f.stream(s, "", "relay")
		if origin.Bad > 0 {
			fd.first = earliest(fd.first, origin.FirstBad)
			fd.support = append(fd.support, Evidence{Scope: ScopeSource, Source: "origin_stream",
				Text: fmt.Sprintf("origin_stream of %s: lost %.0f times (%s)", s, origin.Bad, origin.Err)})
		} else if origin.N > 0 {
			fd.clean = append(fd.clean, Evidence{Scope: ScopeSource, Source: "origin_stream",
				Text: fmt.Sprintf("origin_stream of %s: %.0f reports, not lost, %.1f fps, %.0f kbps", s, origin.N, origin.FPS, origin.Kbps)})
		}
		if relay.Bad > 0 {
			fd.first = earliest(fd.first, relay.FirstBad)
			fd.support = append(fd.support, Evidence{Scope: ScopeSource, Source: "relay",
				Text: fmt.Sprintf("relay of %s to the origin: %.0f errors, %.0f redials (%s)", s, relay.Bad, relay.Retries, relay.Err)})
		} else if relay.N > 0 {
			fd.clean = append(fd.clean, Evidence{Scope: ScopeSource, Source: "relay",
				Text: fmt.Sprintf("relay of %s: %.0f reports, no error", s, relay.N)})
		}
		// From the look-back on, as the push side's evidence: a span that
		// starts late still sees the stream's back-to-source errors.
		in, err, nodes := f.edgeSum(func(e edgeRow) bool { return e.Stream == s })
		in.n, in.errs = in.n+in.nBack, in.errs+in.errsBack
		// Other streams in the same buckets as its errors: another
		// stream failing later in the span is another fault.
		failed := map[int64]bool{}
		for _, e := range f.edge {
			if e.Stream == s && e.Errs+e.ErrsBack > 0 {
				failed[e.B] = true
			}
		}
		out, _, _ := f.edgeSum(func(e edgeRow) bool { return e.Stream != s && e.Stream != "" && failed[e.B] })
		out.n, out.errs = out.n+out.nBack, out.errs+out.errsBack
		failing := sp.failingNodes(f, s)
		text := fmt.Sprintf("edge_access for %s: %.1f%% of %.0f requests failed, on %d of its %d nodes at least %.0f%%; other streams %.1f%% of %.0f meanwhile",
			s, pct(in.errs, in.n), in.n, failing, len(nodes), 100*sp.EdgeErrorShare, pct(out.errs, out.n), out.n)
		// Failing on most nodes serving it, and worse than the other
		// streams meanwhile (another stream may be failing at the same
		// time).
		if in.n >= sp.EdgeMinRequests && failing >= 2 && 2*failing >= len(nodes) && share(in.errs, in.n) > share(out.errs, out.n) {
			if err != "" {
				text += " (" + err + ")"
			}
			fd.support = append(fd.support, Evidence{Scope: ScopeSource, Source: "edge_access", Text: text})
		} else if in.n > 0 {
			fd.clean = append(fd.clean, Evidence{Scope: ScopeSource, Source: "edge_access", Text: text})
		}
	}
	return fd
}

// failingNodes counts the nodes whose requests for a stream failed at
// EdgeErrorShare or more (with EdgeMinRequests at least).
func (sp ScopePlan) failingNodes(f *facts, stream string) int {
	n, errs := map[string]float64{}, map[string]float64{}
	for _, e := range f.edge {
		if e.Stream == stream {
			n[e.Node] += e.N + e.NBack
			errs[e.Node] += e.Errs + e.ErrsBack
		}
	}
	count := 0
	for node, x := range n {
		if x >= sp.EdgeMinRequests && errs[node] >= sp.EdgeErrorShare*x {
			count++
		}
	}
	return count
}

// earliest is the earlier of two Unix ms times, 0 meaning none.
func earliest(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// worse says a share is abnormal: at least min, and EdgeRatio × the
// peers' share.
func (sp ScopePlan) worse(x, peers, min float64) bool {
	return x >= min && x >= sp.EdgeRatio*peers
}

// checkTranscode looks at the cohort rendition's worker: status lagging
// or error, frame rate under the source's, capture-to-output latency.
func (sp ScopePlan) checkTranscode(c *cohort, f *facts) finding {
	var fd finding
	for _, s := range c.renditionStreams(f) {
		tr, origin := f.stream(s, c.rendition, "transcode"), f.stream(s, "source", "origin_stream")
		if tr.N == 0 && tr.NBefore == 0 {
			continue
		}
		if bad, _ := sp.transcodeBad(tr, origin); len(bad) > 0 {
			fd.support = append(fd.support, Evidence{Scope: ScopeTranscode, Source: "transcode",
				Text: fmt.Sprintf("transcode of %s %s: %s", s, c.rendition, strings.Join(bad, ", "))})
			continue
		}
		fd.clean = append(fd.clean, Evidence{Scope: ScopeTranscode, Source: "transcode",
			Text: fmt.Sprintf("transcode of %s %s: %.0f reports, ok, %.1f fps (source %.1f), latency up to %.0f ms", s, c.rendition, tr.N, tr.FPS, origin.FPS, tr.Latency)})
	}
	return fd
}

// renditionStreams are the streams whose cohort rendition the checks
// read: the cohort's, or every stream transcoding it when it names none.
func (c *cohort) renditionStreams(f *facts) []string {
	if len(c.streams) > 0 {
		return c.streams
	}
	seen := map[string]bool{}
	for _, r := range f.streams {
		if r.LogType == "transcode" && r.Rendition == c.rendition {
			seen[r.Stream] = true
		}
	}
	return keys(seen)
}

// transcodeBad says what is wrong with a rendition's worker (tr) against
// its source at the origin, and whether it failed outright (errors,
// stopped, silent) rather than fell behind.
func (sp ScopePlan) transcodeBad(tr, origin streamRow) (bad []string, failed bool) {
	if tr.Bad > 0 {
		bad = append(bad, fmt.Sprintf("%.0f reports lagging or failed", tr.Bad))
		if tr.Err != "" {
			bad[len(bad)-1] += " (" + tr.Err + ")"
		}
	}
	if tr.N > 0 && origin.FPS > 0 && tr.FPS > 0 && tr.FPS < sp.TranscodeFPSRatio*origin.FPS {
		bad = append(bad, fmt.Sprintf("%.1f fps against %.1f at the source", tr.FPS, origin.FPS))
	}
	if tr.Latency >= sp.TranscodeLatencyMs {
		bad = append(bad, fmt.Sprintf("latency up to %.0f ms", tr.Latency))
	}
	if tr.N == 0 {
		bad = append(bad, fmt.Sprintf("no report in the span, %.0f before it", tr.NBefore))
	}
	return bad, len(bad) > 0 && (tr.Err != "" || tr.Stops > 0 || tr.N == 0)
}

// TranscodeStreams names the streams a transcode verdict on a rendition
// across streams (a cohort naming a rendition and no stream) is about:
// those whose worker of that rendition failed or fell behind. It answers
// none (the rendition-wide cohort stands) when the verdict is another, the
// cohort names a stream, or every stream's worker failed the same way
// (one failure of the rendition, not of a stream's worker).
func (sp ScopePlan) TranscodeStreams(ctx context.Context, st Store, inc *Incident) ([]string, error) {
	c := newCohort(inc.Dims)
	if inc.Scope != ScopeTranscode || c.rendition == "" || c.hasStream() {
		return nil, nil
	}
	w := sp.window(inc)
	rows, err := streamFacts(ctx, st, w, c)
	if err != nil {
		return nil, err
	}
	f := &facts{streams: rows}
	all := c.renditionStreams(f)
	var hit []string
	kinds := map[bool]bool{}
	for _, s := range all {
		tr := f.stream(s, c.rendition, "transcode")
		if tr.N == 0 && tr.NBefore == 0 {
			continue
		}
		if bad, failed := sp.transcodeBad(tr, f.stream(s, "source", "origin_stream")); len(bad) > 0 {
			hit = append(hit, s)
			kinds[failed] = true
		}
	}
	if len(hit) == len(all) && len(kinds) == 1 {
		return nil, nil
	}
	return hit, nil
}

// checkEdge compares the cohort's edge_access (its node, or CDN × region,
// or CDN; and its streams if it names any) with the other nodes serving
// the same streams: errors, slow first bytes, requests stopping; and the
// cohort's failed starts blocked connecting to the edge.
func (sp ScopePlan) checkEdge(c *cohort, f *facts) finding {
	var fd finding
	ofStreams := func(e edgeRow) bool { return e.Stream != "" && c.streamOf(e.Stream) }
	match := func(e edgeRow) bool {
		return (c.node == "" || e.Node == c.node) && (c.cdn == "" || e.CDN == c.cdn) && (c.region == "" || e.Region == c.region)
	}
	in := func(e edgeRow) bool { return match(e) && ofStreams(e) }
	out := func(e edgeRow) bool { return !match(e) && ofStreams(e) }
	where := c.edgeName()
	_, _, nodes := f.edgeSum(in)
	fd.support = sp.edgeCompare(f, where, in, out)
	if c.node == "" {
		// A CDN or region whose fault sits on one of its nodes: each node
		// against the nodes outside the cohort. When the edge logs
		// implicate one node only, the cohort is that node's viewers.
		var hit []string
		var first []Evidence
		for _, n := range keys(nodes) {
			if ev := sp.edgeCompare(f, n+" (of "+where+")", func(e edgeRow) bool { return e.Node == n && ofStreams(e) }, out); len(ev) > 0 {
				hit = append(hit, n)
				if first == nil {
					first = ev
				}
			}
		}
		if len(fd.support) == 0 {
			fd.support = first
		}
		if len(hit) == 1 {
			fd.node = hit[0]
			fd.support = append(fd.support, Evidence{Scope: ScopeEdge, Source: "edge_access",
				Text: fmt.Sprintf("of the %d nodes serving %s, only %s's edge logs show the failure: the cohort is its viewers", len(nodes), where, hit[0])})
		}
	}
	blocked := sp.blockedAt(f, ScopeEdge, edgePhases...)
	fd.support = append(fd.support, blocked...)
	if on := keys(f.failedAt(edgePhases)); c.node == "" && fd.node == "" && len(blocked) > 0 && len(on) == 1 {
		// A node that refuses connections logs nothing; its viewers'
		// failed starts name it.
		fd.node = on[0]
		fd.support = append(fd.support, Evidence{Scope: ScopeEdge, Source: "play_stop",
			Text: fmt.Sprintf("the cohort's starts that failed reaching the edge were all on %s: the cohort is its viewers", on[0])})
	}
	if e, ok := sp.moreOften(f, "stall", func(p playRow) bool { return c.streamOf(p.Stream) }); ok {
		fd.support = append(fd.support, Evidence{Scope: ScopeEdge, Source: "stall", Text: e + " on the same streams"})
	}
	if len(fd.support) == 0 {
		a, _, _ := f.edgeSum(in)
		b, _, _ := f.edgeSum(out)
		fd.clean = append(fd.clean, Evidence{Scope: ScopeEdge, Source: "edge_access",
			Text: fmt.Sprintf("edge_access on %s: %.1f%% of %.0f requests failed, %.1f%% slow first bytes (other nodes %.1f%%, %.1f%%)",
				where, pct(a.errs, a.n), a.n, pct(a.slow, a.n), pct(b.errs, b.n), pct(b.slow, b.n))})
	}
	fd.ambiguous = c.edgeAmbiguity(f, nodes)
	return fd
}

// edgePhases are the first-frame phases spent reaching the edge.
var edgePhases = []string{"tcp_connect", "tcp_first_packet", "video_first_packet"}

// failedAt is the set of nodes on which the cohort's starts failed
// blocked in one of phases.
func (f *facts) failedAt(phases []string) map[string]bool {
	on := map[string]bool{}
	for _, p := range f.plays {
		if p.InCohort == 1 && p.LogType == "play_stop" && p.Failed > 0 && p.Node != "" && slices.Contains(phases, p.Blocked) {
			on[p.Node] = true
		}
	}
	return on
}

// edgeCompare compares the edge_access rows in selects with those out
// selects: errors, slow first bytes, and in's share of the requests
// falling in the span.
func (sp ScopePlan) edgeCompare(f *facts, where string, in, out func(edgeRow) bool) []Evidence {
	var ev []Evidence
	a, err, _ := f.edgeSum(in)
	b, _, peers := f.edgeSum(out)
	if a.n >= sp.EdgeMinRequests && sp.worse(share(a.errs, a.n), share(b.errs, b.n), sp.EdgeErrorShare) {
		ev = append(ev, Evidence{Scope: ScopeEdge, Source: "edge_access",
			Text: fmt.Sprintf("edge_access on %s: %.1f%% of %.0f requests failed (%s), %.1f%% on %d other nodes serving the same streams",
				where, pct(a.errs, a.n), a.n, err, pct(b.errs, b.n), len(peers))})
	}
	if a.n >= sp.EdgeMinRequests && sp.worse(share(a.slow, a.n), share(b.slow, b.n), sp.EdgeErrorShare) {
		ev = append(ev, Evidence{Scope: ScopeEdge, Source: "edge_access",
			Text: fmt.Sprintf("edge_access on %s: %.1f%% of %.0f requests waited %.0f ms or more for the first byte, %.1f%% on %d other nodes",
				where, pct(a.slow, a.n), a.n, sp.EdgeFirstByteMs, pct(b.slow, b.n), len(peers))})
	}
	if was := share(a.before, a.before+b.before); a.before >= sp.EdgeMinRequests && share(a.core, a.core+b.core) < sp.EdgeRequestDrop*was {
		ev = append(ev, Evidence{Scope: ScopeEdge, Source: "edge_access",
			Text: fmt.Sprintf("edge_access on %s: its share of the same streams' requests fell to %.1f%% in the span from %.1f%% before it (it stopped answering, or its viewers gave up)",
				where, pct(a.core, a.core+b.core), 100*was)})
	}
	return ev
}

// edgeName names the cohort's edge part ("edge-a-south-1", "cdn-b × north").
func (c *cohort) edgeName() string {
	var parts []string
	for _, v := range []string{c.node, c.cdn, c.region} {
		if v != "" {
			parts = append(parts, v)
		}
	}
	if c.node != "" {
		return c.node
	}
	return strings.Join(parts, " × ")
}

// edgeAmbiguity says when the cohort's node and its CDN region cannot be
// told apart: the region has a single node.
func (c *cohort) edgeAmbiguity(f *facts, nodes map[string]bool) []Evidence {
	cdn, region := c.cdn, c.region
	if c.node != "" {
		for _, e := range f.edge {
			if e.Node == c.node {
				cdn, region = e.CDN, e.Region
				break
			}
		}
	}
	if cdn == "" || region == "" {
		return nil
	}
	all := map[string]bool{}
	for _, e := range f.edge {
		if e.CDN == cdn && e.Region == region && e.Node != "" {
			all[e.Node] = true
		}
	}
	if len(all) != 1 {
		return nil
	}
	var node string
	for n := range all {
		node = n
	}
	return []Evidence{{Scope: ScopeEdge, Source: "edge_access",
		Text: fmt.Sprintf("%s × %s has one edge node, %s: the node and the CDN's region cannot be told apart", cdn, region, node)}}
}

// blockedAt is support when the cohort's failed starts were blocked in
// one of phases far more often than other viewers' (per play, at least
// ClientPhaseRatio × theirs, and MinBlocked plays); the phase with the
// largest excess is named.
func (sp ScopePlan) blockedAt(f *facts, scope string, phases ...string) []Evidence {
	type tally struct{ plays, failed float64 }
	var all [2]tally
	by := [2]map[string]float64{{}, {}}
	code := map[string]float64{}
	for _, p := range f.plays {
		if p.LogType != "play_stop" || p.InCohort > 1 {
			continue
		}
		all[p.InCohort].plays += p.N
		all[p.InCohort].failed += p.Failed
		by[p.InCohort][p.Blocked] += p.Failed
		if p.InCohort == 1 && p.Failed > 0 {
			code[p.Blocked] = p.Code
		}
	}
	best, excess := "", 0.0
	for _, ph := range phases {
		a, b := share(by[1][ph], all[1].plays), share(by[0][ph], all[0].plays)
		if by[1][ph] >= sp.MinBlocked && a >= sp.ClientPhaseRatio*b && a-b > excess {
			best, excess = ph, a-b
		}
	}
	if best == "" {
		return nil
	}
	return []Evidence{{Scope: scope, Source: "play_stop",
		Text: fmt.Sprintf("%.0f of the cohort's %.0f failed plays (%.0f plays) were blocked at %s (code %.0f): %.1f%% of its plays, %.1f%% of other viewers'",
			by[1][best], all[1].failed, all[1].plays, best, code[best], pct(by[1][best], all[1].plays), pct(by[0][best], all[0].plays))}}
}

// moreOften compares a client event's rate per play in the cohort with
// other viewers' (those peer selects): at least MinPerPlay and
// ClientPhaseRatio × theirs.
func (sp ScopePlan) moreOften(f *facts, logType string, peer func(playRow) bool) (string, bool) {
	per := func(in uint8) float64 {
		keep := func(p playRow) bool { return p.InCohort == in && (in == 1 || peer(p)) }
		ev := f.playSum(func(p playRow) bool { return keep(p) && p.LogType == logType }).n
		plays := f.playSum(func(p playRow) bool { return keep(p) && p.LogType == "play_stop" }).n
		return share(ev, plays)
	}
	a, b := per(1), per(0)
	return fmt.Sprintf("%s: %.2f per play in the cohort, %.2f for other viewers", logType, a, b),
		a >= sp.MinPerPlay && a >= sp.ClientPhaseRatio*b
}

// checkClient looks at what the cohort's players saw that others did
// not: failed starts blocked at DNS or decoding, a slow first-frame
// phase, render stalls, stalls on every node.
func (sp ScopePlan) checkClient(c *cohort, f *facts) finding {
	var fd finding
	fd.support = append(fd.support, sp.blockedAt(f, ScopeClient, "dns", "first_decode", "first_render")...)
	ff := func(in uint8) playSum {
		return f.playSum(func(p playRow) bool { return p.InCohort == in && p.LogType == "first_frame" })
	}
	fin, fout := ff(1), ff(0)
	phases := []struct {
		name    string
		in, out float64
	}{{"dns", fin.dns, fout.dns}, {"tcp_connect", fin.connect, fout.connect}, {"tcp_first_packet", fin.firstPk, fout.firstPk},
		{"video_first_packet", fin.videoPk, fout.videoPk}, {"first_decode", fin.decode, fout.decode}, {"first_render", fin.render, fout.render}}
	for _, ph := range phases {
		a, b := share(ph.in, fin.n), share(ph.out, fout.n)
		if fin.n >= sp.MinBlocked && a >= sp.ClientPhaseMs && a >= sp.ClientPhaseRatio*b {
			fd.support = append(fd.support, Evidence{Scope: ScopeClient, Source: "first_frame",
				Text: fmt.Sprintf("first_frame: %s took %.0f ms on average in the cohort (%.0f first frames), %.0f ms for other viewers", ph.name, a, fin.n, b)})
		}
	}
	for _, lt := range []string{"render_stall", "stall"} {
		if e, ok := sp.moreOften(f, lt, func(playRow) bool { return true }); ok {
			fd.support = append(fd.support, Evidence{Scope: ScopeClient, Source: lt, Text: e})
		}
	}
	nodes := len(f.cohortSet(func(p playRow) string { return p.Node }))
	cdns := len(f.cohortSet(func(p playRow) string { return p.CDN }))
	if len(fd.support) == 0 {
		fd.clean = append(fd.clean, Evidence{Scope: ScopeClient, Source: "play_stop",
			Text: "the cohort's players show no failure of their own (DNS, decoding, a slow first-frame phase, render stalls) beyond other viewers'"})
	} else if nodes >= sp.ClientMinNodes {
		fd.support = append(fd.support, Evidence{Scope: ScopeClient, Source: "play_start",
			Text: fmt.Sprintf("the cohort's plays were spread over %d edge nodes of %d CDNs", nodes, cdns)})
	}
	return fd
}

// checkRollout asks whether the cohort's app version is rolling out
// (rolloutTest) rather than a steady client group.
func (sp ScopePlan) checkRollout(c *cohort, f *facts) finding {
	var fd finding
	v := c.client["app_version"]
	isNew, text := sp.rolloutTest(f.versions, v, f.spanFrom)
	if isNew {
		fd.support = append(fd.support, Evidence{Scope: ScopeRollout, Source: "play_start", Text: text + ": a new version"})
	} else {
		fd.clean = append(fd.clean, Evidence{Scope: ScopeRollout, Source: "play_start", Text: text + ": not a new version"})
	}
	return fd
}
