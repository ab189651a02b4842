package localize

import (
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	tab, err := ReadCSV(strings.NewReader("cdn,value,min,p2p,cnt\n5,3,60,1,48\n3,0,60,\"0\",2\n5,1,120,1,40\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tab.Attrs, ",") != "cdn,p2p" || len(tab.Rows) != 3 {
		t.Fatalf("attrs %v rows %d", tab.Attrs, len(tab.Rows))
	}
	r := tab.Rows[1]
	if r.Min != 60 || r.Num != 0 || r.Den != 2 || tab.Values[0][r.Key[0]] != "3" || tab.Values[1][r.Key[1]] != "0" {
		t.Errorf("row 2 = %+v", r)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "no header"},
		{"min,value,cdn\n1,2,3\n", "missing column(s) cnt"},
		{"min,value,cnt\n1,2,3\n", "no attribute column"},
		{"min,value,cnt,cdn,cdn\n", "appears twice"},
		{"min,value,cnt,cdn\n", "no data rows"},
		{"min,value,cnt,cdn\nx,1,2,a\n", "line 2: min"},
		{"min,value,cnt,cdn\n60,-1,2,a\n", "line 2: value"},
		{"min,value,cnt,cdn\n60,1,NaN,a\n", "line 2: cnt"},
		{"min,value,cnt,cdn\n60,1,2\n", "wrong number of fields"},
	} {
		_, err := ReadCSV(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzReadCSV feeds outside bytes to the CSV reader and, when a table comes
// out, localizes its last minute: neither may panic, and the causes must be
// well formed.
func FuzzReadCSV(f *testing.F) {
	f.Add("min,value,cnt,cdn,bitrate\n60,1,10,5,500\n120,9,10,5,500\n120,0,10,3,500\n")
	f.Add("cdn,value,min,p2p,cnt\n5,3,60,1,48\n3,0,60,0,2\n5,1,120,1,40\n")
	f.Add("\ufeffmin,value,cnt,isp\n1.0,0,1,联通\n61,1e300,1e308,\"a,b\"\n")
	f.Add("min,value,cnt,a\n\"60\",\"1\",\"2\",\"x\"\"y\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := ReadCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		ms := tab.Minutes()
		res, err := DefaultPlan.Localize(tab, ms[len(ms)-1])
		if err != nil {
			return
		}
		for _, c := range res.Causes {
			if len(c.Element) == 0 || c.Share < 0 || c.Share > 1 || c.Confidence < 0 || c.Confidence > 1 {
				t.Fatalf("bad cause %+v", c)
			}
		}
	})
}
