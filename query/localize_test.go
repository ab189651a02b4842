package query

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-kit/log"
)

// emptyStore answers every SELECT with no rows: a quiet store.
type emptyStore struct{ sqls []string }

func (s *emptyStore) QueryJSON(_ context.Context, sql string) ([]byte, error) {
	s.sqls = append(s.sqls, sql)
	return nil, nil
}

func getLocalize(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestLocalizeBadRequests(t *testing.T) {
	srv := httptest.NewServer(New(&emptyStore{}, "tok", log.NewNopLogger()).Handler())
	defer srv.Close()
	for _, c := range []struct{ query, want string }{
		{"metric=bogus", `metric="bogus": want one of start_failure, playback_failure, slow_start`},
		{"colour=red", "unknown parameter colour; this endpoint takes:"},
		{"from=yesterday", `from="yesterday": want RFC 3339`},
		{"from=1700000600&to=1700000000", "must be before to"},
		{"since=7h", "longer than the 6h0m0s allowed"},
		{"room_id=a&room_id=b", "parameter room_id given more than once"},
	} {
		code, b := getLocalize(t, srv.URL+"/api/v1/localize?"+c.query)
		var body ErrorBody
		json.Unmarshal(b, &body)
		if code != 400 || !strings.Contains(body.Error, c.want) {
			t.Errorf("%q: %d %q, want 400 containing %q", c.query, code, body.Error, c.want)
		}
	}
}

// A quiet store answers an empty list, not null, over the window asked,
// with the filters in the SQL.
func TestLocalizeQuiet(t *testing.T) {
	st := &emptyStore{}
	srv := httptest.NewServer(New(st, "tok", log.NewNopLogger()).Handler())
	defer srv.Close()
	code, b := getLocalize(t, srv.URL+"/api/v1/localize?from=1700000000&to=2023-11-14T22:23:20Z&room_id=room2")
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	want := `{"from":"2023-11-14T22:13:20Z","to":"2023-11-14T22:23:20Z","incidents":[]}` + "\n"
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	if len(st.sqls) == 0 || !strings.Contains(st.sqls[0], "room_id = 'room2'") {
		t.Errorf("the leaf query does not filter room_id: %q", st.sqls)
	}
}
