package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/chdb"
)

// connPool lends chDB connections one call at a time: a connection runs one
// statement at a time, and connections to one engine run in parallel.
type connPool struct {
	free  chan *chdb.Conn
	conns []*chdb.Conn

	closeOnce sync.Once
	closeErr  error
}

// errPoolWait: no connection came free within the wait given to acquire.
var errPoolWait = errors.New("no connection came free in time")

func newConnPool(n int) *connPool { return &connPool{free: make(chan *chdb.Conn, n)} }

// add puts a newly opened connection in the pool.
func (p *connPool) add(c *chdb.Conn) {
	p.conns = append(p.conns, c)
	p.free <- c
}

// acquire waits for a free connection until ctx ends or, when wait > 0,
// for at most wait (errPoolWait).
func (p *connPool) acquire(ctx context.Context, wait time.Duration) (*chdb.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case c, ok := <-p.free:
		if !ok {
			return nil, chdb.ErrClosed
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timeout:
		return nil, errPoolWait
	}
}

func (p *connPool) release(c *chdb.Conn) { p.free <- c }

// close waits for calls in flight to end, then closes every connection.
func (p *connPool) close() error {
	p.closeOnce.Do(func() {
		var errs []error
		for range p.conns {
			c := <-p.free
			errs = append(errs, c.Close())
		}
		close(p.free)
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
