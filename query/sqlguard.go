package query

import (
	"fmt"
	"strings"
)

// The SQL window's guard. The engine is the real protection: the window's
// connections run ClickHouse readonly=1 with fixed limits (internal/store
// ReadOptions), which refuses writes, DDL, SET/SETTINGS and every table
// function the engine does not mark safe. The guard is the second line and
// covers what readonly=1 does not: INTO OUTFILE (written by chDB's client
// side, not the engine) and functions that reach the host or the network from
// a SELECT (file('/etc/passwd') as a scalar function, hasColumnInTable with a
// host). It also turns the usual mistakes into a clear 400 before the engine.
//
// It lexes the statement the way ClickHouse does (strings, quoted names,
// comments), refuses what it cannot be sure about, and returns the statement
// with its comments removed: what runs is exactly the token stream checked.

// maxSQLBytes is the longest statement the window takes; ClickHouse's own
// max_query_size default.
const maxSQLBytes = 256 << 10

// sqlFirstWords are the statements the window runs.
var sqlFirstWords = map[string]bool{
	"SELECT": true, "WITH": true, "SHOW": true, "DESCRIBE": true, "DESC": true, "EXPLAIN": true, "EXISTS": true,
}

// sqlDeniedWords may not appear as bare words anywhere: they write, load or
// change settings. A column with such a name can still be used in
// backquotes (`format`).
var sqlDeniedWords = map[string]string{
	"INTO":     "INTO (OUTFILE or INSERT) writes",
	"OUTFILE":  "INTO OUTFILE writes a file on the server",
	"INFILE":   "FROM INFILE reads a file on the server",
	"INSERT":   "INSERT writes",
	"SETTINGS": "SETTINGS are fixed for the SQL window (time and result limits); they cannot be changed in the query",
	"SET":      "SET changes settings, which are fixed for the SQL window",
	"ALTER":    "ALTER writes", "CREATE": "CREATE writes", "DROP": "DROP writes", "TRUNCATE": "TRUNCATE writes",
	"RENAME": "RENAME writes", "ATTACH": "ATTACH writes", "DETACH": "DETACH writes", "OPTIMIZE": "OPTIMIZE writes",
	"GRANT": "GRANT changes access", "REVOKE": "REVOKE changes access", "KILL": "KILL stops queries",
	"BACKUP": "BACKUP writes", "RESTORE": "RESTORE writes", "UNDROP": "UNDROP writes", "EXCHANGE": "EXCHANGE writes",
}

// sqlDeniedFuncs are functions (table or scalar) that read or write files on
// the server, connect to other hosts, or run programs; names compared in
// lower case. The families below cover their variants (icebergS3Cluster...).
var sqlDeniedFuncs = map[string]bool{
	"file": true, "filecluster": true, "filesystem": true, "url": true, "urlcluster": true,
	"remote": true, "remotesecure": true, "cluster": true, "clusterallreplicas": true,
	"mysql": true, "postgresql": true, "mongodb": true, "redis": true, "jdbc": true, "odbc": true,
	"sqlite": true, "executable": true, "executablepool": true, "gcs": true, "oss": true, "cosn": true,
	"dictionary": true, "input": true, "arrowstream": true, "ytsaurus": true, "loop": true,
	"hascolumnintable": true, "catboostevaluate": true, "viewexplain": true, "hive": true,
	"mergetreeindex": true, "mergetreeanalyzeindexes": true, "mergetreeanalyzeindexesuuid": true,
	"mergetreeprojection": true, "mergetreetextindex": true,
}

var sqlDeniedFamilies = []string{
	"s3", "hdfs", "azure", "iceberg", "deltalake", "hudi", "paimon", "arrowflight", "prometheus",
	"kafka", "nats", "rabbitmq",
}

func sqlFuncDenied(name string) bool {
	l := strings.ToLower(name)
	if sqlDeniedFuncs[l] {
		return true
	}
	for _, f := range sqlDeniedFamilies {
		if strings.HasPrefix(l, f) {
			return true
		}
	}
	return false
}

// sqlTokKind is what a lexed token is.
type sqlTokKind uint8

const (
	tokWord   sqlTokKind = iota // bare word: keyword, name or number
	tokQuoted                   // "name" or `name`
	tokString                   // 'string'
	tokPunct                    // one byte of punctuation or an operator
)

type sqlTok struct {
	kind sqlTokKind
	text string // as written (quotes included)
}

