// Package localize finds where a failure is: the root cause of a KPI anomaly
// on a leaf table (which combinations of dimension values explain it). It has
// no HTTP; the query API and the CLI call it. docs/localize.md describes the
// method.
package localize

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A Table is a leaf table: each row is one leaf (a full combination of
// attribute values) in one minute, with the numerator and denominator of a
// ratio KPI (for example stalled viewers and viewers). Attribute values are
// interned per attribute: Rows[i].Key[j] indexes Values[j].
type Table struct {
	Attrs  []string   // attribute names, in column order
	Values [][]string // Values[j]: the distinct values of attribute j
	Rows   []Row

	index []map[string]uint32 // value → id, per attribute (while building)
}

// A Row is one leaf in one minute.
type Row struct {
	Min int64    // the minute, as Unix seconds
	Num float64  // numerator (e.g. stalled viewers)
	Den float64  // denominator (e.g. viewers)
	Key []uint32 // one value id per attribute
}

// NewTable starts an empty table with these attribute names.
func NewTable(attrs ...string) *Table {
	t := &Table{Attrs: slices.Clone(attrs), Values: make([][]string, len(attrs)), index: make([]map[string]uint32, len(attrs))}
	for j := range attrs {
		t.index[j] = map[string]uint32{}
	}
	return t
}

// Add appends one leaf; vals are the attribute values in t.Attrs order.
func (t *Table) Add(min int64, num, den float64, vals ...string) {
	if len(vals) != len(t.Attrs) {
		panic(fmt.Sprintf("localize: %d values for %d attributes", len(vals), len(t.Attrs)))
	}
	key := make([]uint32, len(vals))
	for j, v := range vals {
		id, ok := t.index[j][v]
		if !ok {
			id = uint32(len(t.Values[j]))
			t.index[j][v] = id
			t.Values[j] = append(t.Values[j], v)
		}
		key[j] = id
	}
	t.Rows = append(t.Rows, Row{Min: min, Num: num, Den: den, Key: key})
}

// Minutes returns the distinct minutes of the table, ascending.
func (t *Table) Minutes() []int64 {
	var ms []int64
	seen := map[int64]bool{}
	for _, r := range t.Rows {
		if !seen[r.Min] {
			seen[r.Min] = true
			ms = append(ms, r.Min)
		}
	}
	slices.Sort(ms)
	return ms
}

// The RS convention's reserved columns; every other column is an attribute.
const (
	ColMinute = "min"
	ColNum    = "value"
	ColDen    = "cnt"
)

// ReadCSV reads a leaf table in the RS convention: a header row naming the
// columns in any order, `min` (the minute as Unix seconds), `value` (the
// numerator) and `cnt` (the denominator), and every other column an attribute
// kept as text. It rejects a missing or repeated column, a row with the wrong
// number of fields, and numbers that are not finite and non-negative.
func ReadCSV(r io.Reader) (*Table, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty input: no header row")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	iMin, iNum, iDen := -1, -1, -1
	var attrs []string
	var attrCol []int
	seen := map[string]bool{}
	for i, h := range head {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if h == "" {
			return nil, fmt.Errorf("header: column %d has no name", i+1)
		}
		if seen[h] {
			return nil, fmt.Errorf("header: column %q appears twice", h)
		}
		seen[h] = true
		switch h {
		case ColMinute:
			iMin = i
		case ColNum:
			iNum = i
		case ColDen:
			iDen = i
		default:
			attrs = append(attrs, h)
			attrCol = append(attrCol, i)
		}
	}
	var missing []string
	for _, c := range []struct {
		name string
		i    int
	}{{ColMinute, iMin}, {ColNum, iNum}, {ColDen, iDen}} {
		if c.i < 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("header: missing column(s) %s (have %s)", strings.Join(missing, ", "), strings.Join(head, ","))
	}
	if len(attrs) == 0 {
		return nil, errors.New("header: no attribute column (every column other than min, value and cnt is an attribute)")
	}
	t := NewTable(attrs...)
	vals := make([]string, len(attrs))
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err // csv errors carry the line
		}
		m, err := parseMinute(rec[iMin])
		if err != nil {
			return nil, fmt.Errorf("line %d: min: %w", line, err)
		}
		num, err := parseCount(rec[iNum])
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %w", line, err)
		}
		den, err := parseCount(rec[iDen])
		if err != nil {
			return nil, fmt.Errorf("line %d: cnt: %w", line, err)
		}
		for j, c := range attrCol {
			vals[j] = strings.TrimSpace(rec[c])
		}
		t.Add(m, num, den, vals...)
	}
	if len(t.Rows) == 0 {
		return nil, errors.New("no data rows after the header")
	}
	return t, nil
}

func parseMinute(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("%q is not a whole number of Unix seconds", s)
	}
	return int64(f), nil
}

func parseCount(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("%q is not a finite non-negative number", s)
	}
	return f, nil
}
