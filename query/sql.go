package query

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// sqlHandler serves GET/POST /api/v1/sql: one read-only statement against the
// store, answered as JSONEachRow. It is the operator's window into the data
// for what trace and metrics do not cover. Auth is the server's.
func sqlHandler(st Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, format string, args ...any) { writeError(w, code, format, args...) }
		q := r.URL.Query().Get("q")
		if r.Method == http.MethodPost {
			b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				fail(http.StatusBadRequest, "reading body: %v", err)
				return
			}
			q = string(b)
		} else if r.Method != http.MethodGet {
			fail(http.StatusMethodNotAllowed, "use GET ?q= or POST the statement")
			return
		}
		q = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(q), ";"))
		if q == "" {
			fail(http.StatusBadRequest, "no statement: pass ?q=SELECT ...")
			return
		}
		first := strings.ToUpper(strings.Fields(q)[0])
		switch first {
		case "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS":
		default:
			fail(http.StatusBadRequest, "only read-only statements are allowed here, got %s", first)
			return
		}
		if strings.Contains(q, ";") {
			fail(http.StatusBadRequest, "one statement at a time")
			return
		}
		out, err := st.QueryJSON(r.Context(), q)
		if err != nil {
			fail(http.StatusBadRequest, "query failed: %v", err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write(out)
	})
}

// LoadOrCreateToken returns the token in path, creating a random one the
// first time so the read API is never open by accident.
func LoadOrCreateToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write query token: %w", err)
	}
	return t, nil
}
