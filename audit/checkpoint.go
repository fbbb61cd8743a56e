package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/events"
)

// Checkpoint is a tree head of the log: its origin (the name of the key
// that signs it), its size in records and the RFC 6962 root hash of the
// Merkle tree over the first Size records. Signed, it is a C2SP
// tlog-checkpoint (https://c2sp.org/tlog-checkpoint): a signed note
// (https://c2sp.org/signed-note) whose text is Marshal's output.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [HashSize]byte
}

// Limits of checkpoints.
const (
	// MaxCheckpointBytes bounds a signed checkpoint accepted by
	// OpenCheckpoint; ours are about 200 bytes.
	MaxCheckpointBytes = 16 << 10
	// maxOriginLen bounds an origin (a note key name).
	maxOriginLen = 256
)

// Marshal returns the checkpoint's note text: three lines, each ending in a
// newline: the origin, the size in decimal (no sign, no leading zeros) and
// the root hash in standard base64 with padding (44 characters).
func (c Checkpoint) Marshal() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// String is the checkpoint's one-line summary.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%s@%d:%s", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint parses a checkpoint note text (the body of the signed
// note, without its signatures; it does not verify anything). It is strict
// about the three lines Marshal writes (a valid note key name as the
// origin; the size in canonical decimal; a 32-byte root in canonical
// padded base64) and, as C2SP tlog-checkpoint requires, accepts and ignores
// any non-empty extension lines after them.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > MaxCheckpointBytes {
		return Checkpoint{}, fmt.Errorf("checkpoint text is %d bytes, over the limit of %d", len(text), MaxCheckpointBytes)
	}
	if !bytes.HasSuffix(text, []byte("\n")) {
		return Checkpoint{}, errors.New("checkpoint text does not end with a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("checkpoint text has %d lines, want at least 3 (origin, size, root)", len(lines))
	}
	var c Checkpoint
	if err := checkOrigin(lines[0]); err != nil {
		return Checkpoint{}, err
	}
	c.Origin = lines[0]
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint size %.30q is not a decimal number without sign or leading zeros", lines[1])
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, fmt.Errorf("checkpoint root %.60q is not a %d-byte hash in padded standard base64", lines[2], HashSize)
	}
	c.Root = [HashSize]byte(root)
	for i, ext := range lines[3:] {
		if ext == "" {
			return Checkpoint{}, fmt.Errorf("checkpoint extension line %d is empty", i+1)
		}
	}
	return c, nil
}

// checkOrigin applies the note key name rules (non-empty UTF-8, no spaces,
// no '+'), refuses control characters and bounds the length.
func checkOrigin(s string) error {
	switch {
	case s == "":
		return errors.New("checkpoint origin is empty")
	case len(s) > maxOriginLen:
		return fmt.Errorf("checkpoint origin is %d bytes, over the limit of %d", len(s), maxOriginLen)
	case !utf8.ValidString(s), strings.ContainsRune(s, '+'),
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("checkpoint origin %.80q is not a valid note key name", s)
	}
	return nil
}

// SignCheckpoint returns c as a signed note, signed by s. s's key name must
// be c's origin.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	if err := checkOrigin(c.Origin); err != nil {
		return nil, err
	}
	if s.Name() != c.Origin {
		return nil, fmt.Errorf("checkpoint origin %q is not the signer's key name %q", c.Origin, s.Name())
	}
	return note.Sign(&note.Note{Text: string(c.Marshal())}, s)
}

// BadCheckpointError reports a checkpoint that cannot be trusted: it is not a
// signed note, it is not signed by the log's key (a bad signature, or
// another key's), its text is not a checkpoint, or its origin is not the
// key's name. Reason says which, never quoting more than a short prefix of
// the input.
type BadCheckpointError struct {
	Reason string
	// Err is the underlying error, if any (*note.InvalidSignatureError,
	// *note.UnverifiedNoteError, ...).
	Err error
}

func (e *BadCheckpointError) Error() string { return "audit checkpoint rejected: " + e.Reason }

func (e *BadCheckpointError) Unwrap() error { return e.Err }

// OpenCheckpoint verifies a signed checkpoint with verifierKey (a note
// verifier key, "<name>+<hash>+<base64 key>", see VERIFYING.md) and returns
// it. The note must carry a valid signature by that key (and every
// signature line of that key must verify: a failing one, even next to a
// good one, rejects it), its text must be a checkpoint (ParseCheckpoint),
// and its origin must be the key's name. Signatures by other keys (witness
// cosignatures) are allowed and ignored.
// It returns an *BadCheckpointError, or an *events.Error with code EINVALID
// if verifierKey itself is malformed.
func OpenCheckpoint(signed []byte, verifierKey string) (Checkpoint, error) {
	v, err := newVerifier(verifierKey)
	if err != nil {
		return Checkpoint{}, err
	}
	return openCheckpoint(signed, v)
}

func newVerifier(verifierKey string) (note.Verifier, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, events.Errorf(events.EINVALID, "audit verifier key is not a note verifier key (<name>+<hash>+<base64>): %v", err)
	}
	return v, nil
}

func openCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	if len(signed) > MaxCheckpointBytes {
		return Checkpoint{}, &BadCheckpointError{Reason: fmt.Sprintf("%d bytes, over the limit of %d", len(signed), MaxCheckpointBytes)}
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return Checkpoint{}, &BadCheckpointError{Reason: fmt.Sprintf("the signature of %s+%08x does not verify", invalid.Name, invalid.Hash), Err: err}
		case errors.As(err, &unverified):
			var by []string
			for _, s := range unverified.Note.UnverifiedSigs {
				by = append(by, fmt.Sprintf("%.80s+%08x", s.Name, s.Hash))
			}
			return Checkpoint{}, &BadCheckpointError{Reason: fmt.Sprintf("not signed by the log's key %s+%08x (signed by %s)", v.Name(), v.KeyHash(), strings.Join(by, ", ")), Err: err}
		default:
			return Checkpoint{}, &BadCheckpointError{Reason: "not a signed note: " + err.Error(), Err: err}
		}
	}
	if err := checkEverySignature(signed, n.Text, v); err != nil {
		return Checkpoint{}, &BadCheckpointError{Reason: err.Error(), Err: err}
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, &BadCheckpointError{Reason: err.Error(), Err: err}
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, &BadCheckpointError{Reason: fmt.Sprintf("origin %.80q is not the name of the log's key %q", c.Origin, v.Name())}
	}
	return c, nil
}

// noteText returns the text of a signed note without verifying anything:
// everything up to and including the newline before the blank line that
// starts the signatures.
func noteText(signed []byte) ([]byte, bool) {
	i := bytes.LastIndex(signed, []byte("\n\n")) // as note.Open splits
	if i < 0 {
		return nil, false
	}
	return signed[:i+1], true
}
