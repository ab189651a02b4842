package broker

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestKcatListsTopics(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat is required in CI: apt-get install -y kcat")
		}
		t.Skip("kcat not installed (apt-get install -y kcat); skipping the outside-client check")
	}
	e := startEmbedded(t, EmbeddedConfig{})
	ctx := ctxT(t, 30*time.Second)
	if err := EnsureTopics(ctx, []string{e.Addr()}, []TopicSpec{{Name: "kcat-visible", Partitions: 3}}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, kcat, "-b", e.Addr(), "-L", "-m", "10").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, `topic "kcat-visible" with 3 partitions`) || !strings.Contains(s, e.Addr()) {
		t.Fatalf("kcat -L does not show the topic and broker:\n%s", s)
	}

	// kcat as producer and consumer, auto-creating a topic like Kafka does.
	p := exec.CommandContext(ctx, kcat, "-b", e.Addr(), "-P", "-t", "kcat-auto")
	p.Stdin = strings.NewReader("one\ntwo\nthree\n")
	if out, err := p.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, kcat, "-b", e.Addr(), "-C", "-t", "kcat-auto", "-e", "-q", "-f", "%s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, out)
	}
	for _, w := range []string{"one", "two", "three"} {
		if !strings.Contains(string(out), w) {
			t.Fatalf("kcat -C output lacks %q:\n%s", w, out)
		}
	}
}

func TestPortIsRememberedAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	e1, err := StartEmbedded(EmbeddedConfig{DataDir: dir, Addr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := e1.Addr()
	if strings.HasSuffix(first, ":0") {
		t.Fatalf("Addr() = %s, want the real port", first)
	}
	// A second broker on the same DataDir must be refused, not corrupt it.
	if _, err := StartEmbedded(EmbeddedConfig{DataDir: dir, Addr: "127.0.0.1:0"}, nil); err == nil {
		t.Fatal("second broker on the same DataDir started")
	}
	e1.Close()

	e2 := startEmbedded(t, EmbeddedConfig{DataDir: dir})
	if e2.Addr() != first {
		t.Fatalf("restart on :0 got %s, want remembered %s", e2.Addr(), first)
	}
	e2.Close()

	// The remembered port is taken: fall back to another one.
	ln, err := net.Listen("tcp", first)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e3 := startEmbedded(t, EmbeddedConfig{DataDir: dir})
	if e3.Addr() == first {
		t.Fatalf("expected a new port while %s is taken", first)
	}
}

func TestListenAllInterfacesAdvertisesLoopback(t *testing.T) {
	e := startEmbedded(t, EmbeddedConfig{Addr: "0.0.0.0:0"})
	if !strings.HasPrefix(e.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %s, want 127.0.0.1:port", e.Addr())
	}
	ctx := ctxT(t, 20*time.Second)
	if err := EnsureTopics(ctx, []string{e.Addr()}, []TopicSpec{{Name: "any-iface"}}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, e.Addr(), "any-iface", 0, 10)
	if got := readAll(t, ctx, e.Addr(), "any-iface", DefaultPartitions); len(got) != 10 {
		t.Fatalf("read %d messages, want 10", len(got))
	}
}

func TestEnsureTopicsAndLag(t *testing.T) {
	e := startEmbedded(t, EmbeddedConfig{Partitions: 2})
	ctx := ctxT(t, 30*time.Second)
	bs := []string{e.Addr()}
	specs := []TopicSpec{
		{Name: "lag-a", Partitions: 3, ReplicationFactor: 1, RetentionMs: 3_600_000},
		{Name: "lag-b"}, // broker defaults
	}
	for range 2 { // the second call must be a no-op
		if err := EnsureTopics(ctx, bs, specs); err != nil {
			t.Fatal(err)
		}
	}
	cl := &kafka.Client{Addr: kafka.TCP(e.Addr()), Transport: newTransport()}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"lag-a", "lag-b"}})
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]int{}
	for _, tp := range md.Topics {
		parts[tp.Name] = len(tp.Partitions)
	}
	if parts["lag-a"] != 3 || parts["lag-b"] != 2 {
		t.Fatalf("partitions = %v, want lag-a:3 lag-b:2", parts)
	}
	dc, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: "lag-a", ConfigNames: []string{"retention.ms"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if v := dc.Resources[0].ConfigEntries; len(v) != 1 || v[0].ConfigValue != "3600000" {
		t.Fatalf("retention.ms = %+v", v)
	}

	produce(t, ctx, e.Addr(), "lag-a", 0, 100)
	produce(t, ctx, e.Addr(), "lag-b", 0, 7)
	topics := []string{"lag-a", "lag-b", "no-such-topic"}
	lag, err := Lag(ctx, bs, "g", topics)
	if err != nil {
		t.Fatal(err)
	}
	if lag["lag-a"] != 100 || lag["lag-b"] != 7 || len(lag) != 2 {
		t.Fatalf("lag before commits = %v, want lag-a:100 lag-b:7", lag)
	}

	r, _ := consumeGroup(t, ctx, e.Addr(), "g", "lag-a", 60, 25)
	r.Close()
	lag, err = Lag(ctx, bs, "g", topics)
	if err != nil {
		t.Fatal(err)
	}
	if lag["lag-a"] != 40 || lag["lag-b"] != 7 {
		t.Fatalf("lag after committing 60 = %v, want lag-a:40 lag-b:7", lag)
	}

	if err := EnsureTopics(ctx, bs, []TopicSpec{{Name: "bad", Partitions: 1, Configs: map[string]string{"cleanup.policy": "nonsense"}}}); err == nil {
		t.Log("kfake accepted an invalid cleanup.policy (a real Kafka refuses it)")
	}
}

