package app

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// parseKeys reads a keys file (KeysConfig). A key travels in a header or a
// query parameter and an app_id into every row, so a key with blanks or
// control characters (a typo no client could send) or an empty app_id is
// refused here rather than found missing later.
func parseKeys(b []byte) (map[string]string, error) {
	var kc KeysConfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, err
	}
	if len(kc.Keys) == 0 {
		return nil, errors.New("no keys under `keys:`")
	}
	for k, id := range kc.Keys {
		if k == "" || !utf8.ValidString(k) || strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return nil, fmt.Errorf("key %q: must be non-empty UTF-8 without blanks or control characters", k)
		}
		if id == "" || !utf8.ValidString(id) || strings.IndexFunc(id, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("app_id %q of key %q: must be non-empty UTF-8 without control characters", id, k)
		}
	}
	return kc.Keys, nil
}
