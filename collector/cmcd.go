package collector

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// ReasonInvalidCMCD is the rejected code of a report that is not a CMCD
// dictionary or lacks what the mapping needs.
const ReasonInvalidCMCD = "invalid_cmcd"

// cmcdTypeOK: application/cmcd as CTA-5004-B says, text/plain as browsers
// send a body without a preflight (sendBeacon, a simple CORS POST), or none.
func cmcdTypeOK(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/cmcd" || mt == "text/plain"
}

// serveCMCD takes CMCD v2 event-mode reports, one per line, and maps each
// into catalog events of its session (cmcdmap.go); those go the way of
// /v1/events (validation, sampling, Kafka), a bad report is rejected alone.
func (c *Collector) serveCMCD(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && !cmcdTypeOK(r.Header.Get("Content-Type")) {
		c.fail(w, "", http.StatusUnsupportedMediaType, "", "Content-Type %q: send application/cmcd (or text/plain), one report per line", r.Header.Get("Content-Type"))
		return
	}
	in, ok := c.intake(w, r, "/v1/cmcd", c.appID)
	if !ok {
		return
	}
	defer in.done()
	b, body := in.b, in.b.body.Bytes()
	if len(strings.TrimSpace(string(body))) == 0 {
		c.fail(w, in.reqID, http.StatusBadRequest, "", "empty body: send CMCD reports, one per line")
		return
	}
	if n := countReports(body); n > c.cfg.MaxEvents {
		c.fail(w, in.reqID, http.StatusRequestEntityTooLarge, "max_batch_events",
			"%d reports, more than %d (limit max_batch_events); split them", n, c.cfg.MaxEvents)
		return
	}
	var resp Response
	var buf []byte
	// The sessions as they were before this request: if Kafka fails it, the
	// client's retry must map the same reports the same way again.
	before := map[string]cmcdSession{}
	// CMCD names no device: a page may add device=ID to its event target
	// URL (docs/players.md), else the session stands in for it.
	device := r.URL.Query().Get("device")
	cmcd.Reports(body, func(line int, raw []byte, d cmcd.Dict, err error) bool {
		rep, rej := readReport(d, err, in.receivedAt, device)
		if rej != nil {
			c.addReject(b, in.appID, in.reqID, line-1, raw, rej, in.receivedAt)
			return true
		}
		resp.Reports++
		var evs []derived
		c.cmcd.with(in.appID, rep.sid, func(s *cmcdSession) {
			if _, ok := before[rep.sid]; !ok {
				before[rep.sid] = *s
			}
			was := *s
			evs = s.apply(rep, &c.cfg.CMCD)
			switch {
			case s.joined && was.first == 0:
				c.metrics.CMCDSessions.WithLabelValues("joined").Inc()
			case !s.joined && s.first != was.first:
				c.metrics.CMCDSessions.WithLabelValues("start").Inc()
			}
		})
		for i := range evs {
			buf = appendEventJSON(buf[:0], in.appID, rep, &evs[i])
			c.handleEvent(b, in.appID, in.reqID, line-1, buf, in.receivedAt, &resp)
		}
		return true
	})
	if !c.answer(w, r, in, &resp) {
		for sid, s := range before {
			c.cmcd.with(in.appID, sid, func(cur *cmcdSession) { *cur = s })
		}
	}
}

// countReports counts the reports (non-blank lines) of a body.
func countReports(body []byte) int {
	n := 0
	cmcd.Lines(body, func(int, []byte) bool { n++; return true })
	return n
}

// readReport checks what the mapping needs of a report: a session id, and
// a time (the collector's clock when the report has none).
func readReport(d cmcd.Dict, err error, receivedAt int64, device string) (*report, *schemas.Reject) {
	if err != nil {
		return nil, &schemas.Reject{Code: ReasonInvalidCMCD, Msg: err.Error()}
	}
	sid, ok := d.Text("sid")
	if !ok || sid == "" {
		return nil, &schemas.Reject{Code: schemas.ReasonMissingField, Field: "sid", Msg: "CMCD report has no sid (session id): it cannot join a session"}
	}
	if device == "" {
		device = sid
	}
	r := &report{sid: sid, device: device, ts: receivedAt, d: d}
	if v, ok := d.Get("ts"); ok {
		if v.Kind != cmcd.Integer || v.Int <= 0 {
			return nil, &schemas.Reject{Code: schemas.ReasonWrongType, Field: "ts", Msg: fmt.Sprintf("CMCD ts %s is not a positive integer of ms since the epoch", v.Text())}
		}
		r.ts = v.Int
	}
	r.e, _ = d.Text("e")
	r.sta, _ = d.Text("sta")
	r.sf, _ = d.Text("sf")
	return r, nil
}