// TestDurability is the crash test: acknowledged messages and committed
// group offsets must survive SIGKILL of the broker process, and a clean
// stop and restart.
func TestDurability(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill9", syscall.SIGKILL}, {"clean", syscall.SIGTERM}} {
		t.Run(tc.name, func(t *testing.T) { testDurability(t, tc.sig) })
	}
}

func testDurability(t *testing.T, sig syscall.Signal) {
	const (
		topic      = "durable"
		group      = "durable-g"
		partitions = 4
		n          = 20_000
		consumed   = 12_345
	)
	ctx := ctxT(t, 45*time.Second)
	dir := t.TempDir()
	child := startChild(t, dir, "127.0.0.1:0")
	addr := child.addr
	if err := EnsureTopics(ctx, []string{addr}, []TopicSpec{{Name: topic, Partitions: partitions}}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, addr, topic, 0, n)
	r, _ := consumeGroup(t, ctx, addr, group, topic, consumed, 5000)
	want := committedOffsets(t, ctx, addr, group, topic, partitions)
	var sum int64
	for _, o := range want {
		sum += o
	}
	if sum != consumed {
		t.Fatalf("committed offsets %v sum to %d, want %d", want, sum, consumed)
	}

	if sig == syscall.SIGTERM {
		r.Close() // a clean shutdown stops consumers before the broker
		child.stop(t, sig)
	} else {
		child.stop(t, sig) // the member dies with the broker, as in a crash
		r.Close()
	}

	child = startChild(t, dir, "127.0.0.1:0")
	if child.addr != addr {
		t.Fatalf("restarted broker listens on %s, want remembered %s", child.addr, addr)
	}
	if got := committedOffsets(t, ctx, addr, group, topic, partitions); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("committed offsets after restart = %v, want %v", got, want)
	}
	lag, err := Lag(ctx, []string{addr}, group, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	if lag[topic] != n-consumed {
		t.Fatalf("lag after restart = %d, want %d", lag[topic], n-consumed)
	}
	seen := readAll(t, ctx, addr, topic, partitions)
	if len(seen) != n {
		t.Fatalf("read %d distinct messages after restart, want %d", len(seen), n)
	}
	for v, c := range seen {
		if c != 1 {
			t.Fatalf("message %s stored %d times", v, c)
		}
	}

	// The group resumes exactly at its commits and the broker takes new writes.
	start := time.Now()
	produce(t, ctx, addr, topic, n, n+100)
	r, got := consumeGroup(t, ctx, addr, group, topic, n-consumed+100, 10_000)
	t.Logf("group rejoined and consumed %d in %v", len(got), time.Since(start))
	first := map[int]int64{}
	for _, m := range got {
		if _, ok := first[m.Partition]; !ok {
			first[m.Partition] = m.Offset
		}
	}
	for p, o := range want {
		if first[p] != o {
			t.Fatalf("partition %d resumed at %d, want committed %d", p, first[p], o)
		}
	}
	if lag, err := Lag(ctx, []string{addr}, group, []string{topic}); err != nil || lag[topic] != 0 {
		t.Fatalf("lag after resuming = %v, %v; want 0", lag, err)
	}

	// Crash once more, now with the partition snapshots of the first clean
	// stop (or none) lagging behind the segments: the reload must trust the
	// segment files.
	produce(t, ctx, addr, topic, n+100, n+200)
	want = committedOffsets(t, ctx, addr, group, topic, partitions)
	child.stop(t, syscall.SIGKILL)
	r.Close()
	child = startChild(t, dir, "127.0.0.1:0")
	if got := committedOffsets(t, ctx, addr, group, topic, partitions); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("committed offsets after second restart = %v, want %v", got, want)
	}
	if seen := readAll(t, ctx, addr, topic, partitions); len(seen) != n+200 {
		t.Fatalf("read %d distinct messages after second restart, want %d", len(seen), n+200)
	}
	if lag, err := Lag(ctx, []string{addr}, group, []string{topic}); err != nil || lag[topic] != 100 {
		t.Fatalf("lag after second restart = %v, %v; want 100", lag, err)
	}
}

