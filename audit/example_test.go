package audit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
)

func ExampleLog() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)

	alerts := make(chan audit.Record, 1)
	l, err := audit.Open(audit.Options{
		Dir:       filepath.Join(dir, "audit"),
		OnFlagged: func(r audit.Record) { alerts <- r },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

	ctx := context.Background()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Append(ctx, audit.Record{Time: at, Principal: audit.PrincipalAdmin, Tenant: "acme",
		Action: audit.ActionTenantCreate, Outcome: audit.OutcomeOK})
	r, _ := l.Append(ctx, audit.Record{Time: at, Principal: "tenant:globex", Tenant: "acme",
		Action: audit.ActionStreamRead, KeyIDs: []uint32{42}, Outcome: audit.OutcomeDenied,
		Flagged: true, Reason: "token tenant is not the path tenant"})

	fmt.Println("index:", r.Index, "chained:", len(r.Prev) == 64)
	fmt.Println("alert:", (<-alerts).Reason)
	recs, _ := l.List(ctx, audit.Filter{Tenant: "acme"})
	for _, r := range recs {
		fmt.Println(r.Index, r.Principal, r.Action, r.Outcome)
	}
	fmt.Println("verify:", l.Verify(ctx))
	// Output:
	// index: 1 chained: true
	// alert: token tenant is not the path tenant
	// 0 admin tenant.create ok
	// 1 tenant:globex stream.read denied
	// verify: <nil>
}

func ExampleVerifyExportDir() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)

	// A test key; in tenantvault it comes from keys.Keystore.AuditSigner.
	skey, vkey, _ := note.GenerateKey(rand.Reader, "vault.example.com/audit")
	signer, _ := note.NewSigner(skey)

	l, err := audit.Open(audit.Options{Dir: dir, Signer: signer, VerifierKey: vkey})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, action := range []audit.Action{audit.ActionTenantCreate, audit.ActionStreamRead, audit.ActionTenantShred} {
		l.Append(ctx, audit.Record{Principal: audit.PrincipalAdmin, Tenant: "acme", Action: action, Outcome: audit.OutcomeOK})
	}
	l.Close() // signs a last checkpoint
	checkpoint, _ := os.ReadFile(filepath.Join(dir, "checkpoints", "latest"))

	// An auditor needs the files, the checkpoint and the public key.
	rep, err := audit.VerifyExportDir(ctx, dir, checkpoint, l.PublicKey())
	fmt.Println("records:", rep.Records, "signed:", rep.Checkpoint.Size, "err:", err)

	// Someone removes the shred record from the end of the log.
	seg := filepath.Join(dir, "000000000000.jsonl")
	b, _ := os.ReadFile(seg)
	lines := bytes.SplitAfter(b, []byte("\n"))
	os.WriteFile(seg, bytes.Join(lines[:2], nil), 0o600)
	_, err = audit.VerifyExportDir(ctx, dir, checkpoint, l.PublicKey())
	var inc *audit.InconsistentError
	if errors.As(err, &inc) {
		fmt.Println("first bad record:", inc.At)
	}
	// Output:
	// records: 3 signed: 3 err: <nil>
	// first bad record: 2
}
