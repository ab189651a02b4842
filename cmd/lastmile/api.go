package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
)

// callAPI is what `lastmile trace` and `lastmile metrics` share: find the
// token, resolve the address, GET path?q. It returns the answer, the base
// URL (for messages) and, on failure, the exit code to use: 2 for a usage
// problem (no token), 1 when the API could not answer.
func callAPI(addr, flagToken, dataDir, path string, q url.Values) (body []byte, base string, exit int, err error) {
	tok, err := apiToken(flagToken, dataDir)
	if err != nil {
		return nil, "", 2, err
	}
	base = strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	body, err = apiGet(base+path+"?"+q.Encode(), tok)
	if err != nil {
		return nil, base, 1, err
	}
	return body, base, 0, nil
}

func apiEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apiToken finds the bearer token: the flag, $LASTMILE_QUERY_TOKEN, or the
// file `lastmile run` writes into its data directory.
func apiToken(flagValue, dataDir string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if t := os.Getenv("LASTMILE_QUERY_TOKEN"); t != "" {
		return t, nil
	}
	path := filepath.Join(dataDir, "query-token")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no query token: give --token, set $LASTMILE_QUERY_TOKEN, or run where %s exists (--data DIR): %v", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// apiGet fetches an API answer; non-2xx answers become errors carrying the
// API's own message.
func apiGet(u, token string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the query API (is `lastmile run` or `lastmile query` running there? see --addr): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	var e query.ErrorBody
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("the query API refused the token (401): %s", msg)
	case http.StatusBadRequest:
		return nil, fmt.Errorf("bad request: %s", msg)
	}
	return nil, fmt.Errorf("the query API answered %s: %s", resp.Status, msg)
}

// getAnswer calls the read API for a CLI command and decodes the JSON
// answer into out (what names it in errors); with raw, it copies the answer
// to stdout instead. done says the command is finished, with exit code.
func getAnswer(cmd, addr, token, dataDir, path string, q url.Values, raw bool, stdout, stderr io.Writer, what string, out any) (done bool, code int) {
	body, base, code, err := callAPI(addr, token, dataDir, path, q)
	if err != nil {
		fmt.Fprintf(stderr, "lastmile %s: %v\n", cmd, err)
		return true, code
	}
	if raw {
		stdout.Write(body)
		return true, 0
	}
	if err := json.Unmarshal(body, out); err != nil {
		fmt.Fprintf(stderr, "lastmile %s: the answer of %s is not %s: %v\n", cmd, base, what, err)
		return true, 1
	}
	return false, 0
}

// apiFlags are the flags of the commands that read the query API: where it
// is, the token, and how to print.
type apiFlags struct {
	addr, token, dataDir *string
	asJSON, utc          *bool
}

func addAPIFlags(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		addr:    fs.String("addr", apiEnv("LASTMILE_ADDR", "http://127.0.0.1:8080"), "query API `URL`; $LASTMILE_ADDR sets the default"),
		token:   fs.String("token", "", "bearer token (default $LASTMILE_QUERY_TOKEN, else DATA/query-token)"),
		dataDir: fs.String("data", "data", "`DIR` whose query-token file to use when no token is given"),
		asJSON:  fs.Bool("json", false, "print the API's JSON answer as is"),
		utc:     fs.Bool("utc", false, "print times in UTC instead of the local time zone"),
	}
}

// loc is where times are printed.
func (a apiFlags) loc() *time.Location {
	if *a.utc {
		return time.UTC
	}
	return time.Local
}

// get calls the API for cmd; see getAnswer.
func (a apiFlags) get(cmd, path string, q url.Values, stdout, stderr io.Writer, what string, out any) (done bool, code int) {
	return getAnswer(cmd, *a.addr, *a.token, *a.dataDir, path, q, *a.asJSON, stdout, stderr, what, out)
}

// parseFlags parses a command's flags and refuses positional arguments;
// when ok is false the command ends with code (0 after -h).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	return 0, true
}
