package player

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lastmile-qoe/lastmile/cmcd"
)

// CacheHeader is the response header the player reads edge_cached from:
// "HIT" (the edge had the stream) or "MISS" (it went back to source), case
// insensitive, optionally followed by more text ("HIT from edge-a-1").
// Without it edge_cached is left out of first_frame.
const CacheHeader = "X-Cache"

// msgKind is what a connection goroutine reports to its session.
type msgKind uint8

const (
	msgMark     msgKind = iota // a connection phase ended (phase, at; ip for dns)
	msgResponse                // response headers arrived (status, cached)
	msgFrame                   // a media frame was parsed (f)
	msgEnd                     // the connection is over (code, err; err is io.EOF at a clean end of stream)
)

type msg struct {
	kind   msgKind
	at     time.Time
	phase  string
	ip     string
	status int
	cached *bool
	f      frame
	code   int
	err    error
}

type frameKind uint8

const (
	kindVideo frameKind = iota
	kindAudio
	kindMeta
)

// frame is one parsed media unit, FLV tag or TS PES, reduced to what the
// playback model needs.
type frame struct {
	kind    frameKind
	ts      int64 // ms, the stream's own clock (decode time)
	picture bool  // carries a picture or audio frame (not only configuration)
	key     bool  // a picture a decoder can start from
	config  bool  // carries the decoder configuration (sequence header, SPS)
	// needConfig: the codec cannot decode without configuration first.
	needConfig    bool
	codec         string
	width, height int   // kindMeta: the picture size, 0 when unknown
	capture       int64 // Unix ms the publisher captured it (media/clock), 0 unstamped
	at            time.Time
}

// conn is one attempt's connection to an edge: it resolves, connects,
// requests and parses, and reports everything as msgs. It never touches the
// session's state.
type conn struct {
	url       string
	format    string
	sessionID string
	streamID  string
	resolver  *net.Resolver
	now       func() time.Time
	bytes     *atomic.Int64 // every byte read from the edge, shared by the session
	out       chan<- msg
	maxKbps   int // download cap, 0 for none
}

// send delivers m unless the attempt was abandoned.
func (c *conn) send(ctx context.Context, m msg) bool {
	select {
	case c.out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *conn) end(ctx context.Context, code int, err error) {
	c.send(ctx, msg{kind: msgEnd, at: c.now(), code: code, err: err})
}

// run plays the URL until the stream ends, an error, or ctx is cancelled.
func (c *conn) run(ctx context.Context) {
	defer func() {
		// A parser bug must end this attempt, not the process.
		if r := recover(); r != nil {
			c.end(ctx, CodeInternal, fmt.Errorf("internal error: %v", r))
		}
	}()
	u, err := url.Parse(c.url)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		c.end(ctx, CodeSchedule, fmt.Errorf("bad play url %q from the scheduler", c.url))
		return
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}

	// DNS: done here, not inside the HTTP client, so that the phase is
	// measured and a failure is told apart from a connect failure.
	ip := host
	if net.ParseIP(host) == nil {
		addrs, err := c.resolver.LookupIPAddr(ctx, host)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.end(ctx, CodeDNS, fmt.Errorf("dns lookup of %s: %w", host, err))
			return
		}
		ip = pickAddr(addrs)
		if ip == "" {
			c.end(ctx, CodeDNS, fmt.Errorf("dns lookup of %s: no address", host))
			return
		}
	}
	if !c.send(ctx, msg{kind: msgMark, phase: "dns", at: c.now(), ip: ip}) {
		return
	}

	var (
		mu       sync.Mutex
		dialErr  error
		dialed   bool
		gotFirst sync.Once
	)
	fallback := &net.Dialer{Resolver: c.resolver}
	tr := &http.Transport{
		Proxy:               nil, // stack hosts never go through a proxy
		DisableCompression:  true,
		MaxIdleConnsPerHost: 2,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			h, _, _ := net.SplitHostPort(addr)
			if h != host { // a redirect to another host: resolve it normally
				nc, err := fallback.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &countConn{Conn: nc, n: c.bytes}, nil
			}
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
			mu.Lock()
			first := !dialed
			if err != nil {
				dialErr = err
			} else {
				dialed = true
			}
			mu.Unlock()
			if err != nil {
				return nil, err
			}
			if first {
				c.send(ctx, msg{kind: msgMark, phase: "tcp_connect", at: c.now()})
			}
			return &countConn{Conn: nc, n: c.bytes}, nil
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() {
		gotFirst.Do(func() { c.send(ctx, msg{kind: msgMark, phase: "tcp_first_packet", at: c.now()}) })
	}}
	ctx = httptrace.WithClientTrace(ctx, trace)

	payload := c.cmcd()
	get := func(target *url.URL) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("CMCD-Session", payload)
		req.Header.Set("User-Agent", "lastmile-player")
		return client.Do(req)
	}

	target := withCMCD(u, payload)
	resp, err := get(target)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		mu.Lock()
		de, ok := dialErr, dialed
		mu.Unlock()
		if !ok && de != nil {
			c.end(ctx, CodeConnect, fmt.Errorf("connect to %s (%s): %w", net.JoinHostPort(host, port), ip, de))
		} else {
			c.end(ctx, CodeReadError, fmt.Errorf("request %s: %w", u.Path, err))
		}
		return
	}
	defer resp.Body.Close()
	if !c.send(ctx, msg{kind: msgResponse, at: c.now(), status: resp.StatusCode, cached: cacheHit(resp.Header)}) {
		return
	}
	if resp.StatusCode >= 400 {
		c.end(ctx, CodeHTTPStatus, fmt.Errorf("edge answered HTTP %s for %s", resp.Status, u.Path))
		return
	}
	var code int
	if c.format == FormatHLS {
		code, err = c.playHLS(ctx, target, resp, get)
	} else {
		var body io.Reader = resp.Body
		if c.maxKbps > 0 {
			body = &throttled{r: resp.Body, bytesPerSec: float64(c.maxKbps) * 1000 / 8, start: time.Now()}
		}
		code, err = c.readFLV(ctx, body)
	}
	if ctx.Err() != nil {
		return
	}
	c.end(ctx, code, err)
}

