package app

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseKeys(t *testing.T) {
	keys, err := parseKeys([]byte("keys:\n  3f9c0a: my-app\n  other-key: \"app two\"\n"))
	if err != nil || len(keys) != 2 || keys["3f9c0a"] != "my-app" || keys["other-key"] != "app two" {
		t.Fatalf("parseKeys = %v, %v", keys, err)
	}
	for _, bad := range []string{
		"",                            // no keys
		"keys: {}\n",                  // no keys
		"keys:\n  k1: app\n  k1: b\n", // duplicate key: yaml.v3 refuses it
		"keys:\n  \"\": app\n",        // empty key
		"keys:\n  \"k 1\": app\n",     // a blank in the key
		"keys:\n  \"k1\\t\": app\n",   // a trailing tab
		"keys:\n  k1: \"\"\n",         // empty app_id
		"keys:\n  k1:\n",              // no app_id
		"keys:\n  k1: \"a\\nb\"\n",    // control character in the app_id
		"keys:\n  \xff: app\n",        // not UTF-8
		"keys: [k1]\n",                // not a map
		"keys:\n  k1: [a]\n",          // app_id not a string
		"keys:\n  k1: &a app\n  k2: *a\n  k3: {x: 1}\n",
	} {
		if keys, err := parseKeys([]byte(bad)); err == nil {
			t.Errorf("%q: accepted as %q", bad, keys)
		}
	}
}

// Any keys file is refused or gives keys a client can send, each with an
// app_id: never a panic, never an empty key.
func FuzzParseKeys(f *testing.F) {
	for _, s := range []string{
		"keys:\n  3f9c0a: my-app\n",
		"keys:\n  a: x\n  b: y\n",
		"keys: {k: \"a b\", \"k2\": 'c'}\n",
		"keys:\n  \"\": app\n",
		"keys:\n  k1: &a app\n  k2: *a\n",
		"# comment\nkeys:\n  ? k\n  : v\n",
		"keys: !!map {k: v}\n",
		"keys:\n  k: >\n    folded\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseKeys(b)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("accepted a file without keys")
		}
		for k, id := range keys {
			if k == "" || id == "" || !utf8.ValidString(k) || !utf8.ValidString(id) ||
				strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 ||
				strings.IndexFunc(id, unicode.IsControl) >= 0 {
				t.Fatalf("accepted key %q for app_id %q", k, id)
			}
		}
	})
}
