package cors

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

var testPolicy = Policy{Origins: []string{"https://app.example"}, Methods: []string{"GET", "HEAD"},
	Headers: []string{"CMCD-Request", "Range"}, Expose: []string{"X-Edge-Node"}}

// FuzzPreflight: a preflight is allowed exactly when its origin, its
// method and each of its requested headers are, and never reaches the
// wrapped handler; an allowed one echoes the origin.
func FuzzPreflight(f *testing.F) {
	f.Add("https://app.example", "GET", "cmcd-request, range")
	f.Add("https://app.example", "POST", "")
	f.Add("https://evil.example", "GET", "")
	f.Add("https://app.example", "GET", " , ,Range,,")
	f.Add("https://APP.example", "HEAD", "x-other")
	h := testPolicy.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	f.Fuzz(func(t *testing.T, origin, method, headers string) {
		if origin == "" || method == "" {
			return // no preflight
		}
		r := httptest.NewRequest(http.MethodOptions, "/", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", method)
		r.Header.Set("Access-Control-Request-Headers", headers)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		allowed := strings.EqualFold(r.Header.Get("Origin"), "https://app.example") && slices.Contains(testPolicy.Methods, r.Header.Get("Access-Control-Request-Method"))
		for _, x := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
			x = strings.TrimSpace(x)
			allowed = allowed && (x == "" || strings.EqualFold(x, "cmcd-request") || strings.EqualFold(x, "range"))
		}
		switch {
		case w.Code == http.StatusTeapot:
			t.Fatal("a preflight reached the handler")
		case allowed != (w.Code == http.StatusNoContent):
			t.Fatalf("origin %q method %q headers %q: %d, allowed %v", origin, method, headers, w.Code, allowed)
		case allowed && w.Header().Get("Access-Control-Allow-Origin") != r.Header.Get("Origin"):
			t.Fatalf("allowed preflight answered for %q", w.Header().Get("Access-Control-Allow-Origin"))
		case !allowed && w.Header().Get("Access-Control-Allow-Origin") != "":
			t.Fatalf("refused preflight carries Access-Control-Allow-Origin %q", w.Header().Get("Access-Control-Allow-Origin"))
		}
	})
}
