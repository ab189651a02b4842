package collector

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/internal/flatjson"
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

// serveCMCD takes CMCD v2 event-mode reports, one per line. Each report
// that reads and passes precheck is produced, durably, to CMCDReportsTopic
// for the pairing stage (cmcdpair.go), which maps it into catalog events of
// its session; a bad report is rejected alone.
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
	// CMCD names no device: a page may add device=ID to its event target
	// URL (docs/players.md), else the session stands in for it.
	device := r.URL.Query().Get("device")
	cmcd.Reports(body, func(line int, raw []byte, d cmcd.Dict, err error) bool {
		rep, rej := readReport(d, err, in.receivedAt, device)
		if rej == nil {
			rej = c.precheck(b, in.appID, rep)
		} else {
			b.fields = b.fields[:0] // the reject names no ids of another report
		}
		if rej != nil {
			c.addReject(b, in.appID, in.reqID, line-1, raw, rej, in.receivedAt)
			return true
		}
		v, _ := json.Marshal(&reportEnvelope{AppID: in.appID, RequestID: in.reqID, Index: line - 1,
			ReceivedAt: in.receivedAt, Device: device, Report: string(raw)}) // strings and numbers: cannot fail
		key := reportKey(in.appID, rep.sid)
		// A record Kafka cannot take would fail the whole request.
		if size := len(v) + len(key); size > c.cfg.MaxRecordBytes {
			c.addReject(b, in.appID, in.reqID, line-1, raw, &schemas.Reject{Code: schemas.ReasonTooLarge,
				Msg: fmt.Sprintf("report is %d bytes as stored, at most %d allowed (the event bus's message size)", size, c.cfg.MaxRecordBytes)}, in.receivedAt)
			return true
		}
		resp.Reports++
		resp.Accepted++
		b.addReport(v, key, line-1)
		return true
	})
	c.answer(w, r, in, &resp)
}

// precheck refuses a report whose own values would make one of its events
// invalid, with the catalog's reason, as /v1/events would: it maps the part
// of the report that needs no session (request, heartbeat, bsd stalls, msd,
// an error's play_stop; else a play_start for its ts) and cleans those
// events without producing them.
func (c *Collector) precheck(b *batch, appID string, rep *report) *schemas.Reject {
	s := cmcdSession{joined: true} // a joined session maps msd
	evs := s.stateless(rep, &c.cfg.CMCD)
	if rep.sta == staFatal {
		evs = append(evs, s.stop(rep, c.cfg.CMCD.ErrorCode, errorText(rep.d)))
	}
	if len(evs) == 0 {
		// Every event of a report but a stall has its ts: one outside the
		// catalog's window refuses them all.
		evs = append(evs, derived{logType: "play_start", ts: rep.ts})
	}
	var buf []byte
	for i := range evs {
		buf = appendEventJSON(buf[:0], appID, rep, &evs[i])
		var err error
		if b.fields, err = flatjson.ParseObject(b.fields, buf); err != nil {
			return &schemas.Reject{Code: ReasonInvalidCMCD, Msg: "report maps to no valid event: " + err.Error()}
		}
		if rej := b.cleaner.Clean(b.fields, &b.ev); rej != nil {
			return rej
		}
	}
	return nil
}

// addReport queues a report's record for CMCDReportsTopic, keyed by app
// and sid (reportKey) so that a session's reports stay in one partition, in order.
func (b *batch) addReport(v, key []byte, index int) {
	start := len(b.out)
	b.out = append(b.out, v...)
	b.spans = append(b.spans, [2]int{start, len(b.out)})
	b.evIdx = append(b.evIdx, int32(index))
	kstart := len(b.keys)
	b.keys = append(b.keys, key...)
	b.kspans = append(b.kspans, [2]int{kstart, len(b.keys)})
	b.topics = append(b.topics, CMCDReportsTopic)
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
