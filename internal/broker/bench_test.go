package broker

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// The benchmarks run kafka-go against the embedded broker in the same
// process, so cpu-us/msg is what client and broker cost together. On the
// target machine (2 cores) 100k msgs/s needs cpu-us/msg well under 20.
//
//	go test -run '^$' -bench . -benchmem ./internal/broker/

const (
	benchMsgSize    = 500
	benchPartitions = 4
	benchProducers  = 4    // concurrent WriteMessages callers, like collector requests
	benchChunk      = 1000 // events per WriteMessages call (one HTTP batch)
)

var benchCodecs = []struct {
	name  string
	codec kafka.Compression
}{{"none", 0}, {"lz4", kafka.Lz4}, {"snappy", kafka.Snappy}, {"zstd", kafka.Zstd}}

// benchMessages returns n distinct-enough 500-byte JSON events keyed by
// session, so compression sees realistic (not constant) data.
func benchMessages(n int) []kafka.Message {
	rng := rand.New(rand.NewSource(1))
	types := []string{"first_frame", "stall", "play_stop", "edge_access", "push_stats"}
	cdns := []string{"cdn-a", "cdn-b", "cdn-c"}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		sid := fmt.Sprintf("s-%016x", rng.Uint64())
		v := fmt.Appendf(nil, `{"event_id":"%016x%016x","log_type":"%s","ts":%d,"source":"client","app_id":"demo","device_id":"d-%08x","user_id":"u%d","session_id":"%s","room_id":"r%d","stream_id":"live/r%d","region":"eu-west","isp":"isp%d","cdn":"%s","node_id":"edge-%d","protocol":"flv","rendition":"720p","codec":"h264","app_version":"3.2.%d","os":"android","network":"wifi","total_ms":%d,"dns_ms":%d,"tcp_connect_ms":%d`,
			rng.Uint64(), rng.Uint64(), types[rng.Intn(len(types))], 1_700_000_000_000+int64(i), rng.Uint32(), rng.Intn(100000), sid,
			rng.Intn(500), rng.Intn(500), rng.Intn(5), cdns[rng.Intn(len(cdns))], rng.Intn(40), rng.Intn(9), rng.Intn(3000), rng.Intn(200), rng.Intn(300))
		for len(v) < benchMsgSize-1 {
			v = append(v, ' ')
		}
		msgs[i] = kafka.Message{Key: []byte(sid), Value: append(v[:benchMsgSize-1], '}')}
	}
	return msgs
}

type benchBroker struct {
	name string
	sync bool
}

var benchBrokers = []benchBroker{{"pagecache", false}, {"syncwrites", true}}

func startBenchBroker(b *testing.B, bb benchBroker, extra map[string]string) (*Embedded, context.Context) {
	e := startEmbedded(b, EmbeddedConfig{SyncWrites: bb.sync, Partitions: benchPartitions, BrokerConfigs: extra})
	ctx := ctxT(b, 10*time.Minute)
	return e, ctx
}

var benchTopicSeq atomic.Int64

func benchTopic(b *testing.B, ctx context.Context, addr string) string {
	topic := fmt.Sprintf("bench-%d", benchTopicSeq.Add(1))
	if err := EnsureTopics(ctx, []string{addr}, []TopicSpec{{Name: topic, Partitions: benchPartitions}}); err != nil {
		b.Fatal(err)
	}
	return topic
}

type writerSettings struct {
	codec        kafka.Compression
	batchBytes   int64
	batchSize    int           // default 10000
	batchTimeout time.Duration // default 2ms
}

func newBenchWriter(addr, topic string, s writerSettings) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cmp.Or(s.batchTimeout, 2*time.Millisecond),
		// kafka-go allocates BatchSize messages (~150 B each) for every
		// batch up front, however few it ends up holding.
		BatchSize:   cmp.Or(s.batchSize, 10000),
		BatchBytes:  s.batchBytes,
		Compression: s.codec,
		Transport:   newTransport(),
	}
}

