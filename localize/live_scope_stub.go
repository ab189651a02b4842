package localize

import "context"

// A stand-in for the scope verdict until localize/scope.go is merged: it
// guesses the scope from the cohort's dimensions and KPI alone, with no
// server evidence. The merge deletes this file and sets decideScope to
// DefaultScopePlan.Decide.
func init() { decideScope = guessScope }

func guessScope(_ context.Context, _ Store, inc *Incident) error {
	has := func(d string) bool { _, ok := inc.Dims[d]; return ok }
	switch {
	case len(inc.Dims) == 0:
		inc.Scope = ScopeSystem
	case has("node_id") || has("cdn") || has("region"):
		inc.Scope = ScopeEdge
	case has("rendition") && (has("stream_id") || has("room_id")):
		inc.Scope = ScopeTranscode
	case has("stream_id") || has("room_id"):
		inc.Scope = ScopeSource
		if inc.KPI == KPILowFrameRate {
			inc.Scope = ScopePush
		}
	case has("isp") || has("network") || has("os") || has("app_version"):
		inc.Scope = ScopeClient
	default:
		inc.Scope = ScopeUnknown
	}
	inc.Evidence = []Evidence{{Scope: inc.Scope, Source: "cohort", Text: "guessed from the cohort's dimensions alone"}}
	return nil
}
