package sign

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	const secret = "s3cret"
	now := time.Unix(1_800_000_000, 0)
	valid := Sign(secret, "/live/room1", now.Add(time.Minute))
	q := func(s string) url.Values {
		v, err := url.ParseQuery(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name   string
		secret string
		path   string
		query  string
		at     time.Time
		want   error
	}{
		{"valid", secret, "/live/room1", valid, now, nil},
		{"valid with other params", secret, "/live/room1", "sid=abc&" + valid + "&x=1", now, nil},
		{"valid at the expiry second", secret, "/live/room1", valid, now.Add(time.Minute), nil},
		{"expired", secret, "/live/room1", valid, now.Add(time.Minute + time.Second), ErrExpired},
		{"other path", secret, "/live/room2", valid, now, ErrBadSignature},
		{"other secret", "other", "/live/room1", valid, now, ErrBadSignature},
		{"expiry extended", secret, "/live/room1", strings.Replace(valid, "expires=1800000060", "expires=1800009999", 1), now, ErrBadSignature},
		{"signature truncated", secret, "/live/room1", valid[:len(valid)-1], now, ErrBadSignature},
		{"expires not a number", secret, "/live/room1", "expires=soon&sign=00", now, ErrBadSignature},
		{"no params", secret, "/live/room1", "", now, ErrUnsigned},
		{"no sign", secret, "/live/room1", "expires=1800000060", now, ErrUnsigned},
		{"no expires", secret, "/live/room1", "sign=abcd", now, ErrUnsigned},
		{"forged expired", secret, "/live/room1", "expires=1&sign=00000000000000000000000000000000", now, ErrBadSignature},
		{"valid at the default maximum", secret, "/live/room1", Sign(secret, "/live/room1", now.Add(DefaultMaxTTL)), now, nil},
		{"beyond the default maximum", secret, "/live/room1", Sign(secret, "/live/room1", now.Add(DefaultMaxTTL+time.Second)), now, ErrTooLong},
		{"a century ahead", secret, "/live/room1", Sign(secret, "/live/room1", now.AddDate(100, 0, 0)), now, ErrTooLong},
		{"expires at int64 max", secret, "/live/room1", "expires=9223372036854775807&sign=" + mac(secret, "/live/room1", 1<<63-1), now, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.path, q(tt.query), tt.at, 0)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
}

func TestSignFormat(t *testing.T) {
	got := Sign("k", "/live/r", time.Unix(1_700_000_000, 0))
	v, err := url.ParseQuery(got)
	if err != nil || v.Get("expires") != "1700000000" || len(v.Get("sign")) != 32 || len(v) != 2 {
		t.Fatalf("Sign = %q", got)
	}
	if got != Sign("k", "/live/r", time.Unix(1_700_000_000, 0)) {
		t.Error("Sign is not deterministic")
	}
}

func TestSignURL(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name, raw, path string
	}{
		{"rtmp push", "rtmp://127.0.0.1:1935/live/room1", "/live/room1"},
		{"flv keeps params", "http://edge:8080/live/room1_720p.flv?sid=s1", "/live/room1_720p.flv"},
		{"hls resigned", "http://edge:8080/live/room1/index.m3u8?expires=1&sign=old", "/live/room1/index.m3u8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			orig := u.Query()
			SignURL("k", u, 10*time.Minute, now)
			q := u.Query()
			if err := Verify("k", tt.path, q, now.Add(9*time.Minute), 0); err != nil {
				t.Errorf("%s: %v", u, err)
			}
			if err := Verify("k", tt.path, q, now.Add(11*time.Minute), 0); !errors.Is(err, ErrExpired) {
				t.Errorf("after ttl: %v", err)
			}
			for k := range orig {
				if k != ParamExpires && k != ParamSign && q.Get(k) != orig.Get(k) {
					t.Errorf("param %s lost: %s", k, u)
				}
			}
			if len(q[ParamSign]) != 1 || len(q[ParamExpires]) != 1 {
				t.Errorf("duplicate signature params: %s", u)
			}
		})
	}
}

func TestVerifyMaxTTL(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	q, _ := url.ParseQuery(Sign("k", "/live/r", now.Add(2*time.Hour)))
	if err := Verify("k", "/live/r", q, now, time.Hour); !errors.Is(err, ErrTooLong) {
		t.Errorf("2 h ahead with a 1 h maximum: %v, want ErrTooLong", err)
	}
	if err := Verify("k", "/live/r", q, now.Add(time.Hour), time.Hour); err != nil {
		t.Errorf("1 h ahead with a 1 h maximum: %v", err)
	}
	if err := Verify("k", "/live/r", q, now, 3*time.Hour); err != nil {
		t.Errorf("2 h ahead with a 3 h maximum: %v", err)
	}
}

// FuzzVerify: any query string and path from a client is answered with an
// error or, only for a genuine signature, nil within the allowed lifetime.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add("/live/room1", Sign("k", "/live/room1", now.Add(time.Minute)))
	f.Add("/live/room1", "expires=9223372036854775807&sign="+mac("k", "/live/room1", 1<<63-1))
	f.Add("/live/room1", "expires=-1&sign=00")
	f.Add("/live/a", "expires=%zz&sign=&sign=x")
	f.Add("", "expires=1800000060&sign="+strings.Repeat("f", 32))
	f.Fuzz(func(t *testing.T, path, query string) {
		q, _ := url.ParseQuery(query)
		err := Verify("k", path, q, now, time.Hour)
		if err != nil {
			return
		}
		e, perr := strconv.ParseInt(q.Get(ParamExpires), 10, 64)
		if perr != nil || e < now.Unix() || e > now.Add(time.Hour).Unix() || q.Get(ParamSign) != mac("k", path, e) {
			t.Fatalf("Verify(%q, %q) = nil for expires %q sign %q", path, query, q.Get(ParamExpires), q.Get(ParamSign))
		}
	})
}