// produceN writes n messages from benchProducers goroutines in chunks.
func produceN(ctx context.Context, w *kafka.Writer, pool []kafka.Message, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchProducers)
	for range benchProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]kafka.Message, 0, benchChunk)
			for {
				start := int(next.Add(benchChunk)) - benchChunk
				if start >= n {
					return
				}
				batch = batch[:0]
				for i := start; i < min(start+benchChunk, n); i++ {
					m := pool[i%len(pool)]
					batch = append(batch, kafka.Message{Key: m.Key, Value: m.Value})
				}
				if err := w.WriteMessages(ctx, batch...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type meter struct {
	b     *testing.B
	wall  time.Time
	cpu   time.Duration
	count int
}

func startMeter(b *testing.B, count int) *meter {
	b.ResetTimer()
	return &meter{b: b, wall: time.Now(), cpu: cpuTime(), count: count}
}

func (m *meter) stop() {
	m.b.StopTimer()
	wall, cpu := time.Since(m.wall), cpuTime()-m.cpu
	m.b.ReportMetric(float64(m.count)/wall.Seconds(), "msgs/s")
	m.b.ReportMetric(float64(cpu.Microseconds())/float64(m.count), "cpu-us/msg")
}

// BenchmarkProduce measures a kafka-go Writer (RequireAll) into the embedded
// broker; one op is one 500-byte message.
func BenchmarkProduce(b *testing.B) {
	pool := benchMessages(20000)
	for _, bb := range benchBrokers {
		for _, c := range benchCodecs {
			b.Run(bb.name+"/"+c.name, func(b *testing.B) {
				benchProduce(b, bb, pool, writerSettings{codec: c.codec}, nil)
			})
		}
	}
	// Bigger batches need a bigger message.max.bytes on the broker (and on
	// a real cluster); check whether they buy anything.
	b.Run("pagecache/lz4/batchsize2000", func(b *testing.B) {
		benchProduce(b, benchBrokers[0], pool, writerSettings{codec: kafka.Lz4, batchSize: 2000}, nil)
	})
	b.Run("pagecache/lz4/batchbytes4MiB", func(b *testing.B) {
		benchProduce(b, benchBrokers[0], pool, writerSettings{codec: kafka.Lz4, batchBytes: 4 << 20},
			map[string]string{"message.max.bytes": fmt.Sprint(8 << 20)})
	})
}

func benchProduce(b *testing.B, bb benchBroker, pool []kafka.Message, s writerSettings, extra map[string]string) {
	e, ctx := startBenchBroker(b, bb, extra)
	topic := benchTopic(b, ctx, e.Addr())
	w := newBenchWriter(e.Addr(), topic, s)
	defer w.Close()
	if err := produceN(ctx, w, pool, 2000); err != nil { // warm up connections and metadata
		b.Fatal(err)
	}
	b.SetBytes(benchMsgSize)
	b.ReportAllocs()
	m := startMeter(b, b.N)
	if err := produceN(ctx, w, pool, b.N); err != nil {
		b.Fatal(err)
	}
	m.stop()
	b.ReportMetric(float64(segmentBytes(b, e))/float64(b.N+2000), "disk-B/msg")
}

// segmentBytes sums the broker's segment files, to size retention.
func segmentBytes(b *testing.B, e *Embedded) int64 {
	var n int64
	err := filepath.WalkDir(e.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".dat") {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

type readerSettings struct {
	name          string
	minBytes      int
	maxBytes      int
	maxWait       time.Duration
	queueCapacity int
}

var benchReaderSettings = []readerSettings{
	{"kafkago-defaults", 1, 1 << 20, 10 * time.Second, 100},
	{"min1-max10MiB-q1000", 1, 10 << 20, 250 * time.Millisecond, 1000},
	{"min64KiB-max10MiB-q10000", 64 << 10, 10 << 20, 250 * time.Millisecond, 10000},
	{"min1MiB-max50MiB-q10000", 1 << 20, 50 << 20, 250 * time.Millisecond, 10000},
}

func newBenchReader(addr, topic, group string, s readerSettings) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:          []string{addr},
		GroupID:          group,
		Topic:            topic,
		MinBytes:         s.minBytes,
		MaxBytes:         s.maxBytes,
		MaxWait:          s.maxWait,
		QueueCapacity:    s.queueCapacity,
		ReadBatchTimeout: 10 * time.Second,
		StartOffset:      kafka.FirstOffset,
		CommitInterval:   0, // synchronous commits, as the processor does after the store write
	})
}

// consumeN fetches n messages through the group and commits every 10k.
func consumeN(ctx context.Context, r *kafka.Reader, n int) error {
	pending := make([]kafka.Message, 0, 10000)
	for i := range n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("fetch %d/%d: %w", i, n, err)
		}
		pending = append(pending, m)
		if len(pending) == cap(pending) || i == n-1 {
			if err := r.CommitMessages(ctx, pending...); err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			pending = pending[:0]
		}
	}
	return nil
}

