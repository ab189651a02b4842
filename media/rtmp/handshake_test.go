package rtmp

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"net"
	"strings"
	"testing"
)

// handshakePeers runs clientSide against our serverHandshake over a
// loopback TCP connection.
func runServerHandshake(t *testing.T, clientSide func(c net.Conn)) (digest bool, err error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		clientSide(c)
	}()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	return serverHandshake(bufio.NewReader(sc), sc)
}

func TestPlainHandshake(t *testing.T) {
	c1 := make([]byte, handshakeSize)
	copy(c1, []byte{0, 0, 1, 0, 0, 0, 0, 0}) // time, then zero: no digest
	for i := 8; i < len(c1); i++ {
		c1[i] = byte(i)
	}
	var s0s1s2 []byte
	digest, err := runServerHandshake(t, func(c net.Conn) {
		c.Write(append([]byte{3}, c1...))
		s0s1s2 = make([]byte, 1+2*handshakeSize)
		io.ReadFull(c, s0s1s2)
		c.Write(s0s1s2[1 : 1+handshakeSize]) // C2 echoes S1
	})
	if err != nil {
		t.Fatal(err)
	}
	if digest {
		t.Fatal("plain C1 taken for a digest handshake")
	}
	if s0s1s2[0] != 3 {
		t.Fatalf("S0 = %d", s0s1s2[0])
	}
	if !bytes.Equal(s0s1s2[1+handshakeSize:], c1) {
		t.Fatal("S2 does not echo C1")
	}
}

// Our client sends a digest C1 as ffmpeg does; the server answers with a
// digest S1 and an S2 signed the way a Flash player (or ffmpeg when it
// plays) checks it, and the client's C2 is signed the way FMS checks it.
func TestDigestHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// A recording proxy would be heavy; instead record what crosses by
	// wrapping the client's side.
	var sent, recv bytes.Buffer
	clientErr := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			clientErr <- err
			return
		}
		defer c.Close()
		r := bufio.NewReader(io.TeeReader(c, &recv))
		clientErr <- clientHandshake(r, io.MultiWriter(c, &sent), 0)
	}()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	digest, err := serverHandshake(bufio.NewReader(sc), sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-clientErr; err != nil {
		t.Fatal(err)
	}
	if !digest {
		t.Fatal("server did not see the client's digest")
	}

	c1 := sent.Bytes()[1 : 1+handshakeSize]
	c2 := sent.Bytes()[1+handshakeSize:]
	s1 := recv.Bytes()[1 : 1+handshakeSize]
	s2 := recv.Bytes()[1+handshakeSize : 1+2*handshakeSize]

	cAt := findDigest(c1, clientKeyText)
	sAt := findDigest(s1, serverKeyText)
	if cAt < 0 || sAt < 0 {
		t.Fatalf("digests: C1 at %d, S1 at %d", cAt, sAt)
	}
	checkSigned := func(name string, p, peerDigest, key []byte) {
		k := hmac.New(sha256.New, key)
		k.Write(peerDigest)
		h := hmac.New(sha256.New, k.Sum(nil))
		h.Write(p[:handshakeSize-32])
		if !hmac.Equal(h.Sum(nil), p[handshakeSize-32:]) {
			t.Errorf("%s signature does not verify", name)
		}
	}
	checkSigned("S2", s2, c1[cAt:cAt+32], serverKey)
	checkSigned("C2", c2, s1[sAt:sAt+32], clientKey)
}

func TestHandshakeRejects(t *testing.T) {
	tests := []struct {
		name string
		send []byte
		want string
	}{
		{"RTMPE", append([]byte{6}, make([]byte, handshakeSize)...), "version 6"},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "version 71"},
		{"short C1", []byte{3, 1, 2, 3}, "read C1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runServerHandshake(t, func(c net.Conn) { c.Write(tc.send) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
