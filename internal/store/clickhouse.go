package store

import (
	"context"
	"fmt"
	"math"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// ClickHouse is the Store on a ClickHouse server or cluster, over the native
// protocol. The same DDL and SQL as the embedded store apply.
type ClickHouse struct {
	conn driver.Conn
	opts *clickhouse.Options // for readers' own pools
}

var _ Store = (*ClickHouse)(nil)

// ClickHouseOption adjusts the client options before connecting.
type ClickHouseOption func(*clickhouse.Options)

// WithDatabase selects the database.
func WithDatabase(db string) ClickHouseOption {
	return func(o *clickhouse.Options) { o.Auth.Database = db }
}

// WithCredentials sets the user and password.
func WithCredentials(user, password string) ClickHouseOption {
	return func(o *clickhouse.Options) { o.Auth.Username, o.Auth.Password = user, password }
}

// ParseClickHouseAddr turns "host:9000" or a DSN like
// "clickhouse://user:pass@host:9000/db?dial_timeout=5s" into client options.
func ParseClickHouseAddr(addr string) (*clickhouse.Options, error) {
	if addr == "" {
		return nil, fmt.Errorf("store: empty ClickHouse address")
	}
	if strings.Contains(addr, "://") {
		o, err := clickhouse.ParseDSN(addr)
		if err != nil {
			return nil, fmt.Errorf("store: ClickHouse DSN: %w", err)
		}
		return o, nil
	}
	return &clickhouse.Options{Addr: strings.Split(addr, ",")}, nil
}

// OpenClickHouse connects to addr (see ParseClickHouseAddr) and pings the
// server so a wrong address fails here, not at the first insert.
func OpenClickHouse(ctx context.Context, addr string, opts ...ClickHouseOption) (*ClickHouse, error) {
	o, err := ParseClickHouseAddr(addr)
	if err != nil {
		return nil, err
	}
	if o.Auth.Database == "" {
		o.Auth.Database = "default"
	}
	for _, opt := range opts {
		opt(o)
	}
	conn, err := clickhouse.Open(o)
	if err != nil {
		return nil, fmt.Errorf("store: open ClickHouse %s: %w", addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: ping ClickHouse %s: %w", addr, err)
	}
	return &ClickHouse{conn: conn, opts: o}, nil
}

// Conn exposes the driver for what the Store interface does not cover.
func (c *ClickHouse) Conn() driver.Conn { return c.conn }

// Exec implements Store.
func (c *ClickHouse) Exec(ctx context.Context, sql string) error {
	if err := c.conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("store: exec: %w", err)
	}
	return nil
}

// Close implements Store.
func (c *ClickHouse) Close() error { return c.conn.Close() }

// InsertArrow implements Store: one native INSERT whose block is filled
// column by column from the Arrow arrays, with the dedup token sent as the
// query's insert_deduplication_token setting.
func (c *ClickHouse) InsertArrow(ctx context.Context, table string, rec arrow.RecordBatch, token string) (err error) {
	if rec.NumRows() == 0 {
		return nil
	}
	fields := rec.Schema().Fields()
	var q strings.Builder
	q.WriteString("INSERT INTO ")
	writeTable(&q, table)
	q.WriteString(" (")
	for i, f := range fields {
		if i > 0 {
			q.WriteString(", ")
		}
		writeIdent(&q, f.Name)
	}
	q.WriteString(")")

	settings := clickhouse.Settings{"max_partitions_per_insert_block": maxPartitionsPerInsert}
	if token != "" {
		settings["insert_deduplication_token"] = token
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	batch, err := c.conn.PrepareBatch(ctx, q.String())
	if err != nil {
		return fmt.Errorf("store: insert into %s: prepare: %w", table, err)
	}
	defer func() {
		if err != nil {
			_ = batch.Abort()
		}
	}()
	cols := batch.Columns()
	if len(cols) != len(fields) {
		return fmt.Errorf("store: insert into %s: server expects %d columns, batch has %d", table, len(cols), len(fields))
	}
	for i, f := range fields {
		v, err := arrowToColumn(rec.Column(i), string(cols[i].Type()))
		if err != nil {
			return fmt.Errorf("store: insert into %s: column %s: %w", table, f.Name, err)
		}
		if err := batch.Column(i).Append(v); err != nil {
			return fmt.Errorf("store: insert into %s: column %s: %w", table, f.Name, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("store: insert into %s: %w", table, err)
	}
	return nil
}

// unwrapType strips LowCardinality(...) and Nullable(...) from a ClickHouse
// type name and reports whether it was nullable.
func unwrapType(t string) (base string, nullable bool) {
	for {
		switch {
		case strings.HasPrefix(t, "LowCardinality(") && strings.HasSuffix(t, ")"):
			t = t[len("LowCardinality(") : len(t)-1]
		case strings.HasPrefix(t, "Nullable(") && strings.HasSuffix(t, ")"):
			t, nullable = t[len("Nullable("):len(t)-1], true
		default:
			return t, nullable
		}
	}
}

// arrowToColumn converts one Arrow array to the slice type clickhouse-go
// appends to a column of ClickHouse type chType. Fixed-width arrays whose Go
// type matches are passed without copying (the driver copies into its own
// buffers). Nulls become nil pointers for Nullable columns and the zero value
// otherwise, as ClickHouse's input_format_null_as_default does.
func arrowToColumn(arr arrow.Array, chType string) (any, error) {
	base, nullable := unwrapType(chType)
	if d, ok := arr.(*array.Dictionary); ok {
		return dictToColumn(d, base, nullable)
	}
	switch a := arr.(type) {
	case *array.Boolean:
		vals := make([]bool, a.Len())
		for i := range vals {
			vals[i] = a.Value(i)
		}
		if base == "Bool" {
			return withNulls(arr, vals, nullable), nil
		}
		return convertNum(arr, vals, base, nullable)
	case *array.String:
		return stringsOf(a, nullable), nil
	case *array.LargeString:
		return stringsOf(a, nullable), nil
	case *array.Binary:
		vals := make([]string, a.Len())
		for i := range vals {
			vals[i] = string(a.Value(i))
		}
		return withNulls(arr, vals, nullable), nil
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		raw := a.TimestampValues()
		if unit == arrow.Millisecond && strings.HasPrefix(base, "DateTime64") && !nullable {
			// The driver reads []int64 as Unix milliseconds: no time.Time per row.
			return zeroNulls(arr, unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(raw))), len(raw))), nil
		}
		vals := make([]time.Time, len(raw))
		for i, v := range raw {
			vals[i] = v.ToTime(unit)
		}
		return withNulls(arr, vals, nullable), nil
	case *array.Date32:
		vals := make([]time.Time, a.Len())
		for i := range vals {
			vals[i] = a.Value(i).ToTime()
		}
		return withNulls(arr, vals, nullable), nil
	case *array.Int8:
		return convertNum(arr, a.Int8Values(), base, nullable)
	case *array.Int16:
		return convertNum(arr, a.Int16Values(), base, nullable)
	case *array.Int32:
		return convertNum(arr, a.Int32Values(), base, nullable)
	case *array.Int64:
		return convertNum(arr, a.Int64Values(), base, nullable)
	case *array.Uint8:
		return convertNum(arr, a.Uint8Values(), base, nullable)
	case *array.Uint16:
		return convertNum(arr, a.Uint16Values(), base, nullable)
	case *array.Uint32:
		return convertNum(arr, a.Uint32Values(), base, nullable)
	case *array.Uint64:
		return convertNum(arr, a.Uint64Values(), base, nullable)
	case *array.Float32:
		return convertNum(arr, a.Float32Values(), base, nullable)
	case *array.Float64:
		return convertNum(arr, a.Float64Values(), base, nullable)
	}
	return nil, fmt.Errorf("arrow type %s into %s is not supported", arr.DataType(), chType)
}

type stringArray interface {
	arrow.Array
	Value(int) string
}

// stringsOf collects string headers; the bytes stay in the Arrow buffer and
// the driver copies them when appending.
func stringsOf(a stringArray, nullable bool) any {
	vals := make([]string, a.Len())
	for i := range vals {
		vals[i] = a.Value(i)
	}
	return withNulls(a, vals, nullable)
}

func dictToColumn(d *array.Dictionary, base string, nullable bool) (any, error) {
	dict, ok := d.Dictionary().(stringArray)
	if !ok {
		return nil, fmt.Errorf("dictionary of %s is not supported", d.Dictionary().DataType())
	}
	vals := make([]string, d.Len())
	for i := range vals {
		if d.IsValid(i) {
			vals[i] = dict.Value(d.GetValueIndex(i))
		}
	}
	return withNulls(d, vals, nullable), nil
}

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// convertNum hands vals over as-is when the Go type already matches base,
// else converts to the type the driver wants for base.
func convertNum[T number | bool](arr arrow.Array, vals []T, base string, nullable bool) (any, error) {
	switch base {
	case "Int8":
		return numAs[int8](arr, vals, nullable), nil
	case "Int16":
		return numAs[int16](arr, vals, nullable), nil
	case "Int32":
		return numAs[int32](arr, vals, nullable), nil
	case "Int64":
		return numAs[int64](arr, vals, nullable), nil
	case "UInt8":
		return numAs[uint8](arr, vals, nullable), nil
	case "UInt16":
		return numAs[uint16](arr, vals, nullable), nil
	case "UInt32":
		return numAs[uint32](arr, vals, nullable), nil
	case "UInt64":
		return numAs[uint64](arr, vals, nullable), nil
	case "Float32":
		return numAs[float32](arr, vals, nullable), nil
	case "Float64":
		return numAs[float64](arr, vals, nullable), nil
	case "Bool":
		out := make([]bool, len(vals))
		for i, v := range vals {
			out[i] = toF64(v) != 0
		}
		return withNulls(arr, out, nullable), nil
	}
	if strings.HasPrefix(base, "DateTime64") {
		// Integers into DateTime64 are taken as Unix milliseconds.
		return numAs[int64](arr, vals, nullable), nil
	}
	return nil, fmt.Errorf("arrow %s into %s is not supported", arr.DataType(), base)
}

func numAs[D number, S number | bool](arr arrow.Array, vals []S, nullable bool) any {
	if same, ok := any(vals).([]D); ok && !nullable {
		return zeroNulls(arr, same)
	}
	out := make([]D, len(vals))
	for i, v := range vals {
		switch x := any(v).(type) {
		case bool:
			if x {
				out[i] = 1
			}
		default:
			out[i] = D(toF64OrInt[D](v))
		}
	}
	return withNulls(arr, out, nullable)
}

// toF64OrInt converts without going through float64 for integers, so
// 64-bit values keep all their bits.
func toF64OrInt[D number, S number | bool](v S) D {
	switch x := any(v).(type) {
	case int8:
		return D(x)
	case int16:
		return D(x)
	case int32:
		return D(x)
	case int64:
		return D(x)
	case uint8:
		return D(x)
	case uint16:
		return D(x)
	case uint32:
		return D(x)
	case uint64:
		return D(x)
	case float32:
		return D(x)
	case float64:
		return D(x)
	}
	return 0
}

func toF64[S number | bool](v S) float64 {
	switch x := any(v).(type) {
	case bool:
		if x {
			return 1
		}
		return 0
	}
	return toF64OrInt[float64](v)
}

// zeroNulls returns vals with null slots zeroed. Arrow leaves their content
// undefined; when there are nulls the Arrow buffer is copied first.
func zeroNulls[T any](arr arrow.Array, vals []T) []T {
	if arr.NullN() == 0 {
		return vals
	}
	out := make([]T, len(vals))
	copy(out, vals)
	var zero T
	for i := range out {
		if arr.IsNull(i) {
			out[i] = zero
		}
	}
	return out
}

// withNulls returns vals for a non-nullable column (nulls zeroed) or []*T
// with nil for nulls for a Nullable one.
func withNulls[T any](arr arrow.Array, vals []T, nullable bool) any {
	if !nullable {
		return zeroNulls(arr, vals)
	}
	ptrs := make([]*T, len(vals))
	for i := range vals {
		if arr.IsValid(i) {
			ptrs[i] = &vals[i]
		}
	}
	return ptrs
}

// QueryJSON implements Store. Rows are encoded in Go the way ClickHouse 26's
// JSONEachRow prints them with default settings (64-bit integers unquoted,
// '/' escaped, NaN and Inf as null, DateTime64 as text), so both backends
// return the same bytes.
func (c *ClickHouse) QueryJSON(ctx context.Context, sql string) ([]byte, error) {
	return queryJSON(ctx, c.conn, sql)
}

func queryJSON(ctx context.Context, conn driver.Conn, sql string) ([]byte, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("store: query: %w", err)
	}
	defer rows.Close()

	types := rows.ColumnTypes()
	dest := make([]any, len(types))
	keys := make([][]byte, len(types))
	chTypes := make([]string, len(types))
	for i, ct := range types {
		dest[i] = reflect.New(ct.ScanType()).Interface()
		chTypes[i] = ct.DatabaseTypeName()
		k := appendJSONString(nil, ct.Name())
		if i == 0 {
			keys[i] = append([]byte{'{'}, k...)
		} else {
			keys[i] = append([]byte{','}, k...)
		}
		keys[i] = append(keys[i], ':')
	}
	out := []byte{}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("store: query: scan: %w", err)
		}
		for i := range dest {
			out = append(out, keys[i]...)
			out = appendJSONValue(out, chTypes[i], reflect.ValueOf(dest[i]).Elem())
		}
		out = append(out, "}\n"...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query: %w", err)
	}
	return out, nil
}

