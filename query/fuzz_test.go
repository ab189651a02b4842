package query

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/trace"
)

// FuzzSQLGuard: the guard never panics, and what it accepts is one
// statement of an allowed kind in which no denied word or function call is
// left, that the guard accepts again unchanged (what runs is what was
// checked). The engine's readonly=1 behind it is tested in
// TestSQLGuardOnEngine and e2e/sqlguard_test.go.
func FuzzSQLGuard(f *testing.F) {
	for _, s := range []string{
		"SELECT count() FROM events",
		"SELECT * FROM file('/etc/passwd')",
		"SELECT file('/proc/self/environ')",
		"SELECT `file`('/x')",
		"SELECT file/**/('/x')",
		"SELECT 1 INTO OUTFILE '/tmp/x'",
		"WITH 1 AS x INSERT INTO FUNCTION file('/tmp/x', 'TSV') SELECT 1",
		"WITH 1 AS x INSERT INTO events VALUES (1)",
		"SELECT * FROM url('http://127.0.0.1:1/', 'TSV')",
		"SELECT * FROM remote('127.0.0.1:1', system.one)",
		"SELECT 1 SETTINGS readonly=0",
		"SELECT 'a\\'b', \"c\"\"d\", `e``f` -- x\n;",
		"SELECT 1 /* a /* b */ c */",
		"SELECT $$x$$",
		"SELECT 1 # c",
		"SELECT 1; DROP TABLE events",
		"SELECT 1file('/x')",
		"SELECT 0x1INTO OUTFILE 'x'",
		"EXPLAIN SYNTAX SELECT hasColumnInTable('h:1','d','t','c')",
		"SELECT '\\\\' , file('/x')",
		"SELECT 'x'' file(''/y'')'",
		"SELECT s3Cluster('c', 'u')",
		"SHOW TABLES",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, err := guardSQL(q)
		if err != nil {
			return
		}
		if len(out) > len(q) {
			t.Fatalf("accepted %q as the longer %q", q, out)
		}
		again, err := guardSQL(out)
		if err != nil || again != out {
			t.Fatalf("accepted %q as %q, which the guard then %v as %q", q, out, err, again)
		}
		toks, lexed, err := lexSQL(out)
		if err != nil || lexed != out {
			t.Fatalf("accepted %q as %q, which does not lex cleanly: %v", q, out, err)
		}
		if toks[0].kind != tokWord || !sqlFirstWords[strings.ToUpper(toks[0].text)] {
			t.Fatalf("accepted %q starting with %q", q, toks[0].text)
		}
		for i, tk := range toks {
			call := i+1 < len(toks) && toks[i+1].text == "("
			switch tk.kind {
			case tokPunct:
				if tk.text == ";" {
					t.Fatalf("accepted two statements: %q", out)
				}
			case tokQuoted:
				if call {
					t.Fatalf("accepted a call of the quoted name %s: %q", tk.text, out)
				}
			case tokWord:
				for w := strings.ToLower(tk.text); w != ""; w = wordTail(w) {
					switch w {
					case "into", "outfile", "infile", "insert", "settings", "set":
						t.Fatalf("accepted %s in %q", tk.text, out)
					case "file", "url", "remote", "mysql", "s3", "hascolumnintable", "executable":
						if call {
							t.Fatalf("accepted a call of %s in %q", tk.text, out)
						}
					}
				}
			}
		}
		// Outside strings and quoted names no comment, heredoc or '#' is left.
		var code strings.Builder
		for _, tk := range toks {
			if tk.kind != tokString && tk.kind != tokQuoted {
				code.WriteString(tk.text)
				code.WriteByte(' ')
			}
		}
		for _, bad := range []string{"--", "/*", "#", "$"} {
			if strings.Contains(code.String(), bad) {
				t.Fatalf("accepted %q with %s outside strings", out, bad)
			}
		}
	})
}

// FuzzParams: parsing the read API's query parameters never panics, and a
// request it accepts is within the documented bounds; filter values reach
// SQL only as one string literal.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		"session_id=s1&since=1h",
		"device_id=d&from=2026-11-21T10:00:00Z&to=2026-11-22",
		"user_id=u&from=now-7d&to=now&limit=500",
		"session_id=x&from=1700000000000&to=1700000001",
		"session_id=x&since=9999999999d",
		"session_id=x&since=1d-5h",
		"session_id=x&cursor=abc",
		"metric=play_success_rate&since=1h&step=1m&group_by=cdn,region&cdn=a,b",
		"metric=first_frame_ms&quantile=0.95&phase=dns_ms&read=raw&limit=10",
		"metric=stall_ratio&from=0&to=now&step=1s",
		"metric=x&metric=y",
		"metric=play_success_rate&region=%27%3B%20DROP%20TABLE%20events%20--",
		"metric=play_success_rate&since=-1h",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if req, err := parseTraceRequest(v, now); err == nil {
			if !req.From.Before(req.To) || req.To.Sub(req.From) > trace.MaxWindow {
				t.Fatalf("%q: trace window %s..%s", raw, req.From, req.To)
			}
			if req.Limit < 1 || req.Limit > trace.MaxLimit || req.ID == "" || len(req.ID) > trace.MaxIDLen {
				t.Fatalf("%q: trace request %+v", raw, req)
			}
		}
		if req, err := parseMetricsRequest(newParams(v, now)); err == nil {
			if req.step < time.Second || !req.from.Before(req.to) {
				t.Fatalf("%q: metrics step %s window %s..%s", raw, req.step, req.from, req.to)
			}
			if n := req.to.Sub(req.from) / req.step; n > maxPoints {
				t.Fatalf("%q: %d points", raw, n)
			}
			for _, fl := range req.filters {
				for _, val := range fl.Values {
					lit := sqlString(val)
					toks, _, err := lexSQL(lit)
					if err != nil || len(toks) != 1 || toks[0].kind != tokString || toks[0].text != lit {
						t.Fatalf("%q: value %q quoted as %q lexes as %v (%v)", raw, val, lit, toks, err)
					}
				}
			}
		}
		for _, s := range v["since"] {
			if d, err := ParseDuration(s); err == nil && d <= 0 {
				t.Fatalf("ParseDuration(%q) = %s", s, d)
			}
		}
		for _, s := range append(v["from"], v["to"]...) {
			if tm, err := ParseTime(s, now); err == nil && s == "now" && !tm.Equal(now) {
				t.Fatalf("ParseTime(now) = %s", tm)
			}
		}
	})
}
