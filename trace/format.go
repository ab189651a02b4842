package trace

import (
	"math"
	"strconv"
)

// Thousands prints n with thousands separators: 1560 → "1,560".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// Round1 prints a measure rounded for people: whole numbers with thousands
// separators from 10 up (24.99997 → "25", 1559.19 → "1,559"), one decimal
// below (7.6).
func Round1(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	if math.Abs(f) >= 9.95 {
		return Thousands(int64(math.Round(f)))
	}
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
}
