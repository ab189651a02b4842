package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/query"
)

// localizeMain is `lastmile localize`: the live form asks the query API
// for the incidents of a window; the offline form (--csv) finds the root
// cause of one minute of a leaf table.
func localizeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile localize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: lastmile localize [--since 30m | --from T --to T] [--room ID] [--stream ID] [--metric KPI] [--json]
       lastmile localize --csv FILE --at UNIX_SECONDS [--json]

Live: finds the anomalies of a window in the stored events (start failure,
playback failure, slow start, rebuffering, render stall, low frame rate),
and prints each incident: when, which KPI, which cohort of viewers, how bad
against what was expected, the scope that failed with its evidence, and
commands that trace a few affected viewers. A quiet window has none.

Offline (--csv): finds the attribute-value combinations that explain a
ratio KPI's rise in one minute of a leaf table, against the minutes before
it. The table is CSV in the RS convention: min (the minute, Unix seconds),
value (numerator), cnt (denominator), every other column an attribute.

docs/localize.md describes the method.

Flags:
`)
		fs.PrintDefaults()
	}
	csvPath := fs.String("csv", "", "offline: leaf table `FILE` (CSV; - for stdin)")
	at := fs.Int64("at", 0, "offline: the anomalous minute, `UNIX_SECONDS` (a value of the min column)")
	asJSON := fs.Bool("json", false, `print the API's answer as is (offline: {"causes": [{"attr": "value", ...}, ...]}, best first)`)
	since := fs.String("since", "", "window ending now (or at --to): 30m, 2h (default 30m)")
	from := fs.String("from", "", "window start: RFC 3339, Unix seconds, or now-2h")
	to := fs.String("to", "", "window end (default now)")
	room := fs.String("room", "", "only this room_id")
	stream := fs.String("stream", "", "only this stream_id")
	app := fs.String("app", "", "only this app_id")
	metric := fs.String("metric", "", "only this KPI: "+strings.Join(localize.LiveKPIs, ", "))
	addr := fs.String("addr", apiEnv("LASTMILE_ADDR", "http://127.0.0.1:8080"), "query API `URL`; $LASTMILE_ADDR sets the default")
	token := fs.String("token", "", "bearer token (default $LASTMILE_QUERY_TOKEN, else DATA/query-token)")
	dataDir := fs.String("data", "data", "`DIR` whose query-token file to use when no token is given")
	utc := fs.Bool("utc", false, "print times in UTC instead of the local time zone")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lastmile localize: unexpected arguments %q\n", fs.Args())
		return 2
	}
	atSet := false
	fs.Visit(func(f *flag.Flag) { atSet = atSet || f.Name == "at" })
	if *csvPath == "" && atSet {
		fmt.Fprintln(stderr, "lastmile localize: --at is for the offline form: --csv FILE is required with it")
		return 2
	}
	if *csvPath == "" {
		q := url.Values{}
		for param, v := range map[string]string{"since": *since, "from": *from, "to": *to, "room_id": *room,
			"stream_id": *stream, "app_id": *app, "metric": *metric} {
			if v != "" {
				q.Set(param, v)
			}
		}
		var ans query.LocalizeAnswer
		if done, code := getAnswer("localize", *addr, *token, *dataDir, "/api/v1/localize", q, *asJSON, stdout, stderr, "a localize answer", &ans); done {
			return code
		}
		loc := time.Local
		if *utc {
			loc = time.UTC
		}
		printIncidents(stdout, &ans, loc)
		return 0
	}
	if !atSet {
		fmt.Fprintln(stderr, "lastmile localize: --at UNIX_SECONDS is required with --csv")
		return 2
	}
	var in io.Reader = os.Stdin
	if *csvPath != "-" {
		f, err := os.Open(*csvPath)
		if err != nil {
			fmt.Fprintf(stderr, "lastmile localize: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	tab, err := localize.ReadCSV(in)
	if err != nil {
		fmt.Fprintf(stderr, "lastmile localize: %s: %v\n", *csvPath, err)
		return 1
	}
	res, err := localize.DefaultPlan.Localize(tab, *at)
	if err != nil {
		fmt.Fprintf(stderr, "lastmile localize: %s: %v\n", *csvPath, err)
		return 1
	}
	if *asJSON {
		out := struct {
			Causes []map[string]string `json:"causes"`
		}{Causes: []map[string]string{}}
		for _, c := range res.Causes {
			out.Causes = append(out.Causes, c.Element)
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "lastmile localize: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "minute %d against %d baseline minute(s): KPI %.4f, expected %.4f, excess %.1f\n",
		res.At, len(res.Baseline), res.KPI, res.Expected, res.Excess)
	if len(res.Causes) == 0 {
		fmt.Fprintln(stdout, "no cause: the minute looks normal")
		return 0
	}
	for i, c := range res.Causes {
		keys := make([]string, 0, len(c.Element))
		for k := range c.Element {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for j, k := range keys {
			parts[j] = k + "=" + c.Element[k]
		}
		fmt.Fprintf(stdout, "%d. %s  share %.0f%%  KPI %.4f vs expected %.4f (baseline %.4f)  support %.0f  confidence %.2f\n",
			i+1, strings.Join(parts, " "), 100*c.Share, c.KPI, c.Expected, c.Baseline, c.Support, c.Confidence)
	}
	return 0
}

// printIncidents writes one block per incident: its span, scope, KPI and
// cohort, how bad against what was expected, the evidence, and the trace
// commands of a few affected viewers.
func printIncidents(w io.Writer, a *query.LocalizeAnswer, loc *time.Location) {
	span := func(from, to time.Time) string {
		return from.In(loc).Format("2006-01-02 15:04:05") + " – " + to.In(loc).Format("15:04:05 MST")
	}
	fmt.Fprintf(w, "%s: %d incident(s)\n", span(a.From, a.To), len(a.Incidents))
	if len(a.Incidents) == 0 {
		fmt.Fprintln(w, "nothing abnormal: every KPI of every cohort is where its peers and its history put it")
		return
	}
	for i, inc := range a.Incidents {
		fmt.Fprintf(w, "\n%d. %s  %s  %s on %s\n", i+1, span(inc.From, inc.To), strings.ToUpper(inc.Scope), inc.KPI, cohort(inc.Dims))
		fmt.Fprintf(w, "   %s of %s views affected: %.1f%% vs %.1f%% expected  (share %.0f%%, confidence %.2f)\n",
			roundCount(inc.Affected), roundCount(inc.Views), 100*inc.Value, 100*inc.Expected, 100*inc.Share, inc.Confidence)
		for _, e := range inc.Evidence {
			fmt.Fprintf(w, "   + %s: %s\n", e.Source, e.Text)
		}
		for _, e := range inc.RuledOut {
			fmt.Fprintf(w, "   - not %s (%s): %s\n", e.Scope, e.Source, e.Text)
		}
		for _, t := range inc.Traces {
			fmt.Fprintf(w, "   $ %s\n", t)
		}
	}
}

// cohort renders dims as k=v pairs, sorted ("everyone" when empty).
func cohort(dims map[string]string) string {
	if len(dims) == 0 {
		return "everyone"
	}
	keys := make([]string, 0, len(dims))
	for k := range dims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + dims[k]
	}
	return strings.Join(parts, " ")
}

// roundCount prints a weighted count as a whole number with digit groups.
func roundCount(x float64) string { return groupDigits(int64(x + 0.5)) }
