package query

import "net/http"

// Placeholders until trace.go and metrics.go land.
func (s *Server) serveTrace(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "trace search is not built yet")
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "metrics are not built yet")
}
