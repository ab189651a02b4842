package query

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/trace"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// sharedStore returns the test binary's embedded store, migrated.
func sharedStore(tb testing.TB) *store.Embedded { return storetest.Embedded(tb) }

func TestParseTraceRequest(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	cur := (&trace.Cursor{From: now.Add(-time.Hour).UnixMilli(), To: now.UnixMilli(), Start: 1, AppID: "a", SessionID: "s"}).Encode()
	for _, c := range []struct {
		q       string
		wantErr string // substring; "" means valid
		check   func(*trace.Request) string
	}{
		{q: "device_id=d1", check: func(r *trace.Request) string {
			if r.By != "device_id" || r.ID != "d1" || r.Limit != 50 || !r.To.Equal(now) || r.To.Sub(r.From) != 24*time.Hour {
				return fmt.Sprintf("defaults wrong: %+v", r)
			}
			return ""
		}},
		{q: "user_id=u&app_id=demo&since=2h&limit=500", check: func(r *trace.Request) string {
			if r.AppID != "demo" || r.Limit != 500 || r.To.Sub(r.From) != 2*time.Hour {
				return fmt.Sprintf("got %+v", r)
			}
			return ""
		}},
		{q: "session_id=s&from=2026-11-21T10:00:00Z&to=2026-11-21T11:00:00Z", check: func(r *trace.Request) string {
			if r.From.Hour() != 10 || r.To.Hour() != 11 {
				return fmt.Sprintf("got %v..%v", r.From, r.To)
			}
			return ""
		}},
		{q: "stream_id=live%2Fx&cursor=" + cur, check: func(r *trace.Request) string {
			if r.After == nil || r.After.SessionID != "s" || !r.To.Equal(now) || r.To.Sub(r.From) != time.Hour {
				return fmt.Sprintf("cursor window not used: %+v", r)
			}
			return ""
		}},
		{q: "room_id=r&since=2h&cursor=" + cur, check: func(r *trace.Request) string {
			if r.To.Sub(r.From) != time.Hour {
				return "the cursor's window must win over since"
			}
			return ""
		}},
		{q: "", wantErr: "give one of device_id, user_id, session_id, room_id, stream_id"},
		{q: "app_id=x", wantErr: "give one of"},
		{q: "device_id=a&user_id=b", wantErr: "give exactly one of device_id, user_id, session_id, room_id, stream_id; got device_id and user_id"},
		{q: "device_id=", wantErr: "device_id is empty"},
		{q: "device_id=" + strings.Repeat("x", 300), wantErr: "device_id is 300 bytes long"},
		{q: "device_id=a&devce=b", wantErr: "unknown parameter devce; this endpoint takes: app_id, cursor, device_id, from, limit, room_id, session_id, since, stream_id, to, user_id"},
		{q: "device_id=a&device_id=b", wantErr: "parameter device_id given more than once"},
		{q: "device_id=a&from=2026-11-21T11:00:00Z&to=2026-11-21T10:00:00Z", wantErr: "from (2026-11-21T11:00:00Z) must be before to (2026-11-21T10:00:00Z)"},
		{q: "device_id=a&from=yesterday", wantErr: `from="yesterday": want RFC 3339`},
		{q: "device_id=a&to=soon&limit=x", wantErr: `to="soon"`},
		{q: "device_id=a&since=40d", wantErr: "longer than the 744h0m0s allowed"},
		{q: "device_id=a&since=2h&from=now-1h", wantErr: "give from or since, not both"},
		{q: "device_id=a&limit=0", wantErr: `limit="0": want a whole number in [1, 500]`},
		{q: "device_id=a&limit=501", wantErr: "[1, 500]"},
		{q: "device_id=a&cursor=bogus", wantErr: `cursor="bogus" is not a cursor`},
	} {
		v, err := url.ParseQuery(c.q)
		if err != nil {
			t.Fatal(err)
		}
		r, err := parseTraceRequest(v, now)
		switch {
		case c.wantErr != "" && err == nil:
			t.Errorf("%q: want error %q, got none", c.q, c.wantErr)
		case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
			t.Errorf("%q: error %q does not contain %q", c.q, err, c.wantErr)
		case c.wantErr == "" && err != nil:
			t.Errorf("%q: %v", c.q, err)
		case c.check != nil:
			if msg := c.check(r); msg != "" {
				t.Errorf("%q: %s", c.q, msg)
			}
		}
	}
}

func TestTraceHTTPErrors(t *testing.T) {
	srv := httptest.NewServer(New(sharedStore(t), "tok", log.NewNopLogger()).Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, q string
		auth      bool
		status    int
		msg       string
	}{
		{"GET", "device_id=d1", false, 401, "bearer token"},
		{"POST", "device_id=d1", true, 405, "read-only"},
		{"GET", "device_id=d1&bogus=1", true, 400, "unknown parameter bogus"},
		{"GET", "device_id=d1&user_id=u", true, 400, "got device_id and user_id"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+"/api/v1/trace?"+c.q, nil)
		if c.auth {
			req.Header.Set("Authorization", "Bearer tok")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.msg) {
			t.Errorf("%s %s: %d %s, want %d …%s…", c.method, c.q, resp.StatusCode, b, c.status, c.msg)
		}
	}
}
