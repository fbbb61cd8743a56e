package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
)

// Format is the bundle format: the first line of every bundle.
const Format = "tenantvault-bundle/v1"

// SignatureHeader is the first line of the text of a bundle's signature.
// It holds a space, which no checkpoint origin does, and differs from
// audit.ReceiptHeader: the audit key signs all three.
const SignatureHeader = Format + " signature"

// Frame kinds.
const (
	KindHeader     byte = 'H'
	KindRecord     byte = 'R'
	KindOffsets    byte = 'O'
	KindCheckpoint byte = 'C'
	KindAudit      byte = 'A'
	KindManifest   byte = 'M'
	KindKeyset     byte = 'K'
	KindSignature  byte = 'S'
)

// Limits of a frame's payload.
const (
	MaxRecordBytes = 1 << 30 // a store value is at most half a Badger value-log file
	MaxMetaBytes   = 1 << 20 // every other frame
	MaxKeyBytes    = 1 << 16
)

// Header is the H frame.
type Header struct {
	Format string          `json:"format"`
	Tenant events.TenantID `json:"tenant"`
	// SourceKey is the source vault's audit verifier key (note verifier
	// key): it signs the checkpoint and the bundle.
	SourceKey string `json:"source_key"`
	// ImportKey is the fingerprint of the destination's import key, to
	// which K is encrypted.
	ImportKey string    `json:"import_key"`
	Exported  time.Time `json:"exported"`
	// Registry facts of the tenant (no secret: the token is a hash).
	Created     time.Time `json:"created"`
	TokenSHA256 string    `json:"token_sha256"`
	TopicID     string    `json:"topic_id,omitempty"`
	KafkaUser   string    `json:"kafka_user,omitempty"`
}

// Offsets is the O frame: the tenant topic and the last offset applied of
// each of its partitions that had records.
type Offsets struct {
	Topic      string        `json:"topic"`
	Partitions map[int]int64 `json:"partitions"`
}

// AuditEntry is an A frame.
type AuditEntry struct {
	Index uint64   `json:"index"`
	Line  string   `json:"line"`  // canonical record bytes
	Proof []string `json:"proof"` // hex hashes
}

// Manifest is the M frame.
type Manifest struct {
	Format       string          `json:"format"`
	Tenant       events.TenantID `json:"tenant"`
	Records      uint64          `json:"records"`
	RecordBytes  uint64          `json:"record_bytes"`
	RecordsRoot  string          `json:"records_root"` // hex RFC 6962 root of the R payloads
	Keyspaces    map[string]int  `json:"keyspaces"`    // records per keyspace
	Partitions   int             `json:"partitions"`
	AuditRecords uint64          `json:"audit_records"`
	Checkpoint   uint64          `json:"checkpoint_size"`
	ContentHash  string          `json:"content_sha256"` // of every byte before M
	ImportKey    string          `json:"import_key"`
}

