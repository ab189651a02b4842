package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Defaults for EmbeddedConfig's zero values.
const (
	DefaultAddr                   = "127.0.0.1:9092"
	DefaultRetention              = 72 * time.Hour
	DefaultRetentionBytes         = 1 << 30 // per partition
	DefaultPartitions             = 1
	DefaultRetentionCheckInterval = 5 * time.Minute
	// DefaultMessageMaxBytes is message.max.bytes, the largest record batch
	// a producer may send: Kafka's default, set explicitly because the
	// producer's BatchBytes (kafkaio.DefaultBatchBytes) is kept under it.
	DefaultMessageMaxBytes = 1<<20 + 12

	// portFile remembers the port chosen for Addr ":0", so that clients
	// configured with the address (other processes, kcat, config files)
	// still find the broker after a restart.
	portFile = "broker.port"
	lockFile = "broker.lock"
)

// EmbeddedConfig configures the embedded broker.
type EmbeddedConfig struct {
	// DataDir holds topics, segments and group offsets; required. State
	// persists there across restarts.
	DataDir string
	// Addr is the host:port to listen on, default DefaultAddr. Port 0 picks a
	// free port the first time and then reuses it (remembered in
	// DataDir/broker.port) while it is free.
	Addr string
	// AdvertisedHost is the host clients are told to connect to. Default: the
	// host of Addr, or 127.0.0.1 when Addr listens on all interfaces. Set it
	// when clients on other machines must reach the broker.
	AdvertisedHost string
	// Retention is the broker-wide log.retention.ms, default DefaultRetention.
	// Negative keeps data forever.
	Retention time.Duration
	// RetentionBytes is log.retention.bytes (per partition), default
	// DefaultRetentionBytes. Negative means unlimited.
	RetentionBytes int64
	// Partitions is the partition count of auto-created topics and of
	// CreateTopics requests that ask for the broker default, default
	// DefaultPartitions.
	Partitions int
	// RetentionCheckInterval is how often retention is enforced, default
	// DefaultRetentionCheckInterval (Kafka's log.retention.check.interval.ms).
	RetentionCheckInterval time.Duration
	// SyncWrites fsyncs every produced batch and group commit before the
	// reply. Off by default: acknowledged data is written to the OS page cache
	// before the reply, which survives a process crash but not a power loss,
	// like Kafka's default log.flush settings.
	SyncWrites bool
	// BrokerConfigs are extra kfake broker configs (for example
	// message.max.bytes); they override the ones derived above.
	BrokerConfigs map[string]string
}

