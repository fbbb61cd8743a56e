package witness

import (
	"errors"
	"fmt"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
)

// CosignatureError reports a checkpoint with fewer valid cosignatures by
// the witness keys given than required.
type CosignatureError struct {
	Size      uint64   // the checkpoint's
	Have      []string // the witnesses that cosigned it
	Want      int
	WitnessOf int // the number of witness keys given
}

func (e *CosignatureError) Error() string {
	return fmt.Sprintf("audit checkpoint of size %d has %d valid cosignatures by the %d witness keys given (%v), want at least %d",
		e.Size, len(e.Have), e.WitnessOf, e.Have, e.Want)
}

// VerifyCosigned opens signed, a checkpoint of the log of logKey that may
// carry witnesses' cosignatures (C2SP tlog-cosignature: cosignature/v1,
// Ed25519 or ML-DSA-44, as transparency-dev/formats verifies them), and
// returns it with the names of the witnesses among witnessKeys that
// cosigned it. Fewer than min of them is a *CosignatureError; a
// cosignature by one of witnessKeys that does not verify rejects the
// checkpoint (C2SP signed-note: a failing known key rejects), as does a
// bad or missing log signature (*audit.BadCheckpointError).
func VerifyCosigned(signed []byte, logKey string, witnessKeys []string, min int) (audit.Checkpoint, []string, error) {
	c, err := audit.OpenCheckpoint(signed, logKey)
	if err != nil {
		return audit.Checkpoint{}, nil, err
	}
	if min > len(witnessKeys) {
		return c, nil, fmt.Errorf("--min-cosignatures %d is more than the %d witness keys given", min, len(witnessKeys))
	}
	type id struct {
		name string
		hash uint32
	}
	seen := map[id]bool{}
	var vs []note.Verifier
	for i, k := range witnessKeys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return c, nil, fmt.Errorf("witness key %d is not a note verifier key (<name>+<hash>+<base64>): %w", i+1, err)
		}
		if seen[id{v.Name(), v.KeyHash()}] {
			continue
		}
		seen[id{v.Name(), v.KeyHash()}] = true
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return c, nil, nil
	}
	var have []string
	n, err := note.Open(signed, note.VerifierList(vs...))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case err == nil:
		for _, s := range n.Sigs {
			have = append(have, s.Name)
		}
	case errors.As(err, &unverified):
	case errors.As(err, &invalid):
		return c, nil, &audit.BadCheckpointError{Reason: fmt.Sprintf("the cosignature of witness %s+%08x does not verify", invalid.Name, invalid.Hash), Err: err}
	default:
		return c, nil, &audit.BadCheckpointError{Reason: "not a signed note: " + err.Error(), Err: err}
	}
	if len(have) < min {
		return c, have, &CosignatureError{Size: c.Size, Have: have, Want: min, WitnessOf: len(vs)}
	}
	return c, have, nil
}
