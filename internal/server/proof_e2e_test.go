package server_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/audit"
)

// TestAuditProofEndpoints fetches an inclusion proof and a consistency
// proof over HTTP and checks both with the audit package's verifiers
// against the vault's signed checkpoints and public key.
func TestAuditProofEndpoints(t *testing.T) {
	v := mustStart(t, t.TempDir(), "")
	key := strings.TrimSpace(string(v.get("/v1/audit/public-key")))
	checkpointCovering := func(min uint64) ([]byte, uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			cp := v.get("/v1/audit/checkpoint")
			c, err := audit.OpenCheckpoint(cp, key)
			if err != nil {
				t.Fatalf("checkpoint: %v", err)
			}
			if c.Size >= min {
				return cp, c.Size
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint covers %d records", min)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	v.createTenant("acme")
	oldCP, oldSize := checkpointCovering(1)
	v.createTenant("globex")
	v.createTenant("initech")
	newCP, newSize := checkpointCovering(oldSize + 2)

	var proof struct {
		Index, From *uint64
		Size        uint64
		Hashes      [][]byte
	}
	index := newSize - 1
	if st := v.do("GET", fmt.Sprintf("/v1/audit/proof/inclusion?index=%d&size=%d", index, newSize), v.srv.AdminToken(), nil, &proof); st != 200 {
		t.Fatalf("inclusion proof = %d", st)
	}
	if proof.Index == nil || *proof.Index != index || proof.From != nil || proof.Size != newSize {
		t.Fatalf("inclusion proof = %+v", proof)
	}
	lines := bytes.Split(bytes.TrimSpace(v.get(fmt.Sprintf("/v1/audit/export?from=%d&to=%d", index, newSize))), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("export of record %d = %d lines", index, len(lines))
	}
	if err := audit.VerifyInclusion(lines[0], index, proof.Hashes, newCP, key); err != nil {
		t.Errorf("VerifyInclusion: %v", err)
	}
	if err := audit.VerifyInclusion(lines[0], index, proof.Hashes, oldCP, key); err == nil {
		t.Errorf("VerifyInclusion against a checkpoint of %d records, which lacks record %d = nil", oldSize, index)
	}

	proof.Index = nil
	if st := v.do("GET", fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", oldSize, newSize), v.srv.AdminToken(), nil, &proof); st != 200 {
		t.Fatalf("consistency proof = %d", st)
	}
	if proof.From == nil || *proof.From != oldSize || proof.Index != nil || proof.Size != newSize {
		t.Fatalf("consistency proof = %+v", proof)
	}
	if err := audit.VerifyConsistency(oldCP, newCP, proof.Hashes, key); err != nil {
		t.Errorf("VerifyConsistency: %v", err)
	}
	if st := v.do("GET", "/v1/audit/proof/consistency?from=x&to=1", v.srv.AdminToken(), nil, nil); st != 400 {
		t.Errorf("consistency proof with a bad parameter = %d, want 400", st)
	}
}
