package localize

import "testing"

// startSeries is a start per second over [0, n) seconds from base, of the
// version pick names ("" for the usual one).
func startSeries(n int, pick func(sec int) string) []versionRow {
	const base = 1_000_000
	var rows []versionRow
	for i := 0; i < n; i++ {
		v := pick(i)
		if v == "" {
			v = "5.2.0"
		}
		rows = append(rows, versionRow{Version: v, Sec: base + int64(i), N: 1})
	}
	return rows
}

// TestRolloutTest: a version whose share of first starts grows is a
// rollout; a steady one, however rare or few its starts, is not.
func TestRolloutTest(t *testing.T) {
	const from = 1_000_000 + 250 // the span: seconds 250..300
	cases := []struct {
		name    string
		version string
		rows    []versionRow
		want    bool
	}{{
		name:    "a new version ramping up through the span",
		version: "6.0.0",
		rows: startSeries(300, func(i int) string {
			if i >= 230 && i%3 == 0 {
				return "6.0.0"
			}
			return ""
		}),
		want: true,
	}, {
		// The loaded e2e run: the span starts once the ramp is over,
		// the version's share before the span is already large.
		name:    "a rollout whose span starts after its ramp ended",
		version: "6.0.0",
		rows: startSeries(300, func(i int) string {
			if i >= 200 && i < 245 && i%2 == 0 {
				return "6.0.0"
			}
			return ""
		}),
		want: true,
	}, {
		name:    "a staged rollout, rare before the span, grows in it",
		version: "6.0.0",
		rows: startSeries(300, func(i int) string {
			if (i < 250 && i%50 == 7) || (i >= 250 && i%2 == 0) {
				return "6.0.0"
			}
			return ""
		}),
		want: true,
	}, {
		// Under 5% before the span: a rare version is not a new one when
		// its share holds steady.
		name:    "a steady rare version is not",
		version: "5.0.9",
		rows: startSeries(300, func(i int) string {
			if i%30 == 11 {
				return "5.0.9"
			}
			return ""
		}),
		want: false,
	}, {
		name:    "a steady version with a few starts, all late by chance, is not",
		version: "5.0.9",
		rows: startSeries(300, func(i int) string {
			if i == 240 || i == 262 || i == 281 {
				return "5.0.9"
			}
			return ""
		}),
		want: false,
	}, {
		name:    "a rare version first seen well into the history is not",
		version: "5.0.9",
		rows: startSeries(300, func(i int) string {
			if i == 60 || i == 110 || i == 170 || i == 230 || i == 290 {
				return "5.0.9"
			}
			return ""
		}),
		want: false,
	}, {
		name:    "a common version first seen a few starts in is not",
		version: "5.3.0",
		rows: startSeries(300, func(i int) string {
			if i >= 6 && i%3 == 0 {
				return "5.3.0"
			}
			return ""
		}),
		want: false,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, text := DefaultScopePlan.rolloutTest(tc.rows, tc.version, from)
			t.Log(text)
			if got != tc.want {
				t.Errorf("rollout %v, want %v", got, tc.want)
			}
		})
	}
}

// TestBinomCDF checks the tail against exact sums.
func TestBinomCDF(t *testing.T) {
	for _, tc := range []struct {
		x, n    int
		p, want float64
	}{{0, 3, 0.5, 0.125}, {1, 3, 0.5, 0.5}, {3, 3, 0.5, 1}, {0, 10, 0.1, 0.3486784401}, {2, 10, 0.3, 0.3827827864}} {
		if got := binomCDF(tc.x, tc.n, tc.p); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("binomCDF(%d, %d, %g) = %g, want %g", tc.x, tc.n, tc.p, got, tc.want)
		}
	}
}
