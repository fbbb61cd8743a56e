package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultEmbeddedAddr is where the embedded broker listens by default.
const DefaultEmbeddedAddr = "127.0.0.1:9092"

// EmbeddedConfig configures the embedded broker.
type EmbeddedConfig struct {
	// Addr is the host:port to listen on, and the address the broker
	// advertises to clients, so the host must be one clients can dial (not
	// 0.0.0.0 or ::). Default DefaultEmbeddedAddr; "127.0.0.1:0" picks a
	// free port (tests).
	Addr string

	// DataDir is where the broker persists topics, records and committed
	// group offsets. "" keeps everything in memory, lost on Close.
	DataDir string

	// SyncWrites fsyncs every produced batch and every group-log entry
	// before it is acknowledged. Without it data reaches the kernel before
	// the ack (so it survives the process being killed) but not the disk
	// (so an OS crash or power loss can lose the last writes). Only
	// meaningful with DataDir.
	SyncWrites bool

	// SegmentBytes is the size from which a partition's log starts a new
	// segment file. Deleting records (Admin.DeleteRecords) only moves the
	// partition's log start offset: their bytes leave the disk when the
	// whole segment holding them is deleted, which kfake does at once, in
	// DeleteRecords itself. The default, 1, gives every produced batch a
	// segment of its own, so a deleted record's bytes are gone from the
	// DataDir when DeleteRecords returns (unless a batch straddles the
	// deletion point: its bytes stay until the rest of it is deleted too).
	// Its cost is two small files (records and index) per batch kept, and
	// an open file handle for each kept segment that was read since the
	// broker started: when records are kept (no DeleteRecords), set it
	// large, e.g. 64 MiB; a deleted record then stays on disk until every
	// record of its segment is deleted. kfake rolls segments by size only
	// (it ignores segment.ms).
	SegmentBytes int64

	// MaxMessageBytes is the largest record batch the broker accepts from
	// a producer (Kafka's message.max.bytes, a broker default every topic
	// without its own max.message.bytes follows). 0: kfake's default,
	// 1048588.
	MaxMessageBytes int

	// Auth, when set, makes the broker authenticate every client with
	// SASL/SCRAM and authorize every request by Kafka ACLs; see
	// EmbeddedAuth. Nil serves anyone (tests of this package only: vaultd
	// always sets it).
	Auth *EmbeddedAuth

	// TLS, when set, serves TLS only on the listener (with Auth:
	// SASL_SSL). It must hold a certificate.
	TLS *tls.Config

	// Logger receives the broker's warnings and errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// EmbeddedAuth is the embedded broker's authentication and authorization.
//
// Every client authenticates with SASL/SCRAM (SHA-256 or SHA-512); an
// anonymous one is refused everything but the handshake. Every request is
// checked against the broker's ACLs, and there are none to start with: a
// principal may do only what an ACL created through the Kafka protocol
// (CreateACLs) allows. The superuser bypasses ACLs: it is the vault's own
// principal, which creates topics, consumes them in its groups, deletes
// their records and manages the other principals (AlterUserSCRAMs,
// CreateACLs). Topics are never created automatically.
type EmbeddedAuth struct {
	SuperUser     string
	SuperPassword string
}

func (c *EmbeddedConfig) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultEmbeddedAddr
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c (after defaults).
func (c *EmbeddedConfig) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Addr)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
	case host == "":
		errs = append(errs, fmt.Errorf("addr %q: the broker advertises its listen address, so it needs a host clients can dial", c.Addr))
	default:
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("addr %q: the broker advertises its listen address, so it needs a host clients can dial, not %s", c.Addr, host))
		}
	}
	if c.SyncWrites && c.DataDir == "" {
		errs = append(errs, errors.New("sync writes need a data dir"))
	}
	if c.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("negative segment bytes %d", c.SegmentBytes))
	}
	if c.MaxMessageBytes < 0 {
		errs = append(errs, fmt.Errorf("negative max message bytes %d", c.MaxMessageBytes))
	}
	if a := c.Auth; a != nil && (a.SuperUser == "" || len(a.SuperPassword) < 16) {
		errs = append(errs, errors.New("auth: a superuser and a password of at least 16 characters are required"))
	}
	return errors.Join(errs...)
}

// Embedded is the in-process Kafka-protocol broker (kfake), the vault's
// single-node default. It is one broker, auto-creates topics a producer
// asks for (1 partition), and with a DataDir persists topics, records and
// committed offsets.
//
// Unlike kfake on its own, topics created automatically are persisted as
// they are created, so they (and their records) survive the process being
// killed; see StartEmbedded. And records deleted with DeleteRecords leave
// the disk at once (see EmbeddedConfig.SegmentBytes); a deleted topic's
// directory is removed by kfake itself.
//
// Like kfake, it forgets the offsets of a partition whose records were all
// deleted when it restarts: delete records through an Admin
// WithLogEndMarkers, which never empties a partition.
type Embedded struct {
	c    *kfake.Cluster
	addr string
	log  *slog.Logger

	closeOnce sync.Once

	stop chan struct{}  // closed by Close: background work stops
	bg   sync.WaitGroup // background work of the control functions

	mu    sync.Mutex
	known map[string]struct{} // topics the auto-create hook has seen persisted
}

