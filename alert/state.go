package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

// The tables of migration 0010_alerts.
const (
	alertsTable     = "alerts"
	deliveriesTable = "alert_deliveries"
)

// Delivery is how one notification of an alert went to one receiver.
type Delivery struct {
	Receiver   string    `json:"receiver"`
	Event      string    `json:"event"` // firing or resolved
	Attempts   int       `json:"attempts"`
	Delivered  bool      `json:"delivered"`
	LastStatus string    `json:"last_status"` // "200", "503", "timeout", ...
	LastError  string    `json:"last_error,omitempty"`
	At         time.Time `json:"at"`
}

var sqlTime = store.QuoteTime

func sqlMap(m map[string]string) string {
	var kv []string
	for _, k := range sortedKeys(m) {
		kv = append(kv, store.QuoteString(k), store.QuoteString(m[k]))
	}
	return "map(" + strings.Join(kv, ", ") + ")"
}

// WriteAlert stores a's current state, as of updated.
func WriteAlert(ctx context.Context, st Store, a *Alert, updated time.Time) error {
	ends := "NULL"
	if a.EndsAt != nil {
		ends = sqlTime(*a.EndsAt)
	}
	return st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (fingerprint, starts_at, rule, state, labels, annotations, value, expected, samples, ends_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %g, %g, %d, %s, %s)",
		alertsTable, store.QuoteString(a.Fingerprint), sqlTime(a.StartsAt), store.QuoteString(a.Rule), store.QuoteString(a.State),
		sqlMap(a.Labels), sqlMap(a.Annotations), finite(a.Value), finite(a.Expected), a.Samples, ends, sqlTime(updated)))
}

func finite(v float64) float64 {
	if v != v || v > 1e300 || v < -1e300 {
		return 0
	}
	return v
}

// writeDelivery stores how a notification of a went to a receiver.
func writeDelivery(ctx context.Context, st Store, a *Alert, d Delivery) error {
	return st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (fingerprint, starts_at, receiver, event, attempts, delivered, last_status, last_error, updated_at) VALUES (%s, %s, %s, %s, %d, %t, %s, %s, %s)",
		deliveriesTable, store.QuoteString(a.Fingerprint), sqlTime(a.StartsAt), store.QuoteString(d.Receiver), store.QuoteString(d.Event),
		d.Attempts, d.Delivered, store.QuoteString(d.LastStatus), store.QuoteString(d.LastError), sqlTime(d.At)))
}

// Filter selects alerts to read: by state ("" for any), and those active
// at some time in [From, To) (zero for unbounded).
type Filter struct {
	State    string
	From, To time.Time
	Limit    int
}

// ReadAlerts returns the alerts that match f, newest first, with their
// deliveries.
func ReadAlerts(ctx context.Context, st Reader, f Filter) ([]Alert, error) {
	var where []string
	if f.State != "" {
		where = append(where, "state = "+store.QuoteString(f.State))
	}
	if !f.To.IsZero() {
		where = append(where, "starts_at < "+sqlTime(f.To))
	}
	if !f.From.IsZero() {
		where = append(where, "(ends_at IS NULL OR ends_at >= "+sqlTime(f.From)+")")
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	out, err := st.QueryJSON(ctx, fmt.Sprintf(`SELECT fingerprint, rule, state, labels, annotations, value, expected, toFloat64(samples) AS samples,
    toFloat64(toUnixTimestamp64Milli(starts_at)) AS starts_ms, toFloat64(toUnixTimestamp64Milli(ends_at)) AS ends_ms
FROM %s FINAL%s ORDER BY starts_at DESC, fingerprint LIMIT %d`, alertsTable, cond, limit))
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	var as []Alert
	idx := map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var row struct {
			Alert
			StartsMs float64  `json:"starts_ms"`
			EndsMs   *float64 `json:"ends_ms"`
		}
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("decode alerts: %w", err)
		}
		a := row.Alert
		a.StartsAt = time.UnixMilli(int64(row.StartsMs)).UTC()
		if row.EndsMs != nil {
			e := time.UnixMilli(int64(*row.EndsMs)).UTC()
			a.EndsAt = &e
		}
		idx[a.Fingerprint+"@"+fmt.Sprint(int64(row.StartsMs))] = len(as)
		as = append(as, a)
	}
	if len(as) == 0 {
		return as, nil
	}
	out, err = st.QueryJSON(ctx, fmt.Sprintf(`SELECT fingerprint, toFloat64(toUnixTimestamp64Milli(starts_at)) AS starts_ms, receiver, event, attempts, delivered,
    last_status, last_error, toFloat64(toUnixTimestamp64Milli(updated_at)) AS at_ms
FROM %s FINAL WHERE fingerprint IN (SELECT fingerprint FROM %s FINAL%s)`, deliveriesTable, alertsTable, cond))
	if err != nil {
		return nil, fmt.Errorf("read alert deliveries: %w", err)
	}
	dec = json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var row struct {
			Delivery
			Fingerprint string  `json:"fingerprint"`
			StartsMs    float64 `json:"starts_ms"`
			AtMs        float64 `json:"at_ms"`
		}
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("decode alert deliveries: %w", err)
		}
		i, ok := idx[row.Fingerprint+"@"+fmt.Sprint(int64(row.StartsMs))]
		if !ok {
			continue
		}
		d := row.Delivery
		d.At = time.UnixMilli(int64(row.AtMs)).UTC()
		as[i].Deliveries = append(as[i].Deliveries, d)
	}
	for i := range as {
		sort.Slice(as[i].Deliveries, func(x, y int) bool {
			dx, dy := as[i].Deliveries[x], as[i].Deliveries[y]
			if dx.Receiver != dy.Receiver {
				return dx.Receiver < dy.Receiver
			}
			return dx.Event < dy.Event
		})
	}
	return as, nil
}

func sortAlerts(as []Alert) {
	sort.Slice(as, func(i, j int) bool {
		if !as[i].StartsAt.Equal(as[j].StartsAt) {
			return as[i].StartsAt.Before(as[j].StartsAt)
		}
		return as[i].Fingerprint < as[j].Fingerprint
	})
}
