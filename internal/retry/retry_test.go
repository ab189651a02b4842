package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var fastBackoff = Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 5}

func TestRetry(t *testing.T) {
	errTemp := errors.New("503")
	for _, c := range []struct {
		name     string
		results  []error // per attempt; past the end: nil
		attempts int
		wantErr  bool
	}{
		{"first try", nil, 1, false},
		{"temporary then ok", []error{errTemp, errTemp}, 3, false},
		{"permanent stops at once", []error{errTemp, Permanent(errors.New("400"))}, 2, true},
		{"gives up after Attempts", []error{errTemp, errTemp, errTemp, errTemp, errTemp, errTemp}, 5, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls, failed := 0, 0
			n, err := Do(context.Background(), fastBackoff, func(context.Context) error {
				calls++
				if calls <= len(c.results) {
					return c.results[calls-1]
				}
				return nil
			}, func(int, error) { failed++ })
			if n != c.attempts || calls != c.attempts || (err != nil) != c.wantErr || failed != n-boolInt(err == nil) {
				t.Errorf("attempts %d calls %d failed %d err %v; want %d attempts, error %t", n, calls, failed, err, c.attempts, c.wantErr)
			}
		})
	}
	// A cancelled context ends the waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := Do(ctx, Backoff{Initial: time.Hour}, func(context.Context) error { return errTemp }, nil)
	if n != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, errTemp) {
		t.Errorf("cancelled: %d attempts, %v", n, err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