// appendJSONValue writes v (scanned from a column of type chType).
func appendJSONValue(b []byte, chType string, v reflect.Value) []byte {
	base, _ := unwrapType(chType)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return append(b, "null"...)
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return appendTime(b, base, x)
	case decimal.Decimal:
		return append(b, x.String()...)
	case uuid.UUID:
		return appendJSONString(b, x.String())
	case net.IP:
		return appendJSONString(b, x.String())
	case []byte:
		return appendJSONString(b, string(x))
	case fmt.Stringer:
		if v.Kind() == reflect.Struct {
			return appendJSONString(b, x.String())
		}
	}
	switch v.Kind() {
	case reflect.String:
		return appendJSONString(b, v.String())
	case reflect.Bool:
		return strconv.AppendBool(b, v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(b, v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.AppendUint(b, v.Uint(), 10)
	case reflect.Float32:
		return appendFloat(b, v.Float(), 32)
	case reflect.Float64:
		return appendFloat(b, v.Float(), 64)
	case reflect.Slice, reflect.Array:
		elem := innerType(base)
		b = append(b, '[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONValue(b, elem, v.Index(i))
		}
		return append(b, ']')
	case reflect.Map:
		// ClickHouse keeps insertion order; Go maps have none, so sort.
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, fmt.Sprint(k.Interface()))
			b = append(b, ':')
			b = appendJSONValue(b, "", v.MapIndex(k))
		}
		return append(b, '}')
	}
	return appendJSONString(b, fmt.Sprint(v.Interface()))
}

