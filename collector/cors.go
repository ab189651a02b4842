package collector

import (
	"net/http"
	"slices"
	"strings"
)

// CORS of the collector's routes, so that a page on another origin (a web
// player's) can post events and CMCD reports and read /v1/config. No
// credentials (cookies) are involved: the app key authenticates.
const (
	corsAllowMethods = "GET, HEAD, POST, OPTIONS"
	// The app key header, the bearer token, and the body's type and coding.
	corsAllowHeaders = "X-Lastmile-Key, Authorization, Content-Type, Content-Encoding"
	// What a page may read of an answer besides the safelisted headers:
	// Retry-After on 429 and 503.
	corsExposeHeaders = "Retry-After"
	corsMaxAge        = "600"
)

// allowOrigin returns the Access-Control-Allow-Origin value for a request's
// Origin, "" when it is not allowed.
func (c *Collector) allowOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	if len(c.cfg.AllowedOrigins) == 0 || slices.Contains(c.cfg.AllowedOrigins, "*") {
		return "*"
	}
	for _, o := range c.cfg.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return origin
		}
	}
	return ""
}

// cors answers preflights and marks the answers of allowed origins. A
// request from an origin not allowed is still served (a browser then hides
// the answer from the page; other clients send no Origin).
func (c *Collector) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allow := c.allowOrigin(r.Header.Get("Origin"))
		if allow != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", allow)
			if allow != "*" {
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		if r.Method != http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case r.Header.Get("Origin") == "":
			w.Header().Set("Allow", corsAllowMethods)
			w.WriteHeader(http.StatusNoContent)
			return
		case allow == "":
			c.fail(w, "", http.StatusForbidden, "", "origin %q is not allowed (collector --cors-origins)", r.Header.Get("Origin"))
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
	})
}
