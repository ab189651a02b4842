package collector

import (
	"net/http"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/cors"
)

// corsPolicy lets pages on other origins (web players, the browser SDK)
// post events and CMCD reports and read /v1/config. No credentials
// (cookies) are involved: the app key authenticates.
func corsPolicy(origins []string) cors.Policy {
	return cors.Policy{
		Origins: origins,
		Methods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
		// The app key header, the bearer token, and the body's type and coding.
		Headers: []string{"X-Lastmile-Key", "Authorization", "Content-Type", "Content-Encoding"},
		// Retry-After of 429 and 503, so a page can back off as told.
		Expose: []string{"Retry-After"},
		MaxAge: 10 * time.Minute,
	}
}
