package trace

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// cohortSQL is the median of each first-frame phase over the first frames
// of a slow start's cohort (its CohortDims values) in the CohortWindow
// before it, from qoe_first_frame (ordered by app_id, ts: the window's
// granules only).
func (dp DiagnosisPlan) cohortSQL(s *Session, ff *Event) string {
	cols := []string{"count() AS n"}
	for _, p := range schemas.FirstFramePhases {
		cols = append(cols, fmt.Sprintf("quantileExact(0.5)(%s_ms) AS %s", p, p))
	}
	conds := []string{"app_id = " + sqlString(s.AppID), "ts >= " + sqlTime(ff.TS.Add(-dp.CohortWindow)), "ts <= " + sqlTime(ff.TS)}
	for i, v := range dp.cohortKey(ff) {
		conds = append(conds, dp.CohortDims[i]+" = "+sqlString(v))
	}
	return fmt.Sprintf("SELECT %s\nFROM qoe_first_frame\nWHERE %s\nSETTINGS %s", strings.Join(cols, ", "), strings.Join(conds, " AND "), traceSettings)
}

// cohortLabel says which cohort a median is of.
func (dp DiagnosisPlan) cohortLabel(ff *Event) string {
	var parts []string
	for i, v := range dp.cohortKey(ff) {
		parts = append(parts, dp.CohortDims[i]+"="+v)
	}
	return fmt.Sprintf("%s, %s before the start", strings.Join(parts, " "), dp.CohortWindow)
}

// diagnoseAll gives each play session its diagnosis, looking up the cohort
// medians of up to MaxCohortQueries slow starts, in parallel.
func (s *searcher) diagnoseAll(ctx context.Context, sessions []Session) error {
	dp := s.Diagnosis
	meds := make([]*phaseMedians, len(sessions))
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	queries := 0
	for i := range sessions {
		ss := &sessions[i]
		if ss.Kind != "play" {
			continue
		}
		ff := dp.slowStart(ss)
		if ff == nil || queries >= dp.MaxCohortQueries {
			continue
		}
		queries++
		wg.Go(func() { meds[i], errs[i] = s.cohortMedians(ctx, ss, ff) })
	}
	wg.Wait()
	for i := range sessions {
		if errs[i] != nil {
			return errs[i]
		}
		if sessions[i].Kind == "play" {
			sessions[i].Summary.Diagnosis = dp.diagnose(&sessions[i], meds[i])
		}
	}
	return nil
}

func (s *searcher) cohortMedians(ctx context.Context, ss *Session, ff *Event) (*phaseMedians, error) {
	out, err := s.store.QueryJSON(ctx, s.Diagnosis.cohortSQL(ss, ff))
	if err != nil {
		return nil, fmt.Errorf("cohort medians of session %s: %w", ss.SessionID, err)
	}
	var row map[string]json.Number
	if err := json.Unmarshal(out, &row); err != nil {
		return nil, fmt.Errorf("cohort medians of session %s: %.200q: %w", ss.SessionID, out, err)
	}
	if n, _ := row["n"].Int64(); n == 0 {
		return nil, nil
	}
	m := &phaseMedians{Cohort: s.Diagnosis.cohortLabel(ff), Ms: map[string]int64{}}
	for _, p := range schemas.FirstFramePhases {
		if f, err := row[p].Float64(); err == nil {
			m.Ms[p] = int64(f)
		}
	}
	return m, nil
}
