package stream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/sample"
)

// TestHTTPLoad is an opt-in capacity check of the edge's shape: the sample
// at 2 Mbit/s in real time, served over HTTP-FLV on loopback to N clients
// (STREAM_LOAD_VIEWERS=2000), each handler calling Next, Write, Flush. It
// measures 8 s after everyone joined and reports each viewer's rate, drops
// and the CPU of the whole process (server and clients).
// STREAM_LOAD_WAKE_ALL=1 turns off audio wake batching for comparison.
func TestHTTPLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("STREAM_LOAD_VIEWERS"))
	if n <= 0 {
		t.Skip("set STREAM_LOAD_VIEWERS=2000 to run the loopback HTTP-FLV load check")
	}
	const window = 8 * time.Second
	o := Options{}
	if os.Getenv("STREAM_LOAD_WAKE_ALL") != "" {
		o.AudioWake = -1
	}
	s := New("load", o)
	src, err := sample.New(sample.Options{VideoBitrate: 2_000_000, Realtime: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			tag, err := src.Next(ctx)
			if err != nil {
				s.Close(nil)
				return
			}
			s.Write(&tag)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := s.Subscribe(0)
		defer v.Close()
		w.Header().Set("Content-Type", "video/x-flv")
		fl := w.(http.Flusher)
		for {
			b, err := v.Next(r.Context())
			if err != nil {
				return
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			fl.Flush()
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	time.Sleep(1500 * time.Millisecond) // a GOP in the cache

	var total atomic.Int64
	var joined, done sync.WaitGroup
	joined.Add(n)
	done.Add(n)
	stop := make(chan struct{})
	for i := range n {
		go func() {
			defer done.Done()
			time.Sleep(time.Duration(i) * time.Millisecond) // no SYN storm
			c, err := net.Dial("tcp", ln.Addr().String())
			joined.Done()
			if err != nil {
				t.Error(err)
				return
			}
			go func() { <-stop; c.Close() }()
			fmt.Fprintf(c, "GET /load.flv HTTP/1.1\r\nHost: load\r\n\r\n")
			buf := make([]byte, 64<<10)
			for {
				k, err := c.Read(buf)
				total.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	joined.Wait()
	time.Sleep(2 * time.Second)
	b0, cpu0, t0 := total.Load(), cpuTime(), time.Now()
	time.Sleep(window)
	b1, cpu1, el := total.Load(), cpuTime(), time.Since(t0)
	close(stop)
	done.Wait()
	rate := float64(b1-b0) * 8 / float64(n) / el.Seconds()
	st := s.Stats()
	t.Logf("%d viewers: %.2f Mbit/s each, %.0f MB/s in all, process CPU %.2f cores (server and clients), %d tags dropped",
		n, rate/1e6, float64(b1-b0)/el.Seconds()/1e6, (cpu1-cpu0).Seconds()/el.Seconds(), st.DroppedTags)
	if rate < 2_000_000*0.95 {
		t.Errorf("viewers got %.2f Mbit/s of a 2.06 Mbit/s stream: the server cannot keep up", rate/1e6)
	}
}
