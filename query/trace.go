package query

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/trace"
)

// GET /api/v1/trace: the parameters are read here and the lookup is
// trace.DefaultPlan.Search (package trace; docs/trace.md).

// traceParams are all the parameters of /api/v1/trace.
var traceParams = append(slices.Clone(trace.IDParams), "app_id", "from", "to", "since", "limit", "cursor")

// parseTraceRequest validates the parameters; its errors are 400 answers
// that name the problem.
func parseTraceRequest(v url.Values, now time.Time) (*trace.Request, error) {
	p := newParams(v, now)
	// Mark every known parameter as read first, so check names exactly the
	// strangers even when a later parse fails early.
	for _, n := range traceParams {
		p.has(n)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	req := &trace.Request{}
	var given []string
	for _, n := range trace.IDParams {
		if _, ok := v[n]; ok {
			given = append(given, n)
		}
	}
	switch len(given) {
	case 0:
		return nil, fmt.Errorf("give one of %s", strings.Join(trace.IDParams, ", "))
	case 1:
	default:
		return nil, fmt.Errorf("give exactly one of %s; got %s", strings.Join(trace.IDParams, ", "), strings.Join(given, " and "))
	}
	req.By, req.ID = given[0], p.get(given[0])
	if req.ID == "" {
		return nil, fmt.Errorf("%s is empty", req.By)
	}
	if len(req.ID) > trace.MaxIDLen {
		return nil, fmt.Errorf("%s is %d bytes long; ids are at most %d", req.By, len(req.ID), trace.MaxIDLen)
	}
	req.AppID = p.get("app_id")
	var err error
	if req.From, req.To, err = p.window(trace.DefaultWindow, trace.MaxWindow); err != nil {
		return nil, err
	}
	if req.Limit, err = p.intParam("limit", trace.DefaultLimit, 1, trace.MaxLimit); err != nil {
		return nil, err
	}
	if c := p.get("cursor"); c != "" {
		if req.After, err = trace.DecodeCursor(c); err != nil {
			return nil, err
		}
		req.From, req.To = time.UnixMilli(req.After.From), time.UnixMilli(req.After.To)
		if req.To.Sub(req.From) > trace.MaxWindow {
			return nil, fmt.Errorf("cursor window %s is longer than the %s allowed", req.To.Sub(req.From), trace.MaxWindow)
		}
	}
	req.From, req.To = req.From.UTC().Truncate(time.Millisecond), req.To.UTC().Truncate(time.Millisecond)
	return req, nil
}

func (s *Server) serveTrace(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "trace is read-only: use GET")
		return
	}
	req, err := parseTraceRequest(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	res, err := trace.DefaultPlan.Search(r.Context(), s.store, req)
	if err != nil {
		level.Error(s.logger).Log("msg", "trace lookup failed", "by", req.By, "id", req.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "trace lookup failed: %v", err)
		return
	}
	if res.NextCursor != "" {
		w.Header().Set("X-Lastmile-Next-Cursor", res.NextCursor)
	}
	if strings.Contains(r.Header.Get("Accept"), trace.ArrowMedia) {
		w.Header().Set("Content-Type", trace.ArrowMedia)
		if err := trace.WriteArrow(w, res); err != nil {
			level.Warn(s.logger).Log("msg", "writing trace as arrow", "err", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, res)
}
