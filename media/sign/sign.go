// Package sign signs and verifies stream URLs with an expiry, like the auth
// keys of cloud live services: whoever holds a signed URL may push or play
// that one path until it expires, and nobody can forge one without the secret.
// Verify also refuses an expiry further ahead than a maximum lifetime, so a
// leaked secret's forgeries or a misconfigured signer cannot mint URLs that
// stay valid for years. There is no built-in secret: callers get theirs
// from their configuration (media/topology).
//
// The signature covers the path and the expiry:
//
//	sign = hex(HMAC-SHA256(secret, path + "\n" + expires))[:32]
//
// where expires is Unix seconds. The path is the decoded URL path: for RTMP
// "/app/stream" (e.g. "/live/room1"), for HTTP the request path (e.g.
// "/live/room1_720p.flv"). Query parameters other than expires and sign are
// not covered, so players may add their own (CMCD, session ids).
package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Query parameter names.
const (
	ParamExpires = "expires"
	ParamSign    = "sign"
)

// sigLen is the length of the hex signature: 128 bits is plenty for a
// short-lived URL and keeps URLs short.
const sigLen = 32

// DefaultMaxTTL is the longest a signed URL may stay valid when the
// verifier is given no maximum of its own.
const DefaultMaxTTL = 24 * time.Hour

// Verification errors; Verify wraps them with detail, test with errors.Is.
var (
	ErrUnsigned     = errors.New("url is not signed")
	ErrExpired      = errors.New("signed url has expired")
	ErrBadSignature = errors.New("bad url signature")
	ErrTooLong      = errors.New("signed url is valid for longer than allowed")
)

func mac(secret, path string, expires int64) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(path))
	h.Write([]byte{'\n'})
	h.Write(strconv.AppendInt(nil, expires, 10))
	return hex.EncodeToString(h.Sum(nil))[:sigLen]
}

// Sign returns the query string "expires=<unix>&sign=<hex>" granting access
// to path until expires.
func Sign(secret, path string, expires time.Time) string {
	e := expires.Unix()
	return ParamExpires + "=" + strconv.FormatInt(e, 10) + "&" + ParamSign + "=" + mac(secret, path, e)
}

// SignURL signs u's path in place, valid for ttl from now: it sets expires
// and sign and keeps the other query parameters.
func SignURL(secret string, u *url.URL, ttl time.Duration, now time.Time) {
	e := now.Add(ttl).Unix()
	q := u.Query()
	q.Set(ParamExpires, strconv.FormatInt(e, 10))
	q.Set(ParamSign, mac(secret, u.Path, e))
	u.RawQuery = q.Encode()
}

// Verify checks that q carries a valid signature of path that has not
// expired at now and expires at most maxTTL after now (DefaultMaxTTL when
// maxTTL <= 0). The error is nil, or wraps ErrUnsigned (no expires or no
// sign), ErrBadSignature (forged, tampered, or signed for another path or
// secret), ErrExpired (genuine but too old) or ErrTooLong (genuine but
// expiring too far ahead).
func Verify(secret, path string, q url.Values, now time.Time, maxTTL time.Duration) error {
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	es, sig := q.Get(ParamExpires), q.Get(ParamSign)
	if es == "" || sig == "" {
		return fmt.Errorf("%s: %w: want %s and %s query parameters", path, ErrUnsigned, ParamExpires, ParamSign)
	}
	e, err := strconv.ParseInt(es, 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w: expires %q is not Unix seconds", path, ErrBadSignature, es)
	}
	// Constant time: an attacker must not learn how many leading characters
	// of a guess were right.
	if subtle.ConstantTimeCompare([]byte(sig), []byte(mac(secret, path, e))) != 1 {
		return fmt.Errorf("%s: %w", path, ErrBadSignature)
	}
	if now.Unix() > e {
		return fmt.Errorf("%s: %w: at %s, %s ago", path, ErrExpired,
			time.Unix(e, 0).UTC().Format(time.RFC3339), now.Sub(time.Unix(e, 0)).Truncate(time.Second))
	}
	// In seconds, as expires is: a huge expires cannot overflow a Duration.
	if e-now.Unix() > int64(maxTTL/time.Second) {
		return fmt.Errorf("%s: %w: expires %s, more than %s ahead", path, ErrTooLong,
			time.Unix(e, 0).UTC().Format(time.RFC3339), maxTTL)
	}
	return nil
}
