package scheduler

import (
	"testing"

	"github.com/lastmile-qoe/lastmile/internal/cors/corstest"
)

// Pages may read schedules (any origin by default, the listed ones when
// cors_origins is set), their preflights are answered, and a preflight for
// /v1/push's Authorization header is refused.
func TestCORS(t *testing.T) {
	const schedule = "/v1/schedule?room=r1&region=north&device_id=d1"
	type hdrs = map[string]string
	const page = "http://page.test"
	cases := []corstest.Case{
		{Name: "no Origin", Method: "GET", Target: schedule, Status: 200, Want: hdrs{"Access-Control-Allow-Origin": ""}},
		{Name: "page, any origin", Method: "GET", Target: schedule, Req: hdrs{"Origin": page}, Status: 200, Want: hdrs{"Access-Control-Allow-Origin": "*"}},
		{Name: "page, refused request still readable", Method: "GET", Target: "/v1/schedule?room=r1", Req: hdrs{"Origin": page}, Status: 400,
			Want: hdrs{"Access-Control-Allow-Origin": "*"}},
		{Name: "preflight", Method: "OPTIONS", Target: schedule, Req: hdrs{"Origin": page, "Access-Control-Request-Method": "GET"}, Status: 204,
			Want: hdrs{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS"}},
		{Name: "preflight of push's Authorization", Method: "OPTIONS", Target: "/v1/push?room=r1",
			Req: hdrs{"Origin": page, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}, Status: 403,
			Want: hdrs{"Access-Control-Allow-Origin": ""}},
		{Name: "listed origin", Origins: []string{"https://console.example", "https://app.example"}, Method: "GET", Target: schedule,
			Req: hdrs{"Origin": "https://app.example"}, Status: 200, Want: hdrs{"Access-Control-Allow-Origin": "https://app.example", "Vary": "Origin"}},
		{Name: "unlisted origin", Origins: []string{"https://app.example"}, Method: "GET", Target: schedule, Req: hdrs{"Origin": page}, Status: 200,
			Want: hdrs{"Access-Control-Allow-Origin": ""}},
		{Name: "preflight of an unlisted origin", Origins: []string{"https://app.example"}, Method: "OPTIONS", Target: schedule,
			Req: hdrs{"Origin": page, "Access-Control-Request-Method": "GET"}, Status: 403, Want: hdrs{"Access-Control-Allow-Methods": ""}},
		{Name: "OPTIONS that is no preflight", Method: "OPTIONS", Target: schedule, Req: hdrs{"Origin": page}, Status: 405,
			Want: hdrs{"Access-Control-Allow-Origin": "*"}},
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(exampleYAML))
			if err != nil {
				t.Fatal(err)
			}
			cfg.CORSOrigins = c.Origins
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			corstest.Check(t, s.Handler(), c)
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
