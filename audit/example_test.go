package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
