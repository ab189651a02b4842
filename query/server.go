// Package query is the read side of lastmile: trace search, QoE metrics and a
// read-only SQL window, served over HTTP under /api/v1/ with a bearer token.
package query

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"

	"github.com/go-kit/log"
)

// Store is what the query service needs from the analytics store.
type Store interface {
	// QueryJSON runs a SELECT and returns its rows as JSONEachRow.
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
}

// Server answers the read API.
type Server struct {
	store  Store
	sql    Store // the SQL window's store; store when not set
	token  string
	logger log.Logger
	routes map[string]http.Handler // WithRoute
}

// Option adjusts a Server.
type Option func(*Server)

// WithSQLStore runs the SQL window on st: a strict store.Reader (readonly=1,
// time and result limits, connections of its own), so that a token
// holder's SQL can neither write, nor lift its limits, nor hold the trace
// and metrics queries or ingest back.
func WithSQLStore(st Store) Option { return func(s *Server) { s.sql = st } }

// WithRoute serves h at path behind the token: a read endpoint of another
// package (the alert history, GET /api/v1/alerts).
func WithRoute(path string, h http.Handler) Option {
	return func(s *Server) {
		if s.routes == nil {
			s.routes = map[string]http.Handler{}
		}
		s.routes[path] = h
	}
}

// New returns a Server; token is the bearer token every /api/v1 call needs.
func New(st Store, token string, logger log.Logger, opts ...Option) *Server {
	s := &Server{store: st, sql: st, token: token, logger: logger}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Handler returns the /api/v1/ routes, all behind the bearer token.
func (s *Server) Handler() http.Handler {
	routes := map[string]http.Handler{
		"/api/v1/trace":    http.HandlerFunc(s.serveTrace),
		"/api/v1/metrics":  http.HandlerFunc(s.serveMetrics),
		"/api/v1/localize": http.HandlerFunc(s.serveLocalize),
		"/api/v1/sql":      sqlHandler(s.sql),
	}
	maps.Copy(routes, s.routes)
	mux := http.NewServeMux()
	var names []string
	for path, h := range routes {
		mux.Handle(path, h)
		names = append(names, "GET "+path)
	}
	sort.Strings(names)
	list := strings.Join(names, ", ")
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route %s %s; routes: %s", r.Method, r.URL.Path, list)
	})
	return s.auth(mux)
}

func (s *Server) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token: send Authorization: Bearer TOKEN (see --query-token, or DATA/query-token)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ErrorBody is the body of every non-2xx answer of the read API.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, ErrorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
