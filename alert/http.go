package alert

import (
	"fmt"
	"net/http"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
)

// AlertsAnswer is the body of GET /api/v1/alerts.
type AlertsAnswer struct {
	State  string    `json:"state,omitempty"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Alerts []Alert   `json:"alerts"`
}

// Handler serves GET /api/v1/alerts?state=firing|resolved&from=&to=: the
// alerts active at some time in the window (default the last 24 h), newest
// first, with their labels, figures and deliveries. The query server mounts
// it behind its token (query.WithRoute).
func Handler(st Reader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			query.WriteJSON(w, http.StatusMethodNotAllowed, query.ErrorBody{Error: "use GET"})
			return
		}
		f, err := parseFilter(r, time.Now())
		if err != nil {
			query.WriteJSON(w, http.StatusBadRequest, query.ErrorBody{Error: err.Error()})
			return
		}
		as, err := ReadAlerts(r.Context(), st, f)
		if err != nil {
			query.WriteJSON(w, http.StatusInternalServerError, query.ErrorBody{Error: err.Error()})
			return
		}
		if as == nil {
			as = []Alert{}
		}
		query.WriteJSON(w, http.StatusOK, AlertsAnswer{State: f.State, From: f.From, To: f.To, Alerts: as})
	})
}

func parseFilter(r *http.Request, now time.Time) (Filter, error) {
	q := r.URL.Query()
	for k, vs := range q {
		switch {
		case k != "state" && k != "from" && k != "to" && k != "limit":
			return Filter{}, fmt.Errorf("unknown parameter %s; this endpoint takes: state, from, to, limit", k)
		case len(vs) > 1:
			return Filter{}, fmt.Errorf("parameter %s given more than once", k)
		}
	}
	f := Filter{State: q.Get("state"), To: now, From: now.Add(-24 * time.Hour)}
	if f.State != "" && f.State != StateFiring && f.State != StateResolved {
		return f, fmt.Errorf("state=%q: want firing or resolved", f.State)
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"to", &f.To}, {"from", &f.From}} {
		if s := q.Get(p.name); s != "" {
			t, err := query.ParseTime(s, now)
			if err != nil {
				return f, fmt.Errorf("%s=%q: %v", p.name, s, err)
			}
			*p.t = t
		}
	}
	if !f.From.Before(f.To) {
		return f, fmt.Errorf("from must be before to")
	}
	if s := q.Get("limit"); s != "" {
		if _, err := fmt.Sscanf(s, "%d", &f.Limit); err != nil || f.Limit < 1 || f.Limit > 10000 {
			return f, fmt.Errorf("limit=%q: want a whole number in [1, 10000]", s)
		}
	}
	f.From, f.To = f.From.UTC(), f.To.UTC()
	return f, nil
}