// StartEmbedded starts the broker and returns once it listens.
//
// kfake creates a topic that a Metadata request asks it to auto-create
// without writing its topic list to the DataDir; only a clean Close writes
// it. A process killed before Close came back without such a topic, and its
// records were unreachable. StartEmbedded closes that gap: every Metadata
// request that allows auto-creation first creates the missing topics through
// the same path as CreateTopics, which persists the topic list at once.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("embedded broker config: %w", err)
	}
	addr := cfg.Addr
	brokerConfigs := map[string]string{"log.segment.bytes": strconv.FormatInt(cfg.SegmentBytes, 10)}
	if cfg.MaxMessageBytes > 0 {
		brokerConfigs["message.max.bytes"] = strconv.Itoa(cfg.MaxMessageBytes)
	}
	// Clients wait (in the listen backlog) until the data dir is checked.
	var gl *gatedListener
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			gl = &gatedListener{Listener: ln, open: make(chan struct{}), closed: make(chan struct{}), tls: cfg.TLS, log: cfg.Logger}
			return gl, nil
		}),
		kfake.DefaultNumPartitions(1),
		kfake.WithLogger(kfakeLogger{cfg.Logger}),
		// A broker default, so it applies to every topic (topics created
		// with their own segment.bytes keep theirs); it overrides what a
		// DataDir's broker_configs.json holds.
		kfake.BrokerConfigs(brokerConfigs),
	}
	if cfg.Auth == nil {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	} else {
		opts = append(opts, kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser(SCRAMSHA256, cfg.Auth.SuperUser, cfg.Auth.SuperPassword),
			kfake.Superuser(SCRAMSHA512, cfg.Auth.SuperUser, cfg.Auth.SuperPassword))
		if cfg.DataDir != "" {
			// kfake's persisted credentials replace the seeded ones.
			if err := setPersistedSCRAM(cfg.DataDir, cfg.Auth.SuperUser, cfg.Auth.SuperPassword); err != nil {
				return nil, fmt.Errorf("start embedded broker: %w", err)
			}
		}
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", cfg.Addr, err)
	}
	e := &Embedded{c: c, log: cfg.Logger, stop: make(chan struct{}), known: make(map[string]struct{})}
	if addrs := c.ListenAddrs(); len(addrs) > 0 {
		e.addr = addrs[0]
	}
	if cfg.DataDir != "" {
		if cfg.Auth == nil {
			c.ControlKey(int16(kmsg.Metadata), e.persistAutoCreated)
		}
		c.ControlKey(int16(kmsg.DeleteTopics), e.forgetDeleted)
		if err := e.quarantineOrphans(cfg.DataDir); err != nil {
			c.Close()
			return nil, fmt.Errorf("start embedded broker: %w", err)
		}
	}
	close(gl.open)
	return e, nil
}

