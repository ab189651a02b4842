package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/lastmile-qoe/lastmile/localize"
)

// localizeMain is `lastmile localize`: root cause of a KPI anomaly. Today
// only the offline form over a leaf table (--csv); the live form over the
// query API comes with issue 18's second part.
func localizeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile localize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: lastmile localize --csv FILE --at UNIX_SECONDS [--json]

Finds the attribute-value combinations that explain a ratio KPI's rise in one
minute of a leaf table, against the minutes before it. The table is CSV in the
RS convention: min (the minute, Unix seconds), value (numerator), cnt
(denominator), every other column an attribute. docs/localize.md describes
the method.

Flags:
`)
		fs.PrintDefaults()
	}
	csvPath := fs.String("csv", "", "leaf table `FILE` (CSV; - for stdin)")
	at := fs.Int64("at", 0, "the anomalous minute, `UNIX_SECONDS` (a value of the min column)")
	asJSON := fs.Bool("json", false, `print {"causes": [{"attr": "value", ...}, ...]}, best first`)
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
	if *csvPath == "" {
		fmt.Fprintln(stderr, "lastmile localize: --csv FILE is required (the live form over the query API is not built yet)")
		return 2
	}
	atSet := false
	fs.Visit(func(f *flag.Flag) { atSet = atSet || f.Name == "at" })
	if !atSet {
		fmt.Fprintln(stderr, "lastmile localize: --at UNIX_SECONDS is required")
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
