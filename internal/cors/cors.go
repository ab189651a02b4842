// Package cors lets browser pages on other origins use an HTTP API or media
// server (CORS, the Fetch standard): it answers preflight OPTIONS requests
// and adds Access-Control-Allow-Origin to the answers of the wrapped
// handler. Requests without an Origin header (players outside browsers,
// curl) pass through unchanged.
package cors

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Policy says which pages may call and what they may send and read.
type Policy struct {
	// Origins are the allowed origins ("https://app.example.com"); "*" or
	// an empty list allows any.
	Origins []string
	// Methods are the allowed methods besides OPTIONS, e.g. GET, HEAD.
	Methods []string
	// Headers are the request headers a page may send beyond the
	// CORS-safelisted ones (CMCD-Request, Range, ...).
	Headers []string
	// Expose are the response headers a page's script may read beyond the
	// safelisted ones (Content-Length, Content-Range, X-Edge-Node, ...).
	Expose []string
	// MaxAge is how long a browser may cache a preflight answer.
	MaxAge time.Duration
}

// anyOrigin reports whether every origin is allowed.
func (p *Policy) anyOrigin() bool { return len(p.Origins) == 0 || slices.Contains(p.Origins, "*") }

// allowed returns the Access-Control-Allow-Origin value for origin, or ""
// when origin may not call.
func (p *Policy) allowed(origin string) string {
	if p.anyOrigin() {
		return "*"
	}
	for _, o := range p.Origins {
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return origin
		}
	}
	return ""
}

// Wrap returns h behind the policy. A preflight (OPTIONS with
// Access-Control-Request-Method) is answered here and never reaches h: 204
// with the allowed methods and headers, or 403 naming what is refused.
func (p Policy) Wrap(h http.Handler) http.Handler {
	methods := strings.Join(append(slices.Clone(p.Methods), http.MethodOptions), ", ")
	headers := strings.Join(p.Headers, ", ")
	expose := strings.Join(p.Expose, ", ")
	maxAge := strconv.Itoa(int(p.MaxAge / time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		allow := p.allowed(origin)
		hd := w.Header()
		if !p.anyOrigin() {
			hd.Add("Vary", "Origin") // the answer depends on who asks
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			p.preflight(w, r, allow, methods, headers, maxAge)
			return
		}
		if allow != "" {
			hd.Set("Access-Control-Allow-Origin", allow)
			if expose != "" {
				hd.Set("Access-Control-Expose-Headers", expose)
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (p *Policy) preflight(w http.ResponseWriter, r *http.Request, allow, methods, headers, maxAge string) {
	if allow == "" {
		http.Error(w, "cors: origin "+r.Header.Get("Origin")+" is not allowed", http.StatusForbidden)
		return
	}
	if m := r.Header.Get("Access-Control-Request-Method"); !slices.Contains(p.Methods, m) {
		http.Error(w, "cors: method "+m+" is not allowed (allowed: "+methods+")", http.StatusForbidden)
		return
	}
	for _, h := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
		if h = strings.TrimSpace(h); h != "" && !slices.ContainsFunc(p.Headers, func(a string) bool { return strings.EqualFold(a, h) }) {
			http.Error(w, "cors: request header "+h+" is not allowed (allowed: "+headers+")", http.StatusForbidden)
			return
		}
	}
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", allow)
	hd.Set("Access-Control-Allow-Methods", methods)
	if headers != "" {
		hd.Set("Access-Control-Allow-Headers", headers)
	}
	if p.MaxAge > 0 {
		hd.Set("Access-Control-Max-Age", maxAge)
	}
	w.WriteHeader(http.StatusNoContent)
}
