package query

import (
	"net/http"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/localize"
)

// The localize window: 30 minutes by default, at most 6 hours (one search
// per KPI and minute; longer spans are for the metrics API).
const (
	defaultLocalizeWindow = 30 * time.Minute
	maxLocalizeWindow     = 6 * time.Hour
)

// LocalizeAnswer is the body of GET /api/v1/localize: the incidents of the
// window, best first (none for a quiet window).
type LocalizeAnswer struct {
	From      time.Time           `json:"from"`
	To        time.Time           `json:"to"`
	Incidents []localize.Incident `json:"incidents"`
}

// serveLocalize answers GET /api/v1/localize?from=&to= (or since=), with
// optional room_id, stream_id, app_id and metric (one KPI): the live
// localizer's incidents (docs/localize.md).
func (s *Server) serveLocalize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	p := newParams(r.URL.Query(), time.Now())
	req := localize.LiveRequest{RoomID: p.get("room_id"), StreamID: p.get("stream_id"), AppID: p.get("app_id"), KPI: p.get("metric")}
	from, to, err := p.window(defaultLocalizeWindow, maxLocalizeWindow)
	if err == nil {
		err = p.check()
	}
	if err == nil {
		err = localize.CheckKPI(req.KPI)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req.From, req.To = from.UTC(), to.UTC()
	t0 := time.Now()
	incs, err := localize.DefaultLivePlan.Localize(r.Context(), s.store, req)
	if err != nil {
		level.Error(s.logger).Log("msg", "localize failed", "from", req.From, "to", req.To, "err", err)
		writeError(w, http.StatusInternalServerError, "localize failed: %v", err)
		return
	}
	if incs == nil {
		incs = []localize.Incident{}
	}
	level.Debug(s.logger).Log("msg", "localize", "from", req.From, "to", req.To, "incidents", len(incs), "took", time.Since(t0))
	writeJSON(w, http.StatusOK, LocalizeAnswer{From: req.From, To: req.To, Incidents: incs})
}
