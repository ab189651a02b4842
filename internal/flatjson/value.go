package flatjson

// IsObject reports whether b is exactly one well-formed JSON object,
// surrounded by whitespace at most.
func IsObject(b []byte) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	end, _, err := scanValue(b, i, 0)
	return err == nil && skipWS(b, end) == len(b)
}
