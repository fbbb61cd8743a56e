package projections

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// DefaultPageSize is the page size of History, Streams and Quarantine when
// the limit given is 0 or less.
const DefaultPageSize = 100

// State is the current state of a stream. A deleted stream keeps its row as
// a tombstone: Deleted is set, Data is nil and Version counts on.
type State struct {
	Stream    string          `json:"stream"`
	Version   uint64          `json:"version"`
	Data      json.RawMessage `json:"data,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
	Deleted   bool            `json:"deleted,omitempty"`
}

// StoredEvent is an event of a stream's log with where it came from.
type StoredEvent struct {
	Version   uint64       `json:"version"`
	Event     events.Event `json:"event"`
	Topic     string       `json:"topic"`
	Partition int          `json:"partition"`
	Offset    int64        `json:"offset"`
	StoredAt  time.Time    `json:"stored_at"`
}

// StreamSummary is one entry of the stream listing.
type StreamSummary struct {
	Stream    string    `json:"stream"`
	Version   uint64    `json:"version"`
	Deleted   bool      `json:"deleted,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Quarantined is one entry of the quarantine: input that was not applied.
type Quarantined struct {
	Seq       uint64    `json:"seq"`
	Topic     string    `json:"topic"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Code      string    `json:"code"`
	Reason    string    `json:"reason"`
	Raw       []byte    `json:"raw,omitempty"`
	RawSize   int       `json:"raw_size"` // size of the input as received: more than len(Raw) if Raw was cut to fit the store
	At        time.Time `json:"at"`
}

// State returns the current state of stream. It fails with ErrNotFound
// (errors.Is) if the stream has no event; a deleted stream is returned as
// its tombstone (State.Deleted), not as an error.
func (st *Store) State(c Cipher, stream string) (State, error) {
	if err := checkCipher(c); err != nil {
		return State{}, err
	}
	sh, err := hash(c, hashStream, stream)
	if err != nil {
		return State{}, err
	}
	var rec stateRecord
	k := stateKey(sh)
	if err := st.enter(); err != nil {
		return State{}, err
	}
	defer st.leave()
	err = st.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("stream: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read state: %w", err)
		}
		return item.Value(func(v []byte) error { return st.unseal(c, ksState, k, v, &rec) })
	})
	if err != nil {
		return State{}, err
	}
	if rec.Stream != stream {
		return State{}, events.Errorf(events.EINTERNAL, "state %x belongs to another stream", sh)
	}
	return State(rec), nil
}

// History returns up to limit events of stream with a version above after,
// in ascending version order (DefaultPageSize if limit <= 0). It fails with
// ErrNotFound if the stream has no event.
func (st *Store) History(c Cipher, stream string, after uint64, limit int) ([]StoredEvent, error) {
	if err := checkCipher(c); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultPageSize
	}
	sh, err := hash(c, hashStream, stream)
	if err != nil {
		return nil, err
	}
	var out []StoredEvent
	if err := st.enter(); err != nil {
		return nil, err
	}
	defer st.leave()
	err = st.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(stateKey(sh)); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("stream: %w", ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("read state: %w", err)
		}
		if after == math.MaxUint64 {
			return nil
		}
		prefix := logPrefix(sh)
		it := txn.NewIterator(iterOptions(prefix, limit))
		defer it.Close()
		for it.Seek(logKey(sh, after+1)); it.Valid() && len(out) < limit; it.Next() {
			item := it.Item()
			k := item.Key()
			var rec logRecord
			if err := item.Value(func(v []byte) error { return st.unseal(c, ksLog, k, v, &rec) }); err != nil {
				return err
			}
			if len(k) != len(prefix)+8 || rec.Version != binary.BigEndian.Uint64(k[len(prefix):]) || rec.Event.Subject != stream {
				return events.Errorf(events.EINTERNAL, "log entry %x does not match its key", k)
			}
			out = append(out, StoredEvent(rec))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Streams lists up to limit streams (DefaultPageSize if limit <= 0), in the
// order of their keyed hashes, after the position cursor names ("" for the
// start). The returned cursor is "" when the listing is complete.
func (st *Store) Streams(c Cipher, cursor string, limit int) ([]StreamSummary, string, error) {
	if err := checkCipher(c); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultPageSize
	}
	start := []byte(prefixState)
	if cursor != "" {
		h, err := hex.DecodeString(cursor)
		if err != nil || len(h) != hashLen {
			return nil, "", events.Reasonf(events.EINVALID, events.ReasonCursorInvalid, "invalid stream cursor")
		}
		start = stateKey(h)
	}
	var out []StreamSummary
	var next string
	if err := st.enter(); err != nil {
		return nil, "", err
	}
	defer st.leave()
	err := st.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions([]byte(prefixState), limit+1))
		defer it.Close()
		var last []byte
		for it.Seek(start); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if cursor != "" && string(k) == string(start) {
				continue
			}
			if len(out) == limit {
				next = hex.EncodeToString(last)
				return nil
			}
			var rec stateRecord
			if err := item.Value(func(v []byte) error { return st.unseal(c, ksState, k, v, &rec) }); err != nil {
				return err
			}
			out = append(out, StreamSummary{Stream: rec.Stream, Version: rec.Version, Deleted: rec.Deleted, UpdatedAt: rec.UpdatedAt})
			last = k[len(prefixState):]
			last = append([]byte(nil), last...)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Quarantine lists up to limit quarantined entries (DefaultPageSize if
// limit <= 0) in the order they were stored, after the position cursor
// names ("" for the start). The returned cursor is "" when the listing is
// complete.
func (st *Store) Quarantine(c Cipher, cursor string, limit int) ([]Quarantined, string, error) {
	if err := checkCipher(c); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultPageSize
	}
	var after uint64
	if cursor != "" {
		v, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil || v == math.MaxUint64 {
			return nil, "", events.Reasonf(events.EINVALID, events.ReasonCursorInvalid, "invalid quarantine cursor")
		}
		after = v
	}
	var out []Quarantined
	var next string
	if err := st.enter(); err != nil {
		return nil, "", err
	}
	defer st.leave()
	err := st.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions([]byte(prefixQuarantine), limit+1))
		defer it.Close()
		for it.Seek(quarantineKey(after + 1)); it.Valid(); it.Next() {
			if len(out) == limit {
				next = strconv.FormatUint(out[len(out)-1].Seq, 10)
				return nil
			}
			item := it.Item()
			k := item.Key()
			var rec Quarantined // sealed as its JSON
			if err := item.Value(func(v []byte) error { return st.unseal(c, ksQuarantine, k, v, &rec) }); err != nil {
				return err
			}
			if len(k) != len(prefixQuarantine)+8 || rec.Seq != binary.BigEndian.Uint64(k[len(prefixQuarantine):]) {
				return events.Errorf(events.EINTERNAL, "quarantine entry %x does not match its key", k)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Offsets returns the last applied offset of every (topic, partition) the
// store has seen: topic → partition → offset. The Kafka offset to commit is
// one more.
func (st *Store) Offsets() (map[string]map[int]int64, error) {
	if err := st.enter(); err != nil {
		return nil, err
	}
	defer st.leave()
	out := make(map[string]map[int]int64)
	err := st.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions([]byte(prefixOffset), 100))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			topic, partition, ok := parseOffsetKey(item.Key())
			if !ok {
				return events.Errorf(events.EINTERNAL, "malformed offset key %x", item.Key())
			}
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return events.Errorf(events.EINTERNAL, "malformed offset of %s/%d", topic, partition)
				}
				if out[topic] == nil {
					out[topic] = make(map[int]int64)
				}
				out[topic][partition] = int64(binary.BigEndian.Uint64(v))
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read offsets of tenant %s: %w", st.tenant, err)
	}
	return out, nil
}

func iterOptions(prefix []byte, prefetch int) badger.IteratorOptions {
	o := badger.DefaultIteratorOptions
	o.Prefix = prefix
	o.PrefetchSize = min(max(prefetch, 1), 100)
	return o
}

// Stats counts what a store holds, e.g. for a shred receipt.
type Stats struct {
	Events      uint64 // entries of the event log
	Streams     uint64 // stream state rows, tombstones of deleted streams included
	Quarantined uint64 // quarantined entries
}

// Stats counts the store's log entries, streams and quarantined entries.
// It walks the keys without reading or opening a value (no cipher needed),
// in time proportional to the size of the store.
func (st *Store) Stats() (Stats, error) {
	if err := st.enter(); err != nil {
		return Stats{}, err
	}
	defer st.leave()
	s, err := st.stats()
	if err != nil {
		return Stats{}, fmt.Errorf("count store of tenant %s: %w", st.tenant, err)
	}
	return s, nil
}

func (st *Store) stats() (Stats, error) {
	var s Stats
	err := st.db.View(func(txn *badger.Txn) error {
		for _, c := range []struct {
			prefix string
			n      *uint64
		}{{prefixLog, &s.Events}, {prefixState, &s.Streams}, {prefixQuarantine, &s.Quarantined}} {
			opts := badger.DefaultIteratorOptions
			opts.Prefix, opts.PrefetchValues = []byte(c.prefix), false
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				*c.n++
			}
			it.Close()
		}
		return nil
	})
	return s, err
}

// ForgetOffsets deletes the stored offsets of every partition of topic, in
// one synced transaction: the next records of topic are applied from its
// start again (an event id already applied is still a duplicate). For a
// topic created again, whose offsets start over.
func (st *Store) ForgetOffsets(topic string) error {
	if err := st.enter(); err != nil {
		return err
	}
	defer st.leave()
	st.apply.Lock()
	defer st.apply.Unlock()
	prefix := append([]byte(prefixOffset), topic...)
	prefix = append(prefix, 0)
	err := st.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions(prefix, 100))
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget offsets of %s in store of tenant %s: %w", topic, st.tenant, err)
	}
	return nil
}