// cmcd is the CMCD payload sent with every request: the session id (sid) is
// what lets the edge's access log join this session.
func (c *conn) cmcd() string {
	sf := "o" // other: HTTP-FLV has no CMCD streaming format of its own
	if c.format == FormatHLS {
		sf = "h"
	}
	d := cmcd.Data{"sid": c.sessionID, "sf": sf, "st": "l"}
	if c.streamID != "" {
		d["cid"] = c.streamID
	}
	return cmcd.Encode([]string{"cid", "sf", "sid", "st"}, d)
}

// withCMCD returns u with the CMCD query parameter appended, keeping the
// signed query as it is.
func withCMCD(u *url.URL, payload string) *url.URL {
	v := *u
	p := "CMCD=" + url.QueryEscape(payload)
	if v.RawQuery == "" {
		v.RawQuery = p
	} else {
		v.RawQuery += "&" + p
	}
	return &v
}

// cacheHit reads CacheHeader: nil when the edge did not say.
func cacheHit(h http.Header) *bool {
	v := strings.ToUpper(strings.TrimSpace(h.Get(CacheHeader)))
	var b bool
	switch {
	case strings.HasPrefix(v, "HIT"):
		b = true
	case strings.HasPrefix(v, "MISS"):
		b = false
	default:
		return nil
	}
	return &b
}

// pickAddr prefers IPv4: the stack's edges listen on 127.0.0.1.
func pickAddr(addrs []net.IPAddr) string {
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP.String()
		}
	}
	if len(addrs) > 0 {
		return addrs[0].IP.String()
	}
	return ""
}

// countConn counts the bytes read from the edge.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// throttled reads no faster than bytesPerSec on average: a weak network.
type throttled struct {
	r           io.Reader
	bytesPerSec float64
	start       time.Time
	n           float64
}

func (t *throttled) Read(p []byte) (int, error) {
	// Small reads keep the pacing smooth.
	if max := int(t.bytesPerSec / 20); max > 0 && len(p) > max {
		p = p[:max]
	}
	n, err := t.r.Read(p)
	t.n += float64(n)
	if due := t.start.Add(time.Duration(t.n / t.bytesPerSec * float64(time.Second))); time.Until(due) > 0 {
		time.Sleep(time.Until(due))
	}
	return n, err
}
