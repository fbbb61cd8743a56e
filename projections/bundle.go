package projections

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// The logical records of a store, as an export carries them (a
// tenantvault-bundle): keyspace name, key without its prefix, value as
// stored. They do not depend on Badger's file format, which has changed
// across Badger versions.
const (
	KeyspaceOffset     = "offset"
	KeyspaceState      = ksState
	KeyspaceLog        = ksLog
	KeyspaceIndex      = "index"
	KeyspaceQuarantine = ksQuarantine
)

var exportedPrefixes = []struct{ prefix, keyspace string }{
	{prefixIndex, KeyspaceIndex},
	{prefixLog, KeyspaceLog},
	{prefixOffset, KeyspaceOffset},
	{prefixQuarantine, KeyspaceQuarantine},
	{prefixState, KeyspaceState},
}

func prefixOf(keyspace string) (string, bool) {
	for _, p := range exportedPrefixes {
		if p.keyspace == keyspace {
			return p.prefix, true
		}
	}
	return "", false
}

// importingPrefix names a store being imported; it starts with a dot, so
// it is never a tenant id, and it ends in removingSuffix, so OpenStores
// removes what an interrupted Import left.
const importingPrefix = ".importing-"

// Export calls fn with every logical record of the store, from one
// snapshot, in key order: keyspace (KeyspaceLog, ...), the key without its
// keyspace prefix, and the value as stored — sealed values stay sealed,
// nothing is decrypted. The rewrap cursor (m/) is not exported: it is the
// progress of a job of this vault. key and value are valid only during
// the call.
func (st *Store) Export(ctx context.Context, fn func(keyspace string, key, value []byte) error) error {
	if err := st.enter(); err != nil {
		return err
	}
	defer st.leave()
	return st.db.View(func(txn *badger.Txn) error {
		for _, p := range exportedPrefixes {
			it := txn.NewIterator(iterOptions([]byte(p.prefix), 100))
			for it.Rewind(); it.Valid(); it.Next() {
				if err := ctx.Err(); err != nil {
					it.Close()
					return err
				}
				item := it.Item()
				k := item.Key()
				if err := item.Value(func(v []byte) error { return fn(p.keyspace, k[len(p.prefix):], v) }); err != nil {
					it.Close()
					return err
				}
			}
			it.Close()
		}
		return nil
	})
}

// CheckRecord checks one logical record of tenant t as Import would write
// it: a known keyspace, a well-formed offset, and a sealed value (log,
// state, quarantine) that opens with c under the associated data Apply
// sealed it with (tenant|keyspace|key). The plaintext is cleared at once.
func CheckRecord(t events.TenantID, c Cipher, keyspace string, key, value []byte) error {
	prefix, ok := prefixOf(keyspace)
	if !ok {
		return events.Errorf(events.EINVALID, "unknown keyspace %.40q", keyspace)
	}
	full := concat([]byte(prefix), key)
	switch keyspace {
	case KeyspaceOffset:
		if _, _, ok := parseOffsetKey(full); !ok || len(value) != 8 {
			return events.Errorf(events.EINVALID, "malformed offset record %x", key)
		}
		return nil
	case KeyspaceIndex:
		if len(key) != hashLen || len(value) != hashLen+8 {
			return events.Errorf(events.EINVALID, "malformed index record")
		}
		return nil
	}
	st := Store{tenant: t}
	pt, err := c.Decrypt(value, st.aad(keyspace, full))
	if err != nil {
		return fmt.Errorf("open %s value %x: %w", keyspace, full, err)
	}
	clear(pt)
	return nil
}

// Import creates tenant t's store from logical records (Export's): fill
// is called with put, which writes one record (checked by CheckRecord
// with c first) into a new Badger DB in a staging directory of Dir; once
// fill returns nil, the DB is synced and closed and its directory renamed
// to t's, atomically. On any error the staging directory is removed and
// nothing is left. It fails with ErrExists when t has a store.
func (s *Stores) Import(ctx context.Context, t events.TenantID, c Cipher, fill func(put func(keyspace string, key, value []byte) error) error) (err error) {
	dir, err := s.dir(t)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e, err := s.waitLocked(t)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if e != nil {
		s.mu.Unlock()
		return fmt.Errorf("import store of tenant %s: %w", t, ErrExists)
	}
	s.busy[t] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.busy, t)
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("import store of tenant %s: %w", t, ErrExists)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	staging := filepath.Join(s.cfg.Dir, importingPrefix+string(t)+"-"+hex.EncodeToString(rnd[:])+removingSuffix)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return fmt.Errorf("import store of tenant %s: %w", t, err)
	}
	defer func() {
		if err != nil {
			if rmErr := os.RemoveAll(staging); rmErr != nil {
				err = errors.Join(err, rmErr)
			}
		}
	}()
	opts := s.cfg.badgerOptions(staging, s.log.With("tenant", string(t)))
	opts.SyncWrites = false
	db, err := badger.Open(opts)
	if err != nil {
		return fmt.Errorf("import store of tenant %s: %w", t, err)
	}
	wb := db.NewWriteBatch()
	put := func(keyspace string, key, value []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := CheckRecord(t, c, keyspace, key, value); err != nil {
			return err
		}
		prefix, _ := prefixOf(keyspace)
		return wb.Set(concat([]byte(prefix), key), append([]byte(nil), value...))
	}
	ferr := fill(put)
	if ferr == nil {
		ferr = wb.Flush()
	} else {
		wb.Cancel()
	}
	if ferr == nil {
		ferr = db.Sync()
	}
	if cerr := db.Close(); ferr == nil {
		ferr = cerr
	}
	if ferr != nil {
		return fmt.Errorf("import store of tenant %s: %w", t, ferr)
	}
	if err := syncDir(staging); err != nil {
		return fmt.Errorf("import store of tenant %s: %w", t, err)
	}
	if err := os.Rename(staging, dir); err != nil {
		return fmt.Errorf("import store of tenant %s: %w", t, err)
	}
	return syncDir(s.cfg.Dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// OffsetsOf decodes the offset records among Export's: topic → partition →
// last applied offset.
func OffsetsOf(key, value []byte) (topic string, partition int, offset int64, ok bool) {
	topic, partition, ok = parseOffsetKey(concat([]byte(prefixOffset), key))
	if !ok || len(value) != 8 {
		return "", 0, 0, false
	}
	return topic, partition, int64(binary.BigEndian.Uint64(value)), true
}