// TestReaderSurvivesBrokerRestart checks what the fixed port buys: a
// kafka-go group reader in another process keeps its bootstrap address and
// carries on after the broker is killed and restarted.
func TestReaderSurvivesBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for kafka-go to notice the dead broker")
	}
	const topic, group = "survive", "survive-g"
	ctx := ctxT(t, 50*time.Second)
	dir := t.TempDir()
	child := startChild(t, dir, "127.0.0.1:0")
	addr := child.addr
	if err := EnsureTopics(ctx, []string{addr}, []TopicSpec{{Name: topic, Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	// A long-lived writer, as in a collector that outlives the broker.
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond, Transport: newTransport()}
	defer w.Close()
	write := func(from, to int) error {
		var msgs []kafka.Message
		for i := from; i < to; i++ {
			msgs = append(msgs, kafka.Message{Value: fmt.Appendf(nil, "v%d", i)})
		}
		return w.WriteMessages(ctx, msgs...)
	}
	if err := write(0, 100); err != nil {
		t.Fatal(err)
	}
	r, _ := consumeGroup(t, ctx, addr, group, topic, 100, 100)
	defer r.Close()

	child.stop(t, syscall.SIGKILL)
	child = startChild(t, dir, "127.0.0.1:0")
	start := time.Now()
	// kafka-go's writer may fail the first write on its pooled connection to
	// the dead broker; the caller (collector) retries.
	if err := write(100, 200); err != nil {
		t.Logf("first write after restart: %v", err)
		if err := write(100, 200); err != nil {
			t.Fatalf("second write after restart: %v", err)
		}
	}
	t.Logf("writer recovered in %v", time.Since(start))
	seen := map[string]bool{}
	for len(seen) < 100 {
		m, err := r.FetchMessage(ctx)
		if i, _ := strconv.Atoi(strings.TrimPrefix(string(m.Value), "v")); err == nil && i < 100 {
			continue // a redelivered old message
		}
		if err != nil {
			t.Fatalf("fetch after restart (%d/100): %v", len(seen), err)
		}
		// The first commit may fail on the dead connection; kafka-go then
		// rejoins and redelivers from the last commit (at-least-once).
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Logf("commit after restart: %v", err)
			continue
		}
		if len(seen) == 0 {
			t.Logf("first new message after %v", time.Since(start))
		}
		seen[string(m.Value)] = true
	}
	t.Logf("reader resumed after broker restart in %v", time.Since(start))
}

// TestRetentionIsEnforced checks the broker-wide retention applies to topics
// without their own retention.ms (kfake alone would not enforce it).
func TestRetentionIsEnforced(t *testing.T) {
	e := startEmbedded(t, EmbeddedConfig{Retention: 200 * time.Millisecond, RetentionCheckInterval: 50 * time.Millisecond})
	ctx := ctxT(t, 20*time.Second)
	if err := EnsureTopics(ctx, []string{e.Addr()}, []TopicSpec{{Name: "short", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, e.Addr(), "short", 0, 50)
	for {
		lag, err := Lag(ctx, []string{e.Addr()}, "nobody", []string{"short"})
		if err != nil {
			t.Fatal(err)
		}
		if lag["short"] == 0 {
			return // log start moved to the high watermark
		}
		select {
		case <-ctx.Done():
			t.Fatalf("retention never applied; lag still %d", lag["short"])
		case <-time.After(50 * time.Millisecond):
		}
	}
}
