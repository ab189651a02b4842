package broker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/segmentio/kafka-go"
)

// The durability tests run the broker in a child process (this test binary
// re-executed with childEnv set) so that they can SIGKILL it.
const (
	childEnv     = "LASTMILE_BROKER_TEST_CHILD"
	childDirEnv  = "LASTMILE_BROKER_TEST_DIR"
	childAddrEnv = "LASTMILE_BROKER_TEST_ADDR"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild starts the broker, prints its address, and closes it cleanly on
// SIGTERM.
func runChild() int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	logger := log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))
	e, err := StartEmbedded(EmbeddedConfig{DataDir: os.Getenv(childDirEnv), Addr: os.Getenv(childAddrEnv)}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	fmt.Printf("ADDR %s\n", e.Addr())
	<-sig
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	return 0
}

type childBroker struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

func startChild(t *testing.T, dir, addr string) *childBroker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDirEnv+"="+dir, childAddrEnv+"="+addr)
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childBroker{cmd: cmd, done: make(chan error, 1)}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				line <- s
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { c.done <- cmd.Wait() }()
	select {
	case c.addr = <-line:
	case err := <-c.done:
		t.Fatalf("child broker exited before ready: %v", err)
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child broker not ready after 20s")
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done; c.done <- nil })
	return c
}

func (c *childBroker) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("child broker clean stop: %v", err)
		}
		c.done <- err // keep Cleanup's receive from blocking
	case <-time.After(20 * time.Second):
		t.Fatal("child broker did not exit")
	}
}

// testWriter sends child logs to t.Log, so they show only on failure or -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startEmbedded(t testing.TB, cfg EmbeddedConfig) *Embedded {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	e, err := StartEmbedded(cfg, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newTransport gives each client its own connection pool, so a broker
// restarted on the same port is never reached through a stale connection.
func newTransport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: 5 * time.Second, MetadataTTL: time.Second}
}

func produce(t testing.TB, ctx context.Context, addr, topic string, from, to int) {
	t.Helper()
	tr := newTransport()
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    1000,
		Transport:    tr,
	}
	defer w.Close()
	const chunk = 500
	for i := from; i < to; i += chunk {
		msgs := make([]kafka.Message, 0, chunk)
		for j := i; j < min(i+chunk, to); j++ {
			msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", j), Value: fmt.Appendf(nil, "v%d", j)})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// committedOffsets reads the group's committed offsets, partition -> offset.
func committedOffsets(t testing.TB, ctx context.Context, addr, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	tr := newTransport()
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	out := make(map[int]int64)
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("offset fetch %d: %v", p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// readAll reads every partition from its first offset to its high watermark
// without a group and returns the values with how often each was seen.
func readAll(t testing.TB, ctx context.Context, addr, topic string, partitions int) map[string]int {
	t.Helper()
	tr := newTransport()
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
	reqs := map[string][]kafka.OffsetRequest{}
	for p := range partitions {
		reqs[topic] = append(reqs[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	seen := map[string]int{}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("list offsets %d: %v", po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{addr}, Topic: topic, Partition: po.Partition,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond,
			Dialer: &kafka.Dialer{Timeout: 5 * time.Second},
		})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			seen[string(m.Value)]++
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		r.Close()
	}
	return seen
}

// consumeGroup fetches n messages as a member of group and commits them
// every commitEvery messages (and at the end). It returns the reader still
// open, so the caller decides when the member leaves.
func consumeGroup(t testing.TB, ctx context.Context, addr, group, topic string, n, commitEvery int) (*kafka.Reader, []kafka.Message) {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, GroupID: group, Topic: topic,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond, // default 5s delays recovery after a broker restart
		Dialer:            &kafka.Dialer{Timeout: 5 * time.Second},
	})
	var got, pending []kafka.Message
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			r.Close()
			t.Fatalf("fetch %d/%d: %v", len(got), n, err)
		}
		got = append(got, m)
		pending = append(pending, m)
		if len(pending) >= commitEvery || len(got) == n {
			if err := r.CommitMessages(ctx, pending...); err != nil {
				r.Close()
				t.Fatalf("commit: %v", err)
			}
			pending = pending[:0]
		}
	}
	return r, got
}
