package cmcd

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Data
		wantErr bool
	}{
		{`sid="6e2fb550-c457-11e9-bb97-0800200c9a66"`, Data{"sid": "6e2fb550-c457-11e9-bb97-0800200c9a66"}, false},
		{`bl=21300,br=3200,bs,cid="faec5fc2-ac30-11eabb37-0242ac130002",d=4004,ot=v,sf=d,sid="abc",st=l`,
			Data{"bl": "21300", "br": "3200", "bs": "true", "cid": "faec5fc2-ac30-11eabb37-0242ac130002", "d": "4004", "ot": "v", "sf": "d", "sid": "abc", "st": "l"}, false},
		{`sid="a\"b,c"`, Data{"sid": `a"b,c`}, false},
		{`sid="open`, Data{}, true},
		{`=3`, Data{}, true},
		{`sid="x"y`, Data{}, true},
		{``, Data{}, false},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("Parse(%q) err = %v, want error %v", tc.in, err, tc.wantErr)
		}
		if !tc.wantErr && len(got) != len(tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("Parse(%q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

func TestFromRequest(t *testing.T) {
	q := url.Values{"CMCD": {Encode([]string{"br", "sid"}, Data{"sid": "s-1", "br": "800"})}}
	r := httptest.NewRequest("GET", "/live/room1.flv?"+q.Encode(), nil)
	d, err := FromRequest(r)
	if err != nil || d.SessionID() != "s-1" {
		t.Fatalf("query: %v %v", d, err)
	}
	if n, ok := d.Int("br"); !ok || n != 800 {
		t.Errorf("br = %d %v", n, ok)
	}
	r = httptest.NewRequest("GET", "/live/room1.flv", nil)
	r.Header.Set("CMCD-Session", `sid="s-2",st=l`)
	r.Header.Set("CMCD-Request", `bl=1200`)
	d, err = FromRequest(r)
	if err != nil || d.SessionID() != "s-2" || d["st"] != "l" || d["bl"] != "1200" {
		t.Fatalf("headers: %v %v", d, err)
	}
}