// innerType is T of Array(T), or "" when base is not an Array.
func innerType(base string) string {
	if strings.HasPrefix(base, "Array(") && strings.HasSuffix(base, ")") {
		return base[len("Array(") : len(base)-1]
	}
	return ""
}

// appendTime prints Date, DateTime and DateTime64(p) as ClickHouse does; the
// driver already gives the time in the column's (or server's) zone.
func appendTime(b []byte, base string, t time.Time) []byte {
	b = append(b, '"')
	switch {
	case strings.HasPrefix(base, "Date32"), base == "Date":
		b = t.AppendFormat(b, "2006-01-02")
	case strings.HasPrefix(base, "DateTime64("):
		b = t.AppendFormat(b, "2006-01-02 15:04:05")
		if p := dateTime64Precision(base); p > 0 {
			frac := strconv.FormatInt(int64(t.Nanosecond())+1e9, 10)[1:] // 9 digits
			if p > 9 {
				p = 9
			}
			b = append(b, '.')
			b = append(b, frac[:p]...)
		}
	default:
		b = t.AppendFormat(b, "2006-01-02 15:04:05")
	}
	return append(b, '"')
}

func dateTime64Precision(base string) int {
	s := strings.TrimPrefix(base, "DateTime64(")
	end := strings.IndexAny(s, ",)")
	if end < 0 {
		return 3
	}
	p, err := strconv.Atoi(strings.TrimSpace(s[:end]))
	if err != nil {
		return 3
	}
	return p
}

// appendFloat: NaN and ±Inf are null; plain notation for moderate
// magnitudes and shortest exponent form ("1e-7") otherwise, like ClickHouse.
func appendFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if a := math.Abs(f); a == 0 || (a >= 1e-5 && a < 1e21) {
		return strconv.AppendFloat(b, f, 'f', -1, bits)
	}
	s := strconv.FormatFloat(f, 'e', -1, bits) // 1e-07, 1.5e+22
	mant, exp, _ := strings.Cut(s, "e")
	sign := ""
	if exp[0] == '-' {
		sign = "-"
	}
	exp = strings.TrimLeft(exp[1:], "0")
	b = append(b, mant...)
	b = append(b, 'e')
	b = append(b, sign...)
	return append(b, exp...)
}

// appendJSONString quotes s the way ClickHouse's JSON formats do: '"', '\'
// and '/' escaped, control characters as \b \f \n \r \t or \u00XX, other
// bytes (including non-ASCII UTF-8) as they are.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\', '/':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}