// Embedded is a running embedded broker.
type Embedded struct {
	cluster *kfake.Cluster
	addr    string
	dataDir string
	logger  log.Logger
	unlock  func() error

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts a single-node Kafka-protocol broker persisting to
// cfg.DataDir. Call Close to flush state and release the port.
func StartEmbedded(cfg EmbeddedConfig, logger log.Logger) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded broker: DataDir is required")
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	logger = log.With(logger, "component", "broker")
	cfg = withDefaults(cfg)

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker: create data dir: %w", err)
	}
	// kfake does not guard its directory; two brokers appending to the same
	// segments would corrupt them.
	unlock, err := lockDir(filepath.Join(cfg.DataDir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("embedded broker: lock data dir %s: %w", cfg.DataDir, err)
	}

	ln, err := listen(cfg, logger)
	if err != nil {
		unlock()
		return nil, err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := os.WriteFile(filepath.Join(cfg.DataDir, portFile), []byte(port+"\n"), 0o644); err != nil {
		ln.Close()
		unlock()
		return nil, fmt.Errorf("embedded broker: remember port: %w", err)
	}
	advHost := cfg.AdvertisedHost
	if advHost == "" {
		advHost, _, _ = net.SplitHostPort(ln.Addr().String())
		if ip := net.ParseIP(advHost); ip == nil || ip.IsUnspecified() {
			advHost = "127.0.0.1"
		}
	}
	// kfake advertises its listener's Addr() in metadata, so the wrapper is
	// what makes a 0.0.0.0 listener usable by clients.
	adv := &advertisedListener{Listener: ln, addr: advAddr(net.JoinHostPort(advHost, port)), ready: make(chan struct{})}

	bcfgs := map[string]string{
		"log.retention.ms":    strconv.FormatInt(durationMs(cfg.Retention), 10),
		"log.retention.bytes": strconv.FormatInt(cfg.RetentionBytes, 10),
		"message.max.bytes":   strconv.Itoa(DefaultMessageMaxBytes),
	}
	for k, v := range cfg.BrokerConfigs {
		bcfgs[k] = v
	}

	var handed bool
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake always asks for 127.0.0.1:port; we hand it the listener we
		// opened on the configured address instead.
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if handed {
				return nil, errors.New("embedded broker: listener already used")
			}
			handed = true
			return adv, nil
		}),
		kfake.DataDir(cfg.DataDir),
		kfake.ClusterID("lastmile"),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.AllowAutoTopicCreation(), // Kafka's default; kcat and ad-hoc producers expect it
		kfake.BrokerConfigs(bcfgs),
		kfake.WithLogger(kfakeLogger{logger}),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	start := time.Now()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		close(adv.ready)
		ln.Close()
		unlock()
		return nil, fmt.Errorf("embedded broker: start: %w", err)
	}
	guard(c, logger)
	close(adv.ready)
	// Loading reads every segment file whole (after a crash it holds a
	// partition's entire log at once); that memory is garbage now, so hand
	// it back instead of leaving the process's RSS at the size of the log.
	debug.FreeOSMemory()
	e := &Embedded{
		cluster: c,
		addr:    adv.addr.String(),
		dataDir: cfg.DataDir,
		logger:  logger,
		unlock:  unlock,
		stop:    make(chan struct{}),
	}
	// kfake enforces broker-level retention only for topics that carry their
	// own retention config, and only hourly; do it ourselves for all topics.
	e.wg.Add(1)
	go e.enforceRetention(cfg.RetentionCheckInterval)

	level.Info(logger).Log("msg", "embedded broker started", "addr", e.addr,
		"listen", ln.Addr().String(), "data_dir", cfg.DataDir,
		"retention", cfg.Retention, "retention_bytes", cfg.RetentionBytes,
		"sync_writes", cfg.SyncWrites, "took", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// Addr returns the address clients should bootstrap with (host:port).
func (e *Embedded) Addr() string { return e.addr }

// Close stops the broker, writes its state to DataDir and releases the port.
// It is safe to call more than once.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		e.wg.Wait() // kfake's admin calls block forever once it is closed
		e.cluster.Close()
		if err := e.unlock(); err != nil {
			e.closeErr = fmt.Errorf("embedded broker: unlock data dir: %w", err)
		}
		level.Info(e.logger).Log("msg", "embedded broker stopped", "addr", e.addr)
	})
	return e.closeErr
}

func (e *Embedded) enforceRetention(every time.Duration) {
	defer e.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.cluster.ApplyRetention()
		}
	}
}

func withDefaults(cfg EmbeddedConfig) EmbeddedConfig {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.RetentionBytes == 0 {
		cfg.RetentionBytes = DefaultRetentionBytes
	}
	if cfg.RetentionBytes < 0 {
		cfg.RetentionBytes = -1
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.RetentionCheckInterval <= 0 {
		cfg.RetentionCheckInterval = DefaultRetentionCheckInterval
	}
	return cfg
}

func durationMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// listen opens the broker's listener. With port 0 it first tries the port
// remembered from the previous run, so bootstrap addresses stay valid.
func listen(cfg EmbeddedConfig, logger log.Logger) (net.Listener, error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: addr %q: %w", cfg.Addr, err)
	}
	if port == "0" || port == "" {
		if b, err := os.ReadFile(filepath.Join(cfg.DataDir, portFile)); err == nil {
			if p := strings.TrimSpace(string(b)); p != "" {
				ln, err := net.Listen("tcp", net.JoinHostPort(host, p))
				if err == nil {
					return ln, nil
				}
				level.Warn(logger).Log("msg", "remembered broker port unavailable, picking another; clients with the old address must be reconfigured", "port", p, "err", err)
			}
		}
		port = "0"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen %s: %w", cfg.Addr, err)
	}
	return ln, nil
}

type advAddr string

func (a advAddr) Network() string { return "tcp" }
func (a advAddr) String() string  { return string(a) }

type advertisedListener struct {
	net.Listener
	addr  advAddr
	ready chan struct{} // closed once the guard is in place: no client is served before
}

func (l *advertisedListener) Accept() (net.Conn, error) {
	<-l.ready
	return l.Listener.Accept()
}

func (l *advertisedListener) Addr() net.Addr { return l.addr }

// kfakeLogger forwards kfake's logs to go-kit at info level and above; debug
// logs every request and would drown everything else.
type kfakeLogger struct{ logger log.Logger }

func (l kfakeLogger) Logf(lvl kfake.LogLevel, format string, args ...any) {
	var lg log.Logger
	switch lvl {
	case kfake.LogLevelError:
		lg = level.Error(l.logger)
	case kfake.LogLevelWarn:
		lg = level.Warn(l.logger)
	case kfake.LogLevelInfo:
		lg = level.Info(l.logger)
	default:
		return
	}
	lg.Log("msg", fmt.Sprintf(format, args...))
}
