package main

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/kafka"
)

// TestCrashManyTenants kills the real process with SIGKILL while one
// consumer applies commit rounds across many tenants at once, twice, and
// checks that every tenant then holds exactly what was published to it:
// nothing lost, nothing applied twice.
func TestCrashManyTenants(t *testing.T) {
	const tenants, per = 16, 400
	f := startWithTenant(t, "many-00")
	names := []string{"many-00"}
	tokens := map[string]string{"many-00": f.token}
	for i := 1; i < tenants; i++ {
		name := fmt.Sprintf("many-%02d", i)
		var created struct {
			Token string
			Kafka struct{ User, Password string }
		}
		if st := api(t, "POST", f.base+"/v1/tenants", f.admin, `{"id":"`+name+`"}`, &created); st != 201 {
			t.Fatalf("create %s = %d", name, st)
		}
		producers.Store(name, kafka.Auth{User: created.Kafka.User, Password: created.Kafka.Password})
		names = append(names, name)
		tokens[name] = created.Token
	}
	publishAll := func(from, n int) {
		var wg sync.WaitGroup
		for _, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				publishN(t, f.kafkaAddr, name, from, n)
			}()
		}
		wg.Wait()
	}
	total := func() uint64 {
		var n uint64
		for _, name := range names {
			n += totalVersions(t, f.base, name, tokens[name])
		}
		return n
	}
	kill := func() {
		t.Helper()
		if err := f.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-f.p.done
	}
	// killApplying kills the process once it has applied more than from
	// events in all: while rounds are being applied (unless it applied
	// everything published first, which the kill then finds at rest).
	killApplying := func(from uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for total() <= from {
			if time.Now().After(deadline) {
				t.Fatalf("no event applied past %d within 30s", from)
			}
			time.Sleep(5 * time.Millisecond)
		}
		kill()
	}
	publishAll(0, per)
	killApplying(0)
	f.p = startVaultd(t, f.dir, f.httpAddr, f.kafkaAddr)
	applied := total()
	publishAll(per, per)
	killApplying(applied)
	f.p = startVaultd(t, f.dir, f.httpAddr, f.kafkaAddr)
	for _, name := range names {
		waitTotal(t, f.base, name, tokens[name], 2*per)
	}
	// Redelivered ids are consumed, found duplicates, and applied once.
	dups := metric(t, f.base, f.admin, "tenantvault_events_duplicate_total")
	publishAll(2*per-50, 50)
	waitMetric(t, f.base, f.admin, "tenantvault_events_duplicate_total", dups+float64(50*tenants))
	for _, name := range names {
		waitTotal(t, f.base, name, tokens[name], 2*per)
	}
}