// BenchmarkConsume measures a kafka-go group Reader (FetchMessage, commit
// every 10k) draining a topic filled beforehand; one op is one message.
func BenchmarkConsume(b *testing.B) {
	pool := benchMessages(20000)
	for _, bb := range benchBrokers {
		for _, c := range []int{0, 1} { // none, lz4
			codec := benchCodecs[c]
			for _, rs := range benchReaderSettings {
				if bb.sync && rs.name != benchReaderSettings[2].name {
					continue // syncwrites does not change the read path
				}
				b.Run(bb.name+"/"+codec.name+"/"+rs.name, func(b *testing.B) {
					e, ctx := startBenchBroker(b, bb, nil)
					topic := benchTopic(b, ctx, e.Addr())
					w := newBenchWriter(e.Addr(), topic, writerSettings{codec: codec.codec})
					if err := produceN(ctx, w, pool, b.N+1); err != nil {
						b.Fatal(err)
					}
					w.Close()
					r := newBenchReader(e.Addr(), topic, "bench", rs)
					defer r.Close()
					if err := consumeN(ctx, r, 1); err != nil { // join the group untimed
						b.Fatal(err)
					}
					b.SetBytes(benchMsgSize)
					b.ReportAllocs()
					m := startMeter(b, b.N)
					if err := consumeN(ctx, r, b.N); err != nil {
						b.Fatal(err)
					}
					m.stop()
				})
			}
		}
	}
}

// BenchmarkPipeline produces and consumes at the same time, the way the
// collector and processor share the broker; one op is one message through.
func BenchmarkPipeline(b *testing.B) {
	pool := benchMessages(20000)
	for _, bb := range benchBrokers {
		for _, c := range []int{0, 1} { // none, lz4
			codec := benchCodecs[c]
			b.Run(bb.name+"/"+codec.name, func(b *testing.B) {
				e, ctx := startBenchBroker(b, bb, nil)
				topic := benchTopic(b, ctx, e.Addr())
				w := newBenchWriter(e.Addr(), topic, writerSettings{codec: codec.codec})
				defer w.Close()
				r := newBenchReader(e.Addr(), topic, "bench", benchReaderSettings[2])
				defer r.Close()
				// Join the group and warm up before timing.
				if err := produceN(ctx, w, pool, 1000); err != nil {
					b.Fatal(err)
				}
				if err := consumeN(ctx, r, 1000); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(benchMsgSize)
				b.ReportAllocs()
				m := startMeter(b, b.N)
				perr := make(chan error, 1)
				go func() { perr <- produceN(ctx, w, pool, b.N) }()
				if err := consumeN(ctx, r, b.N); err != nil {
					b.Fatal(err)
				}
				m.stop()
				if err := <-perr; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkPipelinePaced offers exactly 100k msgs/s (the target) in HTTP-sized
// chunks of 100 from 16 concurrent producers, with a group reader consuming,
// and reports the CPU cores the Kafka path (clients + broker) takes and the
// produce-to-fetch latency. Run it with -benchtime=300000x (3 s).
func BenchmarkPipelinePaced(b *testing.B) {
	const (
		rate      = 100_000
		producers = 16
		chunk     = 100
	)
	pool := benchMessages(20000)
	type variant struct {
		name string
		bb   benchBroker
		ws   writerSettings
		rs   readerSettings
	}
	// The brief's writer settings, then smaller preallocated batches, then a
	// longer linger; SyncWrites only with the winner.
	recommended := writerSettings{batchSize: 2000, batchTimeout: 10 * time.Millisecond}
	var variants []variant
	add := func(bb benchBroker, c int, ws writerSettings, rs readerSettings) {
		ws.codec = benchCodecs[c].codec
		variants = append(variants, variant{
			name: fmt.Sprintf("%s/%s/bs%d-bt%v/%s", bb.name, benchCodecs[c].name, ws.batchSize, ws.batchTimeout, rs.name),
			bb:   bb, ws: ws, rs: rs,
		})
	}
	for _, c := range []int{0, 1} { // none, lz4
		add(benchBrokers[0], c, writerSettings{batchSize: 10000, batchTimeout: 2 * time.Millisecond}, benchReaderSettings[1])
		add(benchBrokers[0], c, writerSettings{batchSize: 2000, batchTimeout: 2 * time.Millisecond}, benchReaderSettings[1])
		add(benchBrokers[0], c, recommended, benchReaderSettings[1])
		add(benchBrokers[0], c, recommended, benchReaderSettings[2])
		add(benchBrokers[1], c, recommended, benchReaderSettings[1])
	}
	for _, v := range variants {
		{
			bb := v.bb
			b.Run(v.name, func(b *testing.B) {
				e, ctx := startBenchBroker(b, bb, nil)
				topic := benchTopic(b, ctx, e.Addr())
				w := newBenchWriter(e.Addr(), topic, v.ws)
				defer w.Close()
				r := newBenchReader(e.Addr(), topic, "bench", v.rs)
				defer r.Close()
				if err := produceN(ctx, w, pool, 1000); err != nil {
					b.Fatal(err)
				}
				if err := consumeN(ctx, r, 1000); err != nil {
					b.Fatal(err)
				}
				m := startMeter(b, b.N)
				start := time.Now()
				perr := make(chan error, producers)
				var wg sync.WaitGroup
				var next atomic.Int64
				for range producers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						batch := make([]kafka.Message, 0, chunk)
						for {
							i := int(next.Add(chunk)) - chunk
							if i >= b.N {
								return
							}
							// Pace: chunk i is due at start + i/rate.
							time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
							batch = batch[:0]
							for j := i; j < min(i+chunk, b.N); j++ {
								p := pool[j%len(pool)]
								batch = append(batch, kafka.Message{Key: p.Key, Value: p.Value})
							}
							if err := w.WriteMessages(ctx, batch...); err != nil {
								perr <- err
								return
							}
						}
					}()
				}
				lat := make([]time.Duration, 0, b.N)
				pending := make([]kafka.Message, 0, 10000)
				for i := range b.N {
					msg, err := r.FetchMessage(ctx)
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(msg.Time))
					pending = append(pending, msg)
					if len(pending) == cap(pending) || i == b.N-1 {
						if err := r.CommitMessages(ctx, pending...); err != nil {
							b.Fatal(err)
						}
						pending = pending[:0]
					}
				}
				wall, cpu := time.Since(m.wall), cpuTime()-m.cpu
				m.stop()
				wg.Wait()
				close(perr)
				if err := <-perr; err != nil {
					b.Fatal(err)
				}
				slices.Sort(lat)
				b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}
