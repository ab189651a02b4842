package query

import "net/http"

// WriteJSON writes an answer as the read API writes its own (no HTML
// escaping): for the handlers of other packages mounted with WithRoute.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }
