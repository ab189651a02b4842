// Package retry is the one retry helper: waits that double up to a bound,
// and errors marked permanent stop it at once.
package retry

import (
	"context"
	"errors"
	"time"
)

// Backoff is how a call is retried: waits start at Initial and double
// up to Max, for at most Attempts tries (0: until the context ends).
type Backoff struct {
	Initial  time.Duration
	Max      time.Duration
	Attempts int
}

// permanent marks an error that retrying cannot fix (a 4xx answer).
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Do stops at it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Do calls try until it succeeds, returns a permanent error, the
// attempts run out or ctx ends; after each failed attempt it calls failed
// (if set). It returns the attempts made and the last error.
func Do(ctx context.Context, b Backoff, try func(context.Context) error, failed func(attempt int, err error)) (int, error) {
	wait := b.Initial
	for n := 1; ; n++ {
		err := try(ctx)
		if err == nil {
			return n, nil
		}
		if failed != nil {
			failed(n, err)
		}
		if IsPermanent(err) || (b.Attempts > 0 && n >= b.Attempts) {
			return n, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return n, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		if wait *= 2; b.Max > 0 && wait > b.Max {
			wait = b.Max
		}
	}
}
