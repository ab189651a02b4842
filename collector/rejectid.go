package collector

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// The event_id of a rejected record names one position in one request body:
// sha256(app_id, sha256(body), index), the body as inflated. So two identical
// malformed events of a request are two records (their indexes differ), while
// a client's retry of the same bytes gives records with the same ids, which
// the processor drops within its dedup window (the rejected table cannot
// merge them itself, as its key has received_at).

// rejectedID returns the event_id of the rejected record for event index of
// this request (-1 for the request as a whole).
func (b *batch) rejectedID(appID string, index int) string {
	if !b.haveSum {
		b.bodySum = sha256.Sum256(b.body.Bytes())
		b.haveSum = true
	}
	return rejectedID(appID, &b.bodySum, index)
}

func rejectedID(appID string, bodySum *[32]byte, index int) string {
	h := sha256.New()
	h.Write([]byte(appID))
	h.Write([]byte{0})
	h.Write(bodySum[:])
	h.Write(strconv.AppendInt([]byte{0}, int64(index), 10))
	var sum [32]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
