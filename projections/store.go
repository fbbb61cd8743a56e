package projections

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// Cipher is what projections needs from a tenant's keys. keys.TenantCipher
// satisfies it. Decrypt errors are returned wrapped (%w), unchanged, so the
// caller can recognise a ciphertext under another tenant's key with
// errors.As.
type Cipher interface {
	Encrypt(plaintext, associatedData []byte) ([]byte, error)
	Decrypt(ciphertext, associatedData []byte) ([]byte, error)
	Hash(kind string, data []byte) []byte // keyed, deterministic, 32 bytes
}

// KeyedCipher is a Cipher that also names key ids: the id of the primary
// key, which Encrypt uses, and the id in a ciphertext's 5-byte Tink prefix
// (0x01, then the big-endian key id). keys.TenantCipher satisfies it
// through the vault's adapter. Rewrap and KeyUsage need it.
type KeyedCipher interface {
	Cipher
	PrimaryKeyID() uint32
	KeyIDOf(ciphertext []byte) (uint32, bool)
}

// Store is one tenant's Badger DB. Get one from Stores.Acquire; it is valid
// until the release function is called. Reads may run concurrently; Apply
// calls are serialised, and so are Rewrap calls.
//
// Once its DB is closed (by Stores.Remove, Close or the LRU, which all wait
// for the handles to be released first), every method of a Store fails
// with ErrStoreClosed instead of touching the closed DB.
type Store struct {
	tenant     events.TenantID
	db         *badger.DB
	now        func() time.Time
	maxPayload int // largest event data or quarantined input kept: half a value log file
	// apply serialises the writers: Apply holds it for all its
	// transactions, Rewrap while it commits (see rewrap.go).
	apply sync.Mutex
	// fits is how many records of a batch last fitted in one transaction
	// (0: unknown), guarded by apply: a store that once overflowed starts
	// later batches at the size that worked instead of failing again.
	fits int
	// states caches recently applied stream states, guarded by apply.
	states stateCache

	// rewrapping holds a token while a Rewrap runs (capacity 1).
	rewrapping chan struct{}
	// rewrapLimit overrides the number of values per rewrap batch (tests);
	// testHookRewrapCommit, if set, runs before a rewrap batch commits.
	rewrapLimit          int
	testHookRewrapCommit func()

	// vmu guards vidx, the in-memory vector index (vectors.go). Lock
	// order: apply, then vmu.
	vmu  sync.RWMutex
	vidx vindex

	// life guards db against use after close: methods hold it for reading
	// while they use db, closeStore takes it for writing and sets closed.
	life   sync.RWMutex
	closed bool
}

// enter makes sure st's DB stays open until leave; it fails with
// ErrStoreClosed once the DB is closed. Calls must not nest.
func (st *Store) enter() error {
	st.life.RLock()
	if st.closed {
		st.life.RUnlock()
		return fmt.Errorf("store of tenant %s: %w", st.tenant, ErrStoreClosed)
	}
	return nil
}

func (st *Store) leave() { st.life.RUnlock() }

// markClosed waits for the methods using st to return and makes later
// calls fail with ErrStoreClosed. It reports false if st was closed before.
func (st *Store) markClosed() bool {
	st.life.Lock()
	defer st.life.Unlock()
	if st.closed {
		return false
	}
	st.closed = true
	return true
}

// Tenant returns the tenant the store belongs to.
func (st *Store) Tenant() events.TenantID { return st.tenant }

// Keyspaces: the prefix of each key, and the name bound into the associated
// data of sealed values.
const (
	hashLen = 32

	prefixOffset     = "o/"
	prefixState      = "s/"
	prefixLog        = "l/"
	prefixIndex      = "i/"
	prefixQuarantine = "q/"
	prefixMeta       = "m/"

	ksState      = "state"
	ksLog        = "log"
	ksQuarantine = "quarantine"

	hashStream = "stream"
	hashEvent  = "event"

	aadVersion = "tenantvault/v1"
)

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func stateKey(sh []byte) []byte  { return concat([]byte(prefixState), sh) }
func indexKey(eh []byte) []byte  { return concat([]byte(prefixIndex), eh) }
func logPrefix(sh []byte) []byte { return concat([]byte(prefixLog), sh) }
func logKey(sh []byte, version uint64) []byte {
	return concat([]byte(prefixLog), sh, be64(version))
}
func quarantineKey(seq uint64) []byte { return concat([]byte(prefixQuarantine), be64(seq)) }

