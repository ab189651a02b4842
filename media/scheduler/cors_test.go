package scheduler

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Pages may read schedules (any origin by default, the listed ones when
// cors_origins is set), their preflights are answered, and a preflight for
// /v1/push's Authorization header is refused.
func TestCORS(t *testing.T) {
	const schedule = "/v1/schedule?room=r1&region=north&device_id=d1"
	type hdrs map[string]string
	cases := []struct {
		name    string
		origins []string
		method  string
		target  string
		req     hdrs
		status  int
		want    hdrs // "" means absent
	}{
		{"no Origin", nil, "GET", schedule, nil, 200, hdrs{"Access-Control-Allow-Origin": ""}},
		{"page, any origin", nil, "GET", schedule, hdrs{"Origin": "http://page.test"}, 200, hdrs{"Access-Control-Allow-Origin": "*"}},
		{"page, refused request still readable", nil, "GET", "/v1/schedule?room=r1", hdrs{"Origin": "http://page.test"}, 400,
			hdrs{"Access-Control-Allow-Origin": "*"}},
		{"preflight", nil, "OPTIONS", schedule, hdrs{"Origin": "http://page.test", "Access-Control-Request-Method": "GET"}, 204,
			hdrs{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS"}},
		{"preflight of push's Authorization", nil, "OPTIONS", "/v1/push?room=r1",
			hdrs{"Origin": "http://page.test", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}, 403,
			hdrs{"Access-Control-Allow-Origin": ""}},
		{"listed origin", []string{"https://console.example", "https://app.example"}, "GET", schedule, hdrs{"Origin": "https://app.example"}, 200,
			hdrs{"Access-Control-Allow-Origin": "https://app.example", "Vary": "Origin"}},
		{"unlisted origin", []string{"https://app.example"}, "GET", schedule, hdrs{"Origin": "http://page.test"}, 200,
			hdrs{"Access-Control-Allow-Origin": ""}},
		{"preflight of an unlisted origin", []string{"https://app.example"}, "OPTIONS", schedule,
			hdrs{"Origin": "http://page.test", "Access-Control-Request-Method": "GET"}, 403, hdrs{"Access-Control-Allow-Methods": ""}},
		{"OPTIONS that is no preflight", nil, "OPTIONS", schedule, hdrs{"Origin": "http://page.test"}, 405,
			hdrs{"Access-Control-Allow-Origin": "*"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(exampleYAML))
			if err != nil {
				t.Fatal(err)
			}
			cfg.CORSOrigins = c.origins
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			req, _ := http.NewRequest(c.method, srv.URL+c.target, nil)
			for k, v := range c.req {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			for k, v := range c.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// cors_origins is read from the YAML config.
func TestCORSOriginsConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(exampleYAML + "cors_origins: [\"https://app.example\"]\n"))
	if err != nil || len(cfg.CORSOrigins) != 1 || cfg.CORSOrigins[0] != "https://app.example" {
		t.Fatalf("cors_origins: %v, %v", cfg.CORSOrigins, err)
	}
}
