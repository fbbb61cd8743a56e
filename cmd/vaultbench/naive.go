package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/projections"
)

// naiveOffsetPrefix starts the keys of the naive store's consumer offsets,
// "\x00offsets/<topic>/<partition>": no tenant's key starts with a NUL.
const naiveOffsetPrefix = "\x00offsets/"

// benchNaive measures the naive shared store: every tenant's records on
// one topic read by one consumer (see runShared), written into one Badger
// DB with the options the baseline uses (the vault's store options,
// synced writes) under tenant-prefixed keys, with no decoding and no
// crypto. Per record it writes the log entry "<tenant>/<stream>/<n>" (n
// zero-padded) and the stream's state row "<tenant>/<stream>", both with
// the raw event as the value; per consumed batch one write transaction,
// which also stores the batch's consumer offsets, committed (synced)
// before the batch is acked: offsets after commit. A batch larger than
// Badger's transaction limit is split, the offsets going into the last
// part. After the clock stops it checks that each tenant's log holds
// every event.
func benchNaive(ctx context.Context, c config, dir, topic string, tenants []events.TenantID, perTenant int) (_ *Phase, err error) {
	cfg := projections.Config{Dir: dir}
	db, err := badger.Open(cfg.BadgerOptionsFor(filepath.Join(dir, "store")))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	var commits int64
	p, err := runShared(ctx, c, dir, topic, tenants, perTenant, func(batch []*message.Message) error {
		n, err := naiveWrite(db, topic, batch)
		commits += n
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	p.Batches = commits
	for _, t := range tenants {
		n, err := naiveCount(db, t)
		if err != nil {
			return nil, err
		}
		if n != perTenant {
			return nil, fmt.Errorf("tenant %s: %d events stored, want %d", t, n, perTenant)
		}
	}
	return p, nil
}

// naiveWrite writes batch to db in one synced transaction (more if it
// exceeds the transaction limit), with the consumer offset of each of its
// partitions (the next offset to read) last, and returns the commits made.
func naiveWrite(db *badger.DB, topic string, batch []*message.Message) (commits int64, err error) {
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	set := func(k, v []byte) error {
		err := txn.Set(k, v)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			commits++
			txn = db.NewTransaction(true)
			err = txn.Set(k, v)
		}
		return err
	}
	next := make(map[string]int64) // partition -> offset after the batch's last record
	for _, m := range batch {
		tenant, stream, err := parseSharedKey(m)
		if err != nil {
			return commits, err
		}
		n, err := strconv.ParseUint(m.UUID, 10, 64)
		if err != nil {
			return commits, fmt.Errorf("record %q: not numbered: %w", m.UUID, err)
		}
		off, err := strconv.ParseInt(m.Metadata.Get(kafka.MetadataOffset), 10, 64)
		if err != nil {
			return commits, fmt.Errorf("record %s: offset: %w", m.UUID, err)
		}
		part := m.Metadata.Get(kafka.MetadataPartition)
		next[part] = max(next[part], off+1)
		state := []byte(tenant + "/" + stream)
		logKey := fmt.Appendf(nil, "%s/%s/%012d", tenant, stream, n)
		if err := set(logKey, m.Payload); err != nil {
			return commits, err
		}
		if err := set(state, m.Payload); err != nil {
			return commits, err
		}
	}
	for part, off := range next {
		if err := set([]byte(naiveOffsetPrefix+topic+"/"+part), binary.BigEndian.AppendUint64(nil, uint64(off))); err != nil {
			return commits, err
		}
	}
	if err := txn.Commit(); err != nil {
		return commits, fmt.Errorf("commit: %w", err)
	}
	return commits + 1, nil
}

// naiveCount counts tenant t's log entries in the naive store: the keys
// "<t>/<stream>/<n>" (state rows, "<t>/<stream>", have one slash).
func naiveCount(db *badger.DB, t events.TenantID) (int, error) {
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(string(t) + "/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rest := it.Item().Key()[len(opts.Prefix):]
			for _, b := range rest {
				if b == '/' {
					n++
					break
				}
			}
		}
		return nil
	})
	return n, err
}