// offsetKey is o/<topic> 0x00 <BE32 partition>; Apply checks that topics
// hold no 0x00 and partitions fit 31 bits.
func offsetKey(topic string, partition int) []byte {
	k := make([]byte, 0, len(prefixOffset)+len(topic)+5)
	k = append(k, prefixOffset...)
	k = append(k, topic...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(partition))
}

func parseOffsetKey(k []byte) (topic string, partition int, ok bool) {
	k = bytes.TrimPrefix(k, []byte(prefixOffset))
	if len(k) < 6 || k[len(k)-5] != 0 {
		return "", 0, false
	}
	return string(k[:len(k)-5]), int(binary.BigEndian.Uint32(k[len(k)-4:])), true
}

// hash returns the keyed hash of an identifier, checking its length: keys
// are prefix-scanned, so every hash must have the same size.
func hash(c Cipher, kind, id string) ([]byte, error) {
	h := c.Hash(kind, []byte(id))
	if len(h) != hashLen {
		return nil, events.Errorf(events.EINTERNAL, "cipher hash of kind %s has %d bytes, want %d", kind, len(h), hashLen)
	}
	return h, nil
}

// aad binds a sealed value to its tenant, keyspace and key (the key of a
// log entry holds the version). The tenant id and keyspace hold no 0x00.
func (st *Store) aad(keyspace string, key []byte) []byte {
	return concat([]byte(aadVersion), []byte{0}, []byte(st.tenant), []byte{0}, []byte(keyspace), []byte{0}, key)
}

// seal encodes v as JSON and encrypts it for key. The plaintext buffer is
// cleared afterwards.
func (st *Store) seal(c Cipher, keyspace string, key []byte, v any) ([]byte, error) {
	var pt []byte
	if bm, ok := v.(encoding.BinaryMarshaler); ok {
		b, err := bm.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode %s value: %w", keyspace, err)
		}
		pt = b
	} else {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("encode %s value: %w", keyspace, err)
		}
		pt = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	ct, err := c.Encrypt(pt, st.aad(keyspace, key))
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("seal %s value: %w", keyspace, err)
	}
	return ct, nil
}

// unseal decrypts the value of key and decodes it into v. Decrypt errors
// are wrapped unchanged; no error carries plaintext.
func (st *Store) unseal(c Cipher, keyspace string, key, ct []byte, v any) error {
	pt, err := c.Decrypt(ct, st.aad(keyspace, key))
	if err != nil {
		return fmt.Errorf("open %s value %x: %w", keyspace, key, err)
	}
	defer clear(pt)
	if bu, ok := v.(encoding.BinaryUnmarshaler); ok {
		if err := bu.UnmarshalBinary(pt); err != nil {
			return events.Errorf(events.EINTERNAL, "decode %s value %x: malformed sealed record", keyspace, key)
		}
		return nil
	}
	if err := json.Unmarshal(pt, v); err != nil {
		return events.Errorf(events.EINTERNAL, "decode %s value %x: malformed sealed record", keyspace, key)
	}
	return nil
}

func checkCipher(c Cipher) error {
	if c == nil {
		return events.Errorf(events.EINTERNAL, "projections: nil Cipher")
	}
	return nil
}

// maxGCRewrites bounds the value-log files one collectGarbage call rewrites,
// so that a store with much garbage does not hold up Close or Remove for
// long; the next round goes on.
const maxGCRewrites = 16

// collectGarbage rewrites the store's value-log files that are at least
// ratio garbage, by Badger's discard statistics, and returns how many it
// rewrote. A closed store has nothing to do.
func (st *Store) collectGarbage(ratio float64) (int, error) {
	if err := st.enter(); err != nil {
		return 0, nil
	}
	defer st.leave()
	for n := 0; n < maxGCRewrites; n++ {
		switch err := st.db.RunValueLogGC(ratio); {
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return n, nil
		case err != nil:
			return n, fmt.Errorf("value-log GC of tenant %s: %w", st.tenant, err)
		}
	}
	return maxGCRewrites, nil
}
