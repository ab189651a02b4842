package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
)

// metricsMain is `lastmile metrics`: one QoE metric from the query API, as a
// table of groups with their totals over the window, and optionally the time
// series.
func metricsMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile metrics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: lastmile metrics --metric NAME [flags]

Prints a QoE metric over a time window: one row per group (--group-by) with
its value over the whole window and the number of stored events behind it;
--series adds the value of every time bucket. docs/metrics.md defines every
metric; run without --metric to list them.

Examples:
  lastmile metrics --metric play_success_rate --since 24h --group-by cdn,region
  lastmile metrics --metric video_startup_time --quantile p95 --phase tcp_connect --filter cdn=cdn-b
  lastmile metrics --metric concurrent_viewers --since 2h --step 5m --series

Flags:
`)
		fs.PrintDefaults()
	}
	metric := fs.String("metric", "", "`NAME` of the metric, e.g. play_success_rate, video_startup_time, rebuffering_ratio")
	since := fs.String("since", "", "window ending now (or at --to): 30m, 2h, 7d (default 1h)")
	from := fs.String("from", "", "window start: RFC 3339, ms since the epoch, or now-2h")
	to := fs.String("to", "", "window end (default now)")
	step := fs.String("step", "", "bucket length: 1m, 5m, 1h, 1d (default from the window)")
	groupBy := fs.String("group-by", "", "comma-separated `DIMS`, e.g. cdn,region")
	var filters []string
	fs.Func("filter", "`DIM=VALUE[,VALUE...]`: only these values of a dimension (repeatable)", func(s string) error {
		if d, _, ok := strings.Cut(s, "="); !ok || d == "" {
			return fmt.Errorf("want DIM=VALUE, got %q", s)
		}
		filters = append(filters, s)
		return nil
	})
	app := fs.String("app", "", "only this app_id (the same as --filter app_id=APP)")
	quantile := fs.String("quantile", "", "for video_startup_time and live_latency: 0.5, 0.95, p99, ... (default 0.5)")
	phase := fs.String("phase", "", "for video_startup_time: total (default), dns, tcp_connect, tcp_first_packet, video_first_packet, first_decode, first_render")
	read := fs.String("read", "", "auto (default), raw or rollup: where the API computes the metric from")
	limit := fs.Int("limit", 0, "most groups to show (default 100); the ones with the most samples are kept")
	series := fs.Bool("series", false, "also print the value of every time bucket")
	api := addAPIFlags(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	q := url.Values{}
	for param, v := range map[string]string{"metric": *metric, "since": *since, "from": *from, "to": *to, "step": *step,
		"group_by": *groupBy, "app_id": *app, "quantile": *quantile, "phase": *phase, "read": *read} {
		if v != "" {
			q.Set(param, v)
		}
	}
	for _, f := range filters {
		d, v, _ := strings.Cut(f, "=")
		if q.Has(d) {
			fmt.Fprintf(stderr, "lastmile metrics: %s is filtered twice: give its values once, comma-separated\n", d)
			return 2
		}
		q.Set(d, v)
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	var ans query.MetricsAnswer
	if done, code := api.get("metrics", "/api/v1/metrics", q, stdout, stderr, "a metric", &ans); done {
		return code
	}
	loc := api.loc()
	printMetrics(stdout, &ans, loc, *series)
	return 0
}

// printMetrics writes a header line, the table of groups and their totals,
// and with series a table of buckets (rows) by groups (columns).
func printMetrics(w io.Writer, a *query.MetricsAnswer, loc *time.Location, series bool) {
	name := a.Metric
	if a.Quantile != nil {
		name = fmt.Sprintf("%s p%s", name, strconv.FormatFloat(*a.Quantile*100, 'f', -1, 64))
		if a.Phase != "" && a.Phase != "total" {
			name += " " + a.Phase
		}
	}
	fmt.Fprintf(w, "%s (%s)  %s → %s  step %s  from %s (%s)\n", name, a.Unit,
		a.From.In(loc).Format("2006-01-02 15:04"), a.To.In(loc).Format("2006-01-02 15:04 MST"), a.Step, a.Source, a.Table)
	var filters []string
	for d, vs := range a.Filters {
		filters = append(filters, d+"="+strings.Join(vs, ","))
	}
	if len(filters) > 0 {
		slices.Sort(filters)
		fmt.Fprintf(w, "filters: %s\n", strings.Join(filters, " "))
	}
	if len(a.Series) == 0 {
		fmt.Fprintln(w, "no data in the window")
		return
	}
	fmt.Fprintln(w)
	header := append(append([]string{}, a.GroupBy...), "total", "samples")
	var rows [][]string
	for _, s := range a.Series {
		var row []string
		for _, d := range a.GroupBy {
			row = append(row, dash(s.Group[d]))
		}
		rows = append(rows, append(row, fmtMetric(s.Total, a.Unit), groupDigits(s.Samples)))
	}
	printTable(w, header, rows, len(a.GroupBy))
	if a.Truncated {
		fmt.Fprintf(w, "(%d of %d groups: the ones with the most samples; see --limit)\n", len(a.Series), a.Groups)
	}
	if !series {
		return
	}
	fmt.Fprintln(w)
	header = []string{"time"}
	for _, s := range a.Series {
		var g []string
		for _, d := range a.GroupBy {
			g = append(g, dash(s.Group[d]))
		}
		if len(g) == 0 {
			g = []string{a.Metric}
		}
		header = append(header, strings.Join(g, "/"))
	}
	layout := "01-02 15:04"
	if a.StepMs%60_000 != 0 {
		layout = "01-02 15:04:05"
	}
	rows = nil
	for i, p := range a.Series[0].Points {
		row := []string{time.UnixMilli(p.T).In(loc).Format(layout)}
		for _, s := range a.Series {
			row = append(row, fmtMetric(s.Points[i].V, a.Unit))
		}
		rows = append(rows, row)
	}
	printTable(w, header, rows, 1)
}

// printTable aligns columns: the first left ones (labels) to the left, the
// rest (numbers) to the right.
func printTable(w io.Writer, header []string, rows [][]string, left int) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < left {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
}

// fmtMetric prints a value with the precision its unit deserves.
func fmtMetric(v *float64, unit string) string {
	if v == nil {
		return "–"
	}
	x := *v
	switch unit {
	case "%":
		return strconv.FormatFloat(x, 'f', 2, 64)
	case "ms":
		return groupDigits(int64(math.Round(x)))
	case "count":
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return groupDigits(int64(x))
		}
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// groupDigits prints 1234567 as 1,234,567.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
