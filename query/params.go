package query

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

// params reads query parameters and remembers which were read, so that a
// misspelt or unsupported parameter is refused by name instead of ignored.
type params struct {
	v    url.Values
	used map[string]bool
	now  time.Time
}

func newParams(v url.Values, now time.Time) *params {
	return &params{v: v, used: map[string]bool{}, now: now}
}

// get returns a parameter's value ("" when absent); a repeated parameter is
// an error caught by check.
func (p *params) get(name string) string {
	p.used[name] = true
	return p.v.Get(name)
}

// has reports whether a parameter was given.
func (p *params) has(name string) bool {
	p.used[name] = true
	_, ok := p.v[name]
	return ok
}

// check returns an error naming every parameter that was not read, or given
// more than once.
func (p *params) check() error {
	var unknown, repeated []string
	for k, vs := range p.v {
		if !p.used[k] {
			unknown = append(unknown, k)
		} else if len(vs) > 1 {
			repeated = append(repeated, k)
		}
	}
	sort.Strings(unknown)
	sort.Strings(repeated)
	if len(unknown) > 0 {
		known := make([]string, 0, len(p.used))
		for k := range p.used {
			known = append(known, k)
		}
		sort.Strings(known)
		return fmt.Errorf("unknown parameter %s; this endpoint takes: %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	if len(repeated) > 0 {
		return fmt.Errorf("parameter %s given more than once", strings.Join(repeated, ", "))
	}
	return nil
}

// intParam parses an integer parameter in [min, max], def when absent.
func (p *params) intParam(name string, def, min, max int) (int, error) {
	s := p.get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%s=%q: want a whole number in [%d, %d]", name, s, min, max)
	}
	return n, nil
}

// timeParam parses a point in time: RFC 3339 ("2026-11-21T10:00:00Z"), ms
// or s since the epoch, "now", or "now-2h" / "-2h" (relative to now).
func (p *params) timeParam(name string, def time.Time) (time.Time, error) {
	s := p.get(name)
	if s == "" {
		return def, nil
	}
	t, err := ParseTime(s, p.now)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s=%q: %v", name, s, err)
	}
	return t, nil
}

// ParseTime parses the time forms the API and CLI accept.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if rel, ok := strings.CutPrefix(s, "now"); ok {
		s = rel
	}
	if strings.HasPrefix(s, "-") {
		d, err := ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(-d), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 1e11 {
			return time.Unix(n, 0), nil
		}
		return time.UnixMilli(n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2026-11-21T10:00:00Z), a date, ms since the epoch, now or now-2h")
}

// maxDays bounds the days of a duration, so that days in nanoseconds
// cannot overflow (a century is far beyond any window or retention).
const maxDays = 100 * 366

// ParseDuration is time.ParseDuration plus days ("7d", "1d12h"); the result
// is always positive.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("bad duration %q: want e.g. 30m, 2h, 7d", s)
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || n > maxDays {
			return 0, bad
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			if days == 0 {
				return 0, bad
			}
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > math.MaxInt64-days || d+days <= 0 {
		return 0, bad
	}
	return d + days, nil
}

// window parses from/to (and since, a shorthand for from=now-since) with a
// default length, and checks the range makes sense.
func (p *params) window(def time.Duration, max time.Duration) (from, to time.Time, err error) {
	to, err = p.timeParam("to", p.now)
	if err != nil {
		return
	}
	from, err = p.timeParam("from", to.Add(-def))
	if err != nil {
		return
	}
	if s := p.get("since"); s != "" {
		if p.v.Get("from") != "" {
			return from, to, fmt.Errorf("give from or since, not both")
		}
		d, derr := ParseDuration(s)
		if derr != nil {
			return from, to, fmt.Errorf("since=%q: %v", s, derr)
		}
		from = to.Add(-d)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("from (%s) must be before to (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if max > 0 && to.Sub(from) > max {
		return from, to, fmt.Errorf("window %s is longer than the %s allowed", to.Sub(from), max)
	}
	return from, to, nil
}

// SQL literals, quoted in one place (internal/store).
var (
	sqlString = store.QuoteString
	sqlTime   = store.QuoteTime
)