// guardSQL checks one statement for the SQL window and returns it as it will
// run: comments removed, a trailing ';' dropped. The error says why it is
// refused.
func guardSQL(q string) (string, error) {
	if len(q) > maxSQLBytes {
		return "", fmt.Errorf("statement is %d bytes; the limit is %d", len(q), maxSQLBytes)
	}
	toks, out, err := lexSQL(q)
	if err != nil {
		return "", err
	}
	// A trailing ';' is fine; any other is a second statement.
	if n := len(toks); n > 0 && toks[n-1].kind == tokPunct && toks[n-1].text == ";" {
		toks = toks[:n-1]
		out = strings.TrimSpace(out)
		out = strings.TrimSpace(out[:len(out)-1])
	}
	if len(toks) == 0 {
		return "", fmt.Errorf("no statement: pass ?q=SELECT ...")
	}
	if toks[0].kind != tokWord || !sqlFirstWords[strings.ToUpper(toks[0].text)] {
		return "", fmt.Errorf("only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) are allowed here, got %s", toks[0].text)
	}
	for i, t := range toks {
		next := ""
		if i+1 < len(toks) && toks[i+1].kind == tokPunct {
			next = toks[i+1].text
		}
		switch t.kind {
		case tokPunct:
			if t.text == ";" {
				return "", fmt.Errorf("one statement at a time")
			}
		case tokWord:
			// The engine may split a word after a digit ("1file" as 1 and
			// file): every such tail is checked too.
			for w := t.text; w != ""; w = wordTail(w) {
				if why, ok := sqlDeniedWords[strings.ToUpper(w)]; ok {
					return "", fmt.Errorf("%s is not allowed in the SQL window: %s", strings.ToUpper(w), why)
				}
				if strings.EqualFold(w, "FORMAT") && next != "(" {
					return "", fmt.Errorf("FORMAT is not allowed in the SQL window: answers are JSON lines")
				}
				if next == "(" && sqlFuncDenied(w) {
					return "", fmt.Errorf("function %s is not allowed in the SQL window: it reads files, connects to other hosts or runs programs", w)
				}
			}
		case tokQuoted:
			// ClickHouse calls `file`(...) too; a function name never needs quotes.
			if next == "(" {
				return "", fmt.Errorf("quoted function name %s is not allowed in the SQL window; write functions unquoted", t.text)
			}
		}
	}
	return out, nil
}

// lexSQL splits q into tokens the way ClickHouse's lexer does and returns
// q with every comment replaced by a space. Anything it cannot lex with
// certainty (heredocs, '#' comments, control bytes, bytes outside ASCII
// between tokens, unterminated strings or comments) is refused: a lexer that
// disagreed with the engine on where a string ends could let code through as
// data.
func lexSQL(q string) ([]sqlTok, string, error) {
	var toks []sqlTok
	var out strings.Builder
	out.Grow(len(q))
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			out.WriteByte(c)
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			out.WriteByte(' ')
			i += j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return nil, "", fmt.Errorf("unterminated /* comment")
			}
			if strings.Contains(q[i+2:i+2+j], "/*") {
				return nil, "", fmt.Errorf("nested /* comments are not allowed")
			}
			out.WriteByte(' ')
			i += 2 + j + 2
		case c == '\'' || c == '"' || c == '`':
			j, err := quotedEnd(q, i)
			if err != nil {
				return nil, "", err
			}
			k := tokString
			if c != '\'' {
				k = tokQuoted
			}
			toks = append(toks, sqlTok{k, q[i:j]})
			out.WriteString(q[i:j])
			i = j
		case isWordByte(c):
			j := i + 1
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			toks = append(toks, sqlTok{tokWord, q[i:j]})
			out.WriteString(q[i:j])
			i = j
		case c == '#':
			return nil, "", fmt.Errorf("'#' is not allowed outside strings; use -- comments")
		case c == '$':
			return nil, "", fmt.Errorf("'$' (heredoc strings) is not allowed outside strings; use 'quoted' strings")
		case c == '\\':
			return nil, "", fmt.Errorf("'\\' is not allowed outside strings")
		case c < 0x20 || c >= 0x7f:
			return nil, "", fmt.Errorf("byte 0x%02x at offset %d is not allowed outside strings and quoted names", c, i)
		default:
			toks = append(toks, sqlTok{tokPunct, q[i : i+1]})
			out.WriteByte(c)
			i++
		}
	}
	return toks, out.String(), nil
}

// quotedEnd returns the index just past the quoted token starting at q[i]:
// a backslash escapes the next byte and a doubled quote stands for one, as
// in ClickHouse.
func quotedEnd(q string, i int) (int, error) {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			j++
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c at offset %d", quote, i)
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// wordTail returns w after its first digit that is followed by more, or "".
func wordTail(w string) string {
	for i := 0; i+1 < len(w); i++ {
		if isDigit(w[i]) {
			return w[i+1:]
		}
	}
	return ""
}
