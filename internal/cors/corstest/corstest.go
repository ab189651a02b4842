// Package corstest checks the CORS headers of a handler's answers in table
// tests.
package corstest

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Case is one request and what its answer must carry.
type Case struct {
	Name    string
	Origins []string // the policy's allowed origins, for the caller
	Method  string
	Target  string
	Req     map[string]string // request headers
	Status  int
	Want    map[string]string // answer headers; "" means absent
}

// Check sends c's request to h and reports each way the answer differs.
func Check(t *testing.T, h http.Handler, c Case) {
	t.Helper()
	r := httptest.NewRequest(c.Method, c.Target, nil)
	for k, v := range c.Req {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != c.Status {
		t.Errorf("status %d, want %d", w.Code, c.Status)
	}
	for k, v := range c.Want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}