// quarantineOrphans moves aside partition directories of topics the broker
// did not load. kfake writes a partition's segments under
// <DataDir>/partitions/<topic>-<partition> and its topic list separately; a
// topic missing from the list (kfake killed after auto-creating it, or a
// data dir written without Embedded) leaves its segments behind, and a topic
// created again under that name would append to them while indexing from
// their start: it served the old records at the new offsets. They go to
// <DataDir>/orphaned/ (they may hold records never consumed), with a
// warning.
func (e *Embedded) quarantineOrphans(dataDir string) error {
	partsDir := filepath.Join(dataDir, "partitions")
	entries, err := os.ReadDir(partsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read partitions: %w", err)
	}
	for _, ent := range entries {
		if !ent.IsDir() {
			continue
		}
		name := ent.Name()
		topic, p, ok := parsePartitionName(name)
		if !ok {
			continue
		}
		if e.c.LeaderFor(topic, p) >= 0 {
			continue // loaded
		}
		dst := filepath.Join(dataDir, "orphaned", name+"."+time.Now().UTC().Format("20060102T150405.000000000"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("quarantine orphaned partition %s: %w", name, err)
		}
		if err := os.Rename(filepath.Join(partsDir, name), dst); err != nil {
			return fmt.Errorf("quarantine orphaned partition %s: %w", name, err)
		}
		e.log.Warn("embedded broker: moved aside the records of a topic the broker does not know (lost before a crash?)",
			"topic", topic, "partition", p, "moved_to", dst)
	}
	return nil
}

// gatedListener holds Accept until open is closed, so no client talks to the
// broker before StartEmbedded returns. It serves TLS when tls is set (here
// rather than in kfake, so that the wire layer sees plaintext frames), and
// puts the wire layer (wireConn) in front of kfake.
type gatedListener struct {
	net.Listener
	open      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	tls       *tls.Config
	log       *slog.Logger
}

func (l *gatedListener) Accept() (net.Conn, error) {
	select {
	case <-l.open:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	return newWireConn(c, l.log), nil
}

func (l *gatedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// persistAutoCreated is a kfake control function that observes Metadata
// requests: topics a client asks to auto-create are created through
// Cluster.CreateTopic, which writes the topic list to disk. It never handles
// the request itself, so kfake answers it as usual.
//
// Control functions run in their own goroutine while the cluster's loop keeps
// serving admin functions, so calling CreateTopic here does not deadlock.
func (e *Embedded) persistAutoCreated(kreq kmsg.Request) (kmsg.Response, error, bool) { //nolint:revive // kfake's signature
	req, ok := kreq.(*kmsg.MetadataRequest)
	if !ok || !req.AllowAutoTopicCreation {
		return nil, nil, false
	}
	for _, t := range req.Topics {
		if t.Topic == nil || !validTopicName(*t.Topic) {
			continue
		}
		name := *t.Topic
		e.mu.Lock()
		_, seen := e.known[name]
		e.mu.Unlock()
		if seen {
			continue
		}
		err := e.c.CreateTopic(name, -1, nil)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			e.mu.Lock()
			e.known[name] = struct{}{}
			e.mu.Unlock()
			continue
		}
		e.log.Warn("embedded broker: persist auto-created topic", "topic", name, "err", err)
	}
	return nil, nil, false
}

// forgetDeleted observes DeleteTopics requests so that a topic deleted and
// later auto-created again is persisted again.
//
// Control functions run before kfake authenticates and authorizes a
// request, so the request may be one kfake refuses: a topic is forgotten
// only once it is gone (polled in the background; forgetting late is
// harmless: the auto-create hook then creates a topic that exists).
func (e *Embedded) forgetDeleted(kreq kmsg.Request) (kmsg.Response, error, bool) { //nolint:revive // kfake's signature
	req, ok := kreq.(*kmsg.DeleteTopicsRequest)
	if !ok {
		return nil, nil, false
	}
	var names []string
	names = append(names, req.TopicNames...)
	byID := false
	for _, t := range req.Topics {
		if t.Topic == nil {
			byID = true // deleted by topic ID: we cannot tell which
			continue
		}
		names = append(names, *t.Topic)
	}
	if byID {
		e.mu.Lock()
		clear(e.known)
		e.mu.Unlock()
	}
	if len(names) == 0 {
		return nil, nil, false
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		pending := names
		for range 200 {
			var left []string
			for _, t := range pending {
				if e.c.TopicInfo(t) != nil {
					left = append(left, t)
					continue
				}
				e.mu.Lock()
				delete(e.known, t)
				e.mu.Unlock()
			}
			if pending = left; len(pending) == 0 {
				return
			}
			select {
			case <-e.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return nil, nil, false
}

// parsePartitionName splits the name of one of kfake's partition
// directories (the topic path-escaped, "-", the partition).
func parsePartitionName(name string) (topic string, p int32, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", 0, false
	}
	topic, err := url.PathUnescape(name[:i])
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return topic, int32(n), true
}

// validTopicName reports whether s is a legal Kafka topic name.
func validTopicName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 249 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Addr returns the host:port the broker actually listens on.
func (e *Embedded) Addr() string { return e.addr }

// Close stops the broker; with a DataDir it first writes its full state
// (topics, partition snapshots, groups) to disk. Safe to call more than once.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		e.bg.Wait()
		e.c.Close()
	})
	return nil
}

// kfakeLogger adapts slog to kfake's Logger.
type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	if level <= kfake.LogLevelInfo && strings.HasPrefix(msg, "client %s request unable to be handled") && len(args) == 2 {
		if err, ok := args[1].(error); ok && strings.Contains(err.Error(), "SASL state") {
			// kfake closes the connection of a client that sends a
			// request before it authenticated: say so plainly.
			k.l.Warn("embedded broker: refused a client that did not authenticate (SASL/SCRAM required: security.protocol=SASL_PLAINTEXT, or SASL_SSL with TLS)", "client", fmt.Sprint(args[0]))
			return
		}
	}
	var lvl slog.Level
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	case kfake.LogLevelInfo:
		lvl = slog.LevelInfo
	default:
		lvl = slog.LevelDebug
	}
	ctx := context.Background()
	if !k.l.Enabled(ctx, lvl) {
		return
	}
	k.l.Log(ctx, lvl, "embedded broker: "+fmt.Sprintf(msg, args...))
}