// Error is a bundle refused: Frame is the index of the frame at fault (-1
// for the whole), Reason what is wrong. It has code EINVALID.
type Error struct {
	Frame  int
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Frame < 0 {
		return "bundle rejected: " + e.Reason
	}
	return fmt.Sprintf("bundle rejected at frame %d: %s", e.Frame, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

var errCode = &events.Error{Code: events.EINVALID, Message: "bundle rejected"}

func reject(frame int, err error, format string, args ...any) error {
	if err == nil {
		err = errCode
	} else {
		err = errors.Join(errCode, err)
	}
	return &Error{Frame: frame, Reason: fmt.Sprintf(format, args...), Err: err}
}

// EncodeRecord is the payload of an R frame.
func EncodeRecord(keyspace string, key, value []byte) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen32+len(keyspace)+len(key)+len(value))
	b = binary.AppendUvarint(b, uint64(len(keyspace)))
	b = append(b, keyspace...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

// DecodeRecord splits an R payload; key and value alias p.
func DecodeRecord(p []byte) (keyspace string, key, value []byte, err error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n == 0 || n > 64 || uint64(len(p)-k) < n {
		return "", nil, nil, errors.New("malformed keyspace")
	}
	keyspace, p = string(p[k:k+int(n)]), p[k+int(n):]
	n, k = binary.Uvarint(p)
	if k <= 0 || n > MaxKeyBytes || uint64(len(p)-k) < n {
		return "", nil, nil, errors.New("malformed key")
	}
	return keyspace, p[k : k+int(n)], p[k+int(n):], nil
}

// recordsTree is the RFC 6962 tree of the R payloads, built as they pass.
type recordsTree struct {
	r *compact.Range
}

func newRecordsTree() *recordsTree {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	return &recordsTree{r: f.NewEmptyRange(0)}
}

func (t *recordsTree) add(payload []byte) {
	_ = t.r.Append(rfc6962.DefaultHasher.HashLeaf(payload), nil) // cannot fail on an empty-begin range
}

func (t *recordsTree) root() string { return hex.EncodeToString(t.rootBytes()) }

func (t *recordsTree) rootBytes() []byte {
	if t.r.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	h, _ := t.r.GetRootHash(nil)
	return h
}

// signatureText is the text the S frame signs.
func signatureText(t events.TenantID, manifestSum, keysetSum [32]byte) string {
	return SignatureHeader + "\n" + string(t) + "\nmanifest " + hex.EncodeToString(manifestSum[:]) + "\nkeyset " + hex.EncodeToString(keysetSum[:]) + "\n"
}

// KeysetContext is the context the K frame is encrypted with (besides the
// tenant id, which package keys binds itself): the manifest's hash.
func KeysetContext(manifestSum [32]byte) []byte {
	return append([]byte(Format+" keyset\x00"), manifestSum[:]...)
}

// Writer writes a bundle, frame by frame, in the order of the format.
type Writer struct {
	w       *bufio.Writer
	content hash.Hash // of every byte before M
	tree    *recordsTree
	m       Manifest
	stage   byte
	hashed  bool // the content hash is taken: M and after are not in it
	err     error
}

// NewWriter writes the first line and the header to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Format = Format
	bw := &Writer{w: bufio.NewWriterSize(w, 1<<20), content: sha256.New(), tree: newRecordsTree(),
		m: Manifest{Format: Format, Tenant: h.Tenant, Keyspaces: map[string]int{}, ImportKey: h.ImportKey}}
	bw.raw([]byte(Format + "\n"))
	if err := bw.jsonFrame(KindHeader, h); err != nil {
		return nil, err
	}
	bw.stage = KindHeader
	return bw, bw.err
}

func (w *Writer) raw(b []byte) {
	if w.err != nil {
		return
	}
	if !w.hashed {
		w.content.Write(b)
	}
	_, w.err = w.w.Write(b)
}

// frame writes one frame; content hashing stops at M.
func (w *Writer) frame(kind byte, payload []byte) {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = kind
	n := binary.PutUvarint(hdr[1:], uint64(len(payload)))
	w.raw(hdr[:1+n])
	w.raw(payload)
}

func (w *Writer) jsonFrame(kind byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	w.frame(kind, b)
	return w.err
}

func (w *Writer) order(kind byte, allowed ...byte) error {
	if w.err != nil {
		return w.err
	}
	for _, a := range allowed {
		if w.stage == a {
			w.stage = kind
			return nil
		}
	}
	return fmt.Errorf("bundle: frame %c after %c", kind, w.stage)
}

// Record writes one store record.
func (w *Writer) Record(keyspace string, key, value []byte) error {
	if err := w.order(KindRecord, KindHeader, KindRecord); err != nil {
		return err
	}
	p := EncodeRecord(keyspace, key, value)
	w.tree.add(p)
	w.m.Records++
	w.m.RecordBytes += uint64(len(p))
	w.m.Keyspaces[keyspace]++
	w.frame(KindRecord, p)
	return w.err
}

// Offsets writes the consumer offsets.
func (w *Writer) Offsets(o Offsets) error {
	if err := w.order(KindOffsets, KindHeader, KindRecord); err != nil {
		return err
	}
	if o.Partitions == nil {
		o.Partitions = map[int]int64{}
	}
	w.m.Partitions = len(o.Partitions)
	return w.jsonFrame(KindOffsets, o)
}

// Checkpoint writes the source's signed checkpoint of size size.
func (w *Writer) Checkpoint(signed []byte, size uint64) error {
	if err := w.order(KindCheckpoint, KindOffsets); err != nil {
		return err
	}
	w.m.Checkpoint = size
	w.frame(KindCheckpoint, signed)
	return w.err
}

// Audit writes one audit record with its inclusion proof.
func (w *Writer) Audit(e AuditEntry) error {
	if err := w.order(KindAudit, KindCheckpoint, KindAudit); err != nil {
		return err
	}
	w.m.AuditRecords++
	return w.jsonFrame(KindAudit, e)
}

// Manifest writes the manifest and returns its hash, the context of the
// keyset (KeysetContext).
func (w *Writer) Manifest() ([32]byte, error) {
	if err := w.order(KindManifest, KindCheckpoint, KindAudit); err != nil {
		return [32]byte{}, err
	}
	w.m.RecordsRoot = w.tree.root()
	w.m.ContentHash = hex.EncodeToString(w.content.Sum(nil))
	w.hashed = true
	b, err := json.Marshal(w.m)
	if err != nil {
		return [32]byte{}, fmt.Errorf("bundle: %w", err)
	}
	w.frame(KindManifest, b)
	return sha256.Sum256(b), w.err
}

// Finish writes the encrypted keyset and the signature that sign returns
// for text (a signed note by the source's audit key), and flushes.
func (w *Writer) Finish(keyset []byte, manifestSum [32]byte, sign func(text string) ([]byte, error)) error {
	if err := w.order(KindKeyset, KindManifest); err != nil {
		return err
	}
	w.frame(KindKeyset, keyset)
	sig, err := sign(signatureText(w.m.Tenant, manifestSum, sha256.Sum256(keyset)))
	if err != nil {
		return fmt.Errorf("bundle: sign: %w", err)
	}
	w.stage = KindSignature
	w.frame(KindSignature, sig)
	if w.err != nil {
		return w.err
	}
	return w.w.Flush()
}

// Counts returns the manifest so far (records, bytes).
func (w *Writer) Counts() Manifest { return w.m }

// Bundle is what Verify read from a bundle that verified.
type Bundle struct {
	Header      Header
	Offsets     Offsets
	Manifest    Manifest
	ManifestSum [32]byte
	Checkpoint  audit.Checkpoint
	Keyset      []byte // opaque: for package keys
	Bytes       int64  // the bundle's size
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// SourceKey is the source vault's audit verifier key
	// (GET /v1/audit/public-key there). Required.
	SourceKey string
	// Tenant, when set, is the tenant the bundle must carry.
	Tenant events.TenantID
	// ImportKey, when set, is the fingerprint of the import key the
	// bundle must be encrypted to.
	ImportKey string
	// OnHeader, when set, is called with the header once it verified; an
	// error it returns stops Verify (e.g. a tenant that may not be
	// imported), before the rest is read.
	OnHeader func(h Header) error
	// OnRecord, when set, is called with each record (aliasing a buffer
	// reused after it returns), in order; an error it returns stops
	// Verify.
	OnRecord func(keyspace string, key, value []byte) error
	// OnAudit, when set, is called with each audit entry once its proof
	// verified.
	OnAudit func(r audit.Record)
}

// Verify reads a whole bundle from r and checks it (see the package
// documentation). A bundle that does not verify is an *Error.
func Verify(r io.Reader, opts VerifyOptions) (*Bundle, error) {
	if opts.SourceKey == "" {
		return nil, events.Errorf(events.EINVALID, "the source vault's audit public key is required to verify a bundle")
	}
	verifier, err := note.NewVerifier(opts.SourceKey)
	if err != nil {
		return nil, events.Errorf(events.EINVALID, "the source key is not a note verifier key")
	}
	cr := &countingReader{r: bufio.NewReaderSize(r, 1<<20)}
	content := sha256.New()
	first := make([]byte, len(Format)+1)
	if _, err := io.ReadFull(io.TeeReader(cr, content), first); err != nil || string(first) != Format+"\n" {
		return nil, reject(-1, nil, "not a %s file", Format)
	}
	b := &Bundle{}
	tree := newRecordsTree()
	got := Manifest{Format: Format, Keyspaces: map[string]int{}}
	var buf []byte
	stage := byte(0)
	var checkpoint []byte
	for i := 0; ; i++ {
		kind, p, err := readFrame(cr, &buf, stage)
		if err == io.EOF {
			if stage != KindSignature {
				return nil, reject(i, nil, "the bundle ends after frame %s: it is truncated", stageName(stage))
			}
			b.Bytes = cr.n
			return b, nil
		}
		if err != nil {
			return nil, reject(i, err, "unreadable frame (truncated or corrupt)")
		}
		if stage == KindSignature {
			return nil, reject(i, nil, "data after the signature")
		}
		if !follows(stage, kind) {
			return nil, reject(i, nil, "frame %c cannot follow %s", kind, stageName(stage))
		}
		if kind != KindManifest && kind != KindKeyset && kind != KindSignature {
			writeFrameTo(content, kind, p)
		}
		stage = kind
		switch kind {
		case KindHeader:
			if err := strictJSON(p, &b.Header); err != nil || b.Header.Format != Format {
				return nil, reject(i, err, "malformed header")
			}
			if _, err := events.ParseTenantID(string(b.Header.Tenant)); err != nil {
				return nil, reject(i, err, "the header's tenant id is invalid")
			}
			if opts.Tenant != "" && b.Header.Tenant != opts.Tenant {
				return nil, reject(i, nil, "the bundle carries tenant %s, not %s", b.Header.Tenant, opts.Tenant)
			}
			if b.Header.SourceKey != opts.SourceKey {
				return nil, reject(i, nil, "the bundle was signed by another vault than the source key given (%s)", verifier.Name())
			}
			if opts.ImportKey != "" && b.Header.ImportKey != opts.ImportKey {
				return nil, reject(i, nil, "the bundle's keyset is encrypted to another vault's import key (fingerprint %.16s…), not this vault's", b.Header.ImportKey)
			}
			got.Tenant, got.ImportKey = b.Header.Tenant, b.Header.ImportKey
			if opts.OnHeader != nil {
				if err := opts.OnHeader(b.Header); err != nil {
					return nil, err
				}
			}
		case KindRecord:
			ks, key, val, err := DecodeRecord(p)
			if err != nil {
				return nil, reject(i, err, "malformed record")
			}
			tree.add(p)
			got.Records++
			got.RecordBytes += uint64(len(p))
			got.Keyspaces[ks]++
			if opts.OnRecord != nil {
				if err := opts.OnRecord(ks, key, val); err != nil {
					return nil, err
				}
			}
		case KindOffsets:
			if err := strictJSON(p, &b.Offsets); err != nil || b.Offsets.Topic != events.TopicFor(b.Header.Tenant) {
				return nil, reject(i, err, "malformed offsets, or offsets of another topic")
			}
			for part, off := range b.Offsets.Partitions {
				if part < 0 || off < 0 {
					return nil, reject(i, nil, "negative partition or offset")
				}
			}
			got.Partitions = len(b.Offsets.Partitions)
		case KindCheckpoint:
			c, err := audit.OpenCheckpoint(p, opts.SourceKey)
			if err != nil {
				return nil, reject(i, err, "the audit checkpoint does not verify with the source key")
			}
			b.Checkpoint, checkpoint = c, append([]byte(nil), p...)
			got.Checkpoint = c.Size
		case KindAudit:
			var e AuditEntry
			if err := strictJSON(p, &e); err != nil {
				return nil, reject(i, err, "malformed audit entry")
			}
			hashes := make([][]byte, len(e.Proof))
			for j, h := range e.Proof {
				if hashes[j], err = hex.DecodeString(h); err != nil {
					return nil, reject(i, err, "malformed audit proof")
				}
			}
			if err := audit.VerifyInclusion([]byte(e.Line), e.Index, hashes, checkpoint, opts.SourceKey); err != nil {
				return nil, reject(i, err, "audit record %d is not in the source's signed log", e.Index)
			}
			rec, err := audit.ParseVerifiable([]byte(e.Line))
			if err != nil || rec.Tenant != string(b.Header.Tenant) {
				return nil, reject(i, err, "audit record %d is not the tenant's", e.Index)
			}
			got.AuditRecords++
			if opts.OnAudit != nil {
				opts.OnAudit(rec)
			}
		case KindManifest:
			got.RecordsRoot = tree.root()
			got.ContentHash = hex.EncodeToString(content.Sum(nil))
			if err := strictJSON(p, &b.Manifest); err != nil {
				return nil, reject(i, err, "malformed manifest")
			}
			if why := diffManifest(b.Manifest, got); why != "" {
				return nil, reject(i, nil, "the manifest does not match the bundle: %s", why)
			}
			b.ManifestSum = sha256.Sum256(p)
		case KindKeyset:
			b.Keyset = append([]byte(nil), p...)
		case KindSignature:
			n, err := note.Open(p, note.VerifierList(verifier))
			if err != nil {
				return nil, reject(i, err, "the bundle's signature does not verify with the source key")
			}
			if n.Text != signatureText(b.Header.Tenant, b.ManifestSum, sha256.Sum256(b.Keyset)) {
				return nil, reject(i, nil, "the signature is not of this manifest and keyset")
			}
		}
	}
}

func diffManifest(m, got Manifest) string {
	switch {
	case m.Format != Format || m.Tenant != got.Tenant:
		return "format or tenant"
	case m.ImportKey != got.ImportKey:
		return "import key"
	case m.Records != got.Records || m.RecordBytes != got.RecordBytes:
		return fmt.Sprintf("it counts %d records (%d bytes), the bundle holds %d (%d bytes)", m.Records, m.RecordBytes, got.Records, got.RecordBytes)
	case m.RecordsRoot != got.RecordsRoot:
		return "records root"
	case len(m.Keyspaces) != len(got.Keyspaces):
		return "records per keyspace"
	case m.Partitions != got.Partitions:
		return "partitions"
	case m.AuditRecords != got.AuditRecords || m.Checkpoint != got.Checkpoint:
		return "audit records or checkpoint"
	case m.ContentHash != got.ContentHash:
		return "content hash"
	}
	for k, n := range m.Keyspaces {
		if got.Keyspaces[k] != n {
			return "records per keyspace"
		}
	}
	return ""
}

// order of frames: what may follow each.
func follows(prev, kind byte) bool {
	switch kind {
	case KindHeader:
		return prev == 0
	case KindRecord:
		return prev == KindHeader || prev == KindRecord
	case KindOffsets:
		return prev == KindHeader || prev == KindRecord
	case KindCheckpoint:
		return prev == KindOffsets
	case KindAudit:
		return prev == KindCheckpoint || prev == KindAudit
	case KindManifest:
		return prev == KindCheckpoint || prev == KindAudit
	case KindKeyset:
		return prev == KindManifest
	case KindSignature:
		return prev == KindKeyset
	}
	return false
}

func stageName(b byte) string {
	if b == 0 {
		return "start"
	}
	return string(b)
}

type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// readFrame reads one frame into *buf; io.EOF only at a frame boundary.
func readFrame(r *countingReader, buf *[]byte, _ byte) (byte, []byte, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, io.ErrUnexpectedEOF
	}
	limit := uint64(MaxMetaBytes)
	if kind == KindRecord {
		limit = MaxRecordBytes
	}
	if n > limit {
		return 0, nil, fmt.Errorf("frame %c of %d bytes is over the limit of %d", kind, n, limit)
	}
	// Grow as the bytes arrive, so that a forged length costs nothing.
	b := (*buf)[:0]
	for uint64(len(b)) < n {
		chunk := min(n-uint64(len(b)), 1<<20)
		if uint64(cap(b)-len(b)) < chunk {
			nb := make([]byte, len(b), len(b)+int(chunk))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):len(b)+int(chunk)])
		b = b[:len(b)+m]
		if err != nil {
			return 0, nil, io.ErrUnexpectedEOF
		}
	}
	*buf = b
	return kind, b, nil
}

func writeFrameTo(w io.Writer, kind byte, p []byte) {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = kind
	n := binary.PutUvarint(hdr[1:], uint64(len(p)))
	w.Write(hdr[:1+n])
	w.Write(p)
}

// strictJSON decodes one JSON object with no unknown member.
func strictJSON(p []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// ProofHex encodes proof hashes for an AuditEntry.
func ProofHex(hashes [][]byte) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = hex.EncodeToString(h)
	}
	return out
}
