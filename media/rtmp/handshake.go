package rtmp

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// The handshake: C0/S0 is the version byte (3), C1/S1 and C2/S2 are 1536
// bytes. The plain handshake only echoes. Flash-era peers also embed an
// HMAC-SHA256 digest in C1/S1 (the "digest" or "complex" handshake) and
// check one in C2/S2. ffmpeg checks the server's digest only when it plays,
// not when it publishes, but we answer a digest C1 with a digest S1/S2 so
// players and stricter clients accept us too.

const (
	handshakeSize = 1536
	rtmpVersion   = 3
	digestLen     = sha256.Size
)

// The keys are public constants of the protocol: a text part, then 32
// fixed bytes. C1 and S1 digests use only the text part; C2 and S2
// signatures are keyed by an HMAC over the whole key.
var (
	keyTail = []byte{
		0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1,
		0x02, 0x9e, 0x7e, 0x57, 0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab,
		0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
	}
	serverKey = append([]byte("Genuine Adobe Flash Media Server 001"), keyTail...)
	clientKey = append([]byte("Genuine Adobe Flash Player 001"), keyTail...)

	serverKeyText = serverKey[:36]
	clientKeyText = clientKey[:30]
)

// Versions we put in C1/S1 bytes 4..7. Non-zero tells the peer a digest is
// there.
var (
	serverVersion = [4]byte{4, 5, 0, 1}
	clientVersion = [4]byte{9, 0, 124, 2}
)

// digestOffset is where the digest sits in a 1536-byte packet for one of
// the two schemes: four bytes at base (8 or 772) pick a spot in the 728
// bytes after them.
func digestOffset(p []byte, base int) int {
	sum := int(p[base]) + int(p[base+1]) + int(p[base+2]) + int(p[base+3])
	return base + 4 + sum%728
}

// packetDigest is the HMAC of the packet without the 32 digest bytes.
func packetDigest(p []byte, off int, key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(p[:off])
	h.Write(p[off+digestLen:])
	return h.Sum(nil)
}

// findDigest returns the offset of a valid digest in p, trying both
// schemes, or -1.
func findDigest(p []byte, key []byte) int {
	for _, base := range []int{8, 772} {
		off := digestOffset(p, base)
		if hmac.Equal(packetDigest(p, off, key), p[off:off+digestLen]) {
			return off
		}
	}
	return -1
}

// imprintDigest writes the digest into p with the scheme at base.
func imprintDigest(p []byte, base int, key []byte) int {
	off := digestOffset(p, base)
	copy(p[off:], packetDigest(p, off, key))
	return off
}

// signResponse fills p (S2 or C2) with random bytes ending in the signature
// that answers the peer's digest.
func signResponse(p []byte, peerDigest, key []byte) {
	rand.Read(p)
	k := hmac.New(sha256.New, key)
	k.Write(peerDigest)
	h := hmac.New(sha256.New, k.Sum(nil))
	h.Write(p[:handshakeSize-digestLen])
	copy(p[handshakeSize-digestLen:], h.Sum(nil))
}

// serverHandshake reads C0 C1, writes S0 S1 S2 and reads C2. r must be the
// reader the chunk stream will use next: a client may send its first
// chunks right behind C2.
func serverHandshake(r *bufio.Reader, w io.Writer) (digest bool, err error) {
	c0, err := r.ReadByte()
	if err != nil {
		return false, fmt.Errorf("rtmp: handshake: read C0: %w", err)
	}
	if c0 != rtmpVersion {
		return false, fmt.Errorf("rtmp: handshake: unsupported version %d in C0 (want 3; 6 is RTMPE, not supported)", c0)
	}
	c1 := make([]byte, handshakeSize)
	if _, err := io.ReadFull(r, c1); err != nil {
		return false, fmt.Errorf("rtmp: handshake: read C1: %w", err)
	}

	out := make([]byte, 1+2*handshakeSize)
	out[0] = rtmpVersion
	s1, s2 := out[1:1+handshakeSize], out[1+handshakeSize:]
	rand.Read(s1[8:])
	copy(s1[:4], c1[:4]) // our epoch: echo theirs, as FMS does

	clientDigestAt := -1
	if !bytes.Equal(c1[4:8], []byte{0, 0, 0, 0}) {
		clientDigestAt = findDigest(c1, clientKeyText)
	}
	if clientDigestAt >= 0 {
		copy(s1[4:8], serverVersion[:])
		// Use the scheme the client used; clients look for ours the same way.
		base := 8
		if clientDigestAt >= 772 {
			base = 772
		}
		imprintDigest(s1, base, serverKeyText)
		signResponse(s2, c1[clientDigestAt:clientDigestAt+digestLen], serverKey)
	} else {
		copy(s2, c1) // plain handshake: S2 echoes C1
	}
	if _, err := w.Write(out); err != nil {
		return false, fmt.Errorf("rtmp: handshake: write S0 S1 S2: %w", err)
	}
	// C2 should echo S1 (or sign it); clients differ, and nothing depends
	// on it, so it is read and not checked.
	if _, err := r.Discard(handshakeSize); err != nil {
		return false, fmt.Errorf("rtmp: handshake: read C2: %w", err)
	}
	return clientDigestAt >= 0, nil
}

// clientHandshake writes C0 C1 with a digest (as ffmpeg and Flash do),
// reads S0 S1 S2 and writes C2: a signed answer when S1 has a digest, an
// echo of S1 otherwise.
func clientHandshake(r *bufio.Reader, w io.Writer, epoch uint32) error {
	c0c1 := make([]byte, 1+handshakeSize)
	c0c1[0] = rtmpVersion
	c1 := c0c1[1:]
	rand.Read(c1[8:])
	binary.BigEndian.PutUint32(c1, epoch)
	copy(c1[4:8], clientVersion[:])
	imprintDigest(c1, 8, clientKeyText)
	if _, err := w.Write(c0c1); err != nil {
		return fmt.Errorf("rtmp: handshake: write C0 C1: %w", err)
	}

	s0, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("rtmp: handshake: read S0: %w", err)
	}
	if s0 != rtmpVersion {
		return fmt.Errorf("rtmp: handshake: server answered version %d, want 3", s0)
	}
	s1 := make([]byte, handshakeSize)
	if _, err := io.ReadFull(r, s1); err != nil {
		return fmt.Errorf("rtmp: handshake: read S1: %w", err)
	}
	// S2 should answer C1; publishing clients (ffmpeg among them) do not
	// check it, and neither do we.
	if _, err := r.Discard(handshakeSize); err != nil {
		return fmt.Errorf("rtmp: handshake: read S2: %w", err)
	}

	c2 := s1 // plain: echo S1
	if !bytes.Equal(s1[4:8], []byte{0, 0, 0, 0}) {
		if at := findDigest(s1, serverKeyText); at >= 0 {
			c2 = make([]byte, handshakeSize)
			signResponse(c2, s1[at:at+digestLen], clientKey)
		}
	}
	if _, err := w.Write(c2); err != nil {
		return fmt.Errorf("rtmp: handshake: write C2: %w", err)
	}
	return nil
}
