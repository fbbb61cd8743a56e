package server_test

import (
	"fmt"
	"testing"
	"time"
)

// TestNewTenantConsumedAtOnce: a tenant created while vaultd runs is
// consumed by the one consumer of every tenant topic without a restart,
// within a second of its first publish.
func TestNewTenantConsumedAtOnce(t *testing.T) {
	v := mustStart(t, t.TempDir(), "")
	first := v.createTenant("early")
	v.publish("tenant.early.events", rec("s", event("e1", "s", "t.set", `{"n":1}`)))
	v.waitVersion("early", first, "s", 1)
	for i := range 3 {
		name := fmt.Sprintf("late-%d", i)
		tok := v.createTenant(name)
		start := time.Now()
		v.publish("tenant."+name+".events", rec("s", event("l1", "s", "t.set", `{"n":1}`)))
		v.waitVersion(name, tok, "s", 1)
		d := time.Since(start)
		t.Logf("tenant %s: first event queryable %v after its publish began", name, d.Round(time.Millisecond))
		if d > time.Second {
			t.Errorf("tenant %s consumed %v after its publish, want within 1s", name, d)
		}
	}
}
