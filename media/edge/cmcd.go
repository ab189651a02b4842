package edge

import (
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/media/sign"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// cmcdColumns maps the CMCD keys edge_access keeps in typed columns to
// their fields; every other key goes to cmcd_rest.
var cmcdColumns = map[string]string{
	"bl": "cmcd_bl", "br": "cmcd_br", "mtp": "cmcd_mtp", "d": "cmcd_d", "rtp": "cmcd_rtp",
	"ot": "cmcd_ot", "sf": "cmcd_sf", "st": "cmcd_st", "su": "cmcd_su",
}

// edgeAccess is the catalog entry the typed CMCD values must fit.
var edgeAccess = schemas.Lookup("edge_access")

// cmcdFields are the catalog fields of cmcdColumns, by column.
var cmcdFields = func() map[string]*schemas.Field {
	m := map[string]*schemas.Field{}
	for i := range edgeAccess.Fields {
		if f := &edgeAccess.Fields[i]; strings.HasPrefix(f.Name, "cmcd_") {
			m[f.Name] = f
		}
	}
	return m
}()

// addCMCD puts a request's CMCD into its edge_access: the keys metrics use
// as typed fields, the rest (sid aside, it is session_id) as CMCD text in
// cmcd_rest, each key with its value (a flag as k=true, which the store's
// map reads as any other pair). A value that does not fit its column goes
// to cmcd_rest as sent. The event must never be rejected for a player's odd
// CMCD: bytes that are not UTF-8 become U+FFFD, and pairs past cmcd_rest's
// length bound are left out.
func addCMCD(ev map[string]any, d cmcd.Data) {
	var rest []string
	for k, v := range d {
		if k == "sid" {
			continue
		}
		if col, ok := cmcdColumns[k]; ok {
			if x, ok := typedCMCD(col, v); ok {
				ev[col] = x
				continue
			}
		}
		rest = append(rest, k)
	}
	if len(rest) == 0 {
		return
	}
	sort.Strings(rest)
	var b strings.Builder
	for _, k := range rest {
		pair := cmcdValue(k) + "=" + cmcdValue(d[k])
		if b.Len()+1+len(pair) > cmcdFields["cmcd_rest"].MaxLen {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pair)
	}
	if b.Len() > 0 {
		ev["cmcd_rest"] = b.String()
	}
}

// typedCMCD converts a CMCD value for its column, within the column's range.
func typedCMCD(col, v string) (any, bool) {
	f := cmcdFields[col]
	if f == nil {
		return nil, false
	}
	switch f.Kind {
	case schemas.KindBool:
		return v == "true", v == "true" || v == "false"
	case schemas.KindInt:
		n, ok := cmcd.IntValue(v)
		return n, ok && (!f.HasRange() || float64(n) >= f.Min && float64(n) <= f.Max)
	}
	return v, v != "" && len(v) <= f.MaxLen && utf8.ValidString(v)
}

// cmcdValue writes a key or value back as CMCD: as it came when it needs
// no quotes, else a quoted string with " and \ escaped.
func cmcdValue(v string) string {
	if v != "" && strings.IndexFunc(v, needsQuote) < 0 {
		return v
	}
	return `"` + quoteEscaper.Replace(strings.ToValidUTF8(v, "\uFFFD")) + `"`
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func needsQuote(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("()._-:/*+;", r))
}

// signatureQuery is the part of a playlist's query its segment URIs carry:
// the signature (sign.ParamExpires and sign.ParamSign), "" when unsigned.
func signatureQuery(q url.Values) string {
	out := url.Values{}
	for _, k := range []string{sign.ParamExpires, sign.ParamSign} {
		if v, ok := q[k]; ok {
			out[k] = v
		}
	}
	return out.Encode()
}
