package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tenantvault/tenantvault/events"
)

// DefaultMaxOpen is the default bound on idle open stores.
const DefaultMaxOpen = 64

// Config configures Stores. The zero value plus a Dir is valid and durable.
type Config struct {
	// Dir holds one directory per tenant store: <data-dir>/tenants.
	// Required; created with mode 0700 if missing.
	Dir string

	// MaxOpen bounds the number of open Badger DBs: when more are open,
	// the least recently used idle ones (no handle held) are closed. Stores
	// in use are never closed, so the bound can be exceeded while more than
	// MaxOpen stores are held at once. Default DefaultMaxOpen.
	MaxOpen int

	// NoSync turns off the fsync of each commit. The default (false) syncs:
	// the Kafka offsets are committed after our commit, so a commit that is
	// lost in a crash after the broker saw the offset would lose events.
	// Set it only for tests and benchmarks.
	NoSync bool

	// BadgerOptions, if set, is applied before each DB is opened to the
	// small-footprint options this package starts from: 2 MiB memtables (2),
	// 16 MiB value log files, values over 128 bytes in the value log, no
	// compression (values are ciphertext), no block or index cache, 2
	// compactors, SyncWrites unless NoSync, Badger's logging routed to
	// Logger. Keep ValueThreshold under 15% of MemTableSize (Badger's
	// largest transaction) or Open fails. The hook cannot move a store:
	// Dir and ValueDir are reset afterwards.
	BadgerOptions func(badger.Options) badger.Options

	// ValueLogGCInterval is how often the value logs of the open stores are
	// garbage-collected (Stores.CollectGarbage): sealed values live in the
	// value log, and a stream's state is rewritten by every batch that
	// touches it. Default DefaultValueLogGCInterval; negative: never.
	ValueLogGCInterval time.Duration

	// IdleClose closes a store no handle has held for this long, so that a
	// tenant without traffic holds no open DB (its memtables, file handles
	// and Badger goroutines): the next Acquire opens it again. Default
	// DefaultIdleClose; negative: never (only MaxOpen bounds them).
	IdleClose time.Duration

	// Logger receives Badger's warnings and errors (its info messages at
	// debug level) and the errors of closing idle stores. Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultValueLogGCInterval is the default of Config.ValueLogGCInterval.
// A round over stores without garbage costs next to nothing (Badger finds
// no file over the ratio); one with garbage rewrites at most 16 files a
// store (maxGCRewrites).
const DefaultValueLogGCInterval = time.Minute

// DefaultIdleClose is the default of Config.IdleClose.
const DefaultIdleClose = time.Minute

func (c *Config) setDefaults() {
	if c.MaxOpen == 0 {
		c.MaxOpen = DefaultMaxOpen
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ValueLogGCInterval == 0 {
		c.ValueLogGCInterval = DefaultValueLogGCInterval
	}
	if c.IdleClose == 0 {
		c.IdleClose = DefaultIdleClose
	}
}

// Validate reports every problem with c, joined.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, events.Errorf(events.EINVALID, "projections: Dir is required"))
	}
	if c.MaxOpen < 0 {
		errs = append(errs, events.Errorf(events.EINVALID, "projections: MaxOpen is %d, want >= 0 (0 = default %d)", c.MaxOpen, DefaultMaxOpen))
	}
	return errors.Join(errs...)
}

// Small-footprint Badger settings. Badger's defaults are sized for one big
// database per process (a 64 MiB memtable arena times 5, a 256 MiB block
// cache, 1 GiB value log files mapped twice over); a vault node holds many
// small ones.
const (
	// The memtable arena (≈ 1.3× this, in the Go heap) is most of what an
	// open store costs. 2 MiB measured the same ingest throughput as 4 MiB
	// in vaultbench (100 tenants) with 300 MiB less peak RSS; a transaction
	// is then at most 15% of it (300 KiB, ~400 events), and Apply learns
	// that size.
	memTableSize = 2 << 20
	// Values of this size or more go to the value log and the LSM tree
	// holds a pointer (Badger's WiscKey design): every sealed value but the
	// smallest. Compactions then move keys and pointers, not ciphertext. With
	// values in the tree (8 KiB, before), a store's steady-state ingest spent
	// a quarter of its CPU rewriting them in compactions: 204,800 events
	// into one synced store (go test -bench 'Apply/sync=true' -benchtime
	// 800x ./projections) went from 25.7–28.8k to 41.0–42.1k events/s, and
	// from 11.0–12.3 to 6.2 CPU seconds. The price is garbage in the value
	// log, which Stores collects (ValueLogGCInterval). Must stay under the
	// max batch size.
	valueThreshold   = 128
	valueLogFileSize = 16 << 20 // mapped (and sparse on disk) at 2× this
	baseTableSize    = 1 << 20
	baseLevelSize    = 4 << 20
)

// badgerOptions returns the options a tenant store at dir is opened with.
func (c *Config) badgerOptions(dir string, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithSyncWrites(!c.NoSync).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithBaseTableSize(baseTableSize).
		WithBaseLevelSize(baseLevelSize).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2).
		WithValueLogFileSize(valueLogFileSize).
		WithValueThreshold(valueThreshold).
		// Values are ciphertext: compression gains nothing, and without it
		// (and without Badger encryption) no block cache is required.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		// 0 keeps table indexes and bloom filters on the heap, in proportion
		// to the data of each store; a cache would cost a fixed ristretto
		// instance per store.
		WithIndexCacheSize(0).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{log})
	if c.BadgerOptions != nil {
		o = c.BadgerOptions(o)
	}
	o.Dir, o.ValueDir = dir, dir
	return o
}

// badgerLogger routes Badger's logging to slog: errors and warnings as such,
// its chatty info and debug output at debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, args ...any) { b.log(slog.LevelError, f, args) }
func (b badgerLogger) Warningf(f string, args ...any) {
	b.log(slog.LevelWarn, f, args)
}
func (b badgerLogger) Infof(f string, args ...any)  { b.log(slog.LevelDebug, f, args) }
func (b badgerLogger) Debugf(f string, args ...any) { b.log(slog.LevelDebug, f, args) }

func (b badgerLogger) log(level slog.Level, f string, args []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(f, args...)), "component", "badger")
}

// BadgerOptionsFor returns the options a tenant store in directory dir is
// opened with under c: for baselines that must measure Badger exactly as
// the vault runs it.
func (c Config) BadgerOptionsFor(dir string) badger.Options {
	c.setDefaults()
	return c.badgerOptions(dir, c.Logger)
}
