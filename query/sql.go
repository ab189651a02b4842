package query

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// sqlHandler serves GET/POST /api/v1/sql: one read-only statement against the
// store, answered as JSONEachRow. It is the operator's window into the data
// for what trace and metrics do not cover. Auth is the server's; st should
// be a strict store.Reader (readonly=1 and limits on connections of its own),
// and guardSQL refuses what readonly=1 does not cover.
func sqlHandler(st Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, format string, args ...any) { writeError(w, code, format, args...) }
		q := r.URL.Query().Get("q")
		if r.Method == http.MethodPost {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxSQLBytes+1))
			if err != nil {
				fail(http.StatusBadRequest, "reading body: %v", err)
				return
			}
			q = string(b)
		} else if r.Method != http.MethodGet {
			fail(http.StatusMethodNotAllowed, "use GET ?q= or POST the statement")
			return
		}
		stmt, err := guardSQL(q)
		if err != nil {
			fail(http.StatusBadRequest, "refused: %v", err)
			return
		}
		out, err := st.QueryJSON(r.Context(), stmt)
		if err != nil {
			code, msg := sqlFailure(r.Context(), err)
			if code == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "5")
			}
			fail(code, "%s", msg)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write(out)
	})
}

// sqlFailure maps an engine error to a status and a message that says which
// limit was hit. Both backends put "code: N" in their errors.
func sqlFailure(ctx context.Context, err error) (int, string) {
	msg := err.Error()
	code := 0
	if m := engineCode.FindStringSubmatch(msg); m != nil {
		code, _ = strconv.Atoi(m[1])
	}
	switch {
	case ctx.Err() != nil:
		return 499, "query abandoned: " + msg // nginx's "client closed request": nobody reads it
	case strings.Contains(msg, "all read connections busy"): // store.ErrReadersBusy
		return http.StatusServiceUnavailable, "SQL window busy, retry later: " + msg
	case code == 159: // TIMEOUT_EXCEEDED
		return http.StatusUnprocessableEntity, "query stopped at the SQL window's time limit (max_execution_time): " + msg
	case code == 396: // TOO_MANY_ROWS_OR_BYTES
		return http.StatusUnprocessableEntity, "result larger than the SQL window's limit (max_result_rows, max_result_bytes); add a LIMIT or aggregate: " + msg
	case code == 241: // MEMORY_LIMIT_EXCEEDED
		return http.StatusUnprocessableEntity, "query needs more memory than the SQL window's limit (max_memory_usage): " + msg
	case code == 164 || code == 497: // READONLY, ACCESS_DENIED
		return http.StatusForbidden, "refused by the engine's read-only mode: " + msg
	}
	return http.StatusBadRequest, "query failed: " + msg
}

var engineCode = regexp.MustCompile(`(?i)\bcode: (\d+)`)

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
