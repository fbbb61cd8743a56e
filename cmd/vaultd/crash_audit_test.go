package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/audit"
)

// TestCrashDuringReadsAndWrites kills vaultd with SIGKILL under concurrent
// reads and ingest. After the restart the audit log verifies, and every
// request that was answered with success has its audit record.
func TestCrashDuringReadsAndWrites(t *testing.T) {
	f := startWithTenant(t, "busy")
	dir, httpAddr, kafkaAddr, base, p, tok := f.dir, f.httpAddr, f.kafkaAddr, f.base, f.p, f.token
	publishN(t, kafkaAddr, "busy", 0, 200)
	waitTotal(t, base, "busy", tok, 200)

	// Readers count the successes they see, per audit action.
	var ok atomic.Int64
	var mu sync.Mutex
	succeeded := map[audit.Action]int{} // action → successes
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 2 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path, action := fmt.Sprintf("/v1/tenants/busy/streams/stream-%d", i%20), audit.ActionStreamRead
				if i%3 == 1 {
					path, action = path+"/events?limit=5", audit.ActionEventsRead
				}
				req, _ := http.NewRequest("GET", base+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					return // the process is gone
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
					mu.Lock()
					succeeded[action]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // and writes
		defer wg.Done()
		for i := 200; i < 2000; i += 100 {
			select {
			case <-stop:
				return
			default:
			}
			if publishQuiet(kafkaAddr, "busy", i, 100) != nil {
				return // the broker died with the process
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for ok.Load() < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads succeeded within 30s, want 300 before the kill; log:\n%s", ok.Load(), p.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	close(stop)
	wg.Wait()

	// Restart: the log opens (Open verifies it), and holds a record for
	// every success the readers saw.
	p = startVaultd(t, dir, httpAddr, kafkaAddr)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.done; err != nil {
		t.Fatalf("restarted vaultd exited with %v; log:\n%s", err, p.log())
	}
	recorded := map[audit.Action]int{}
	segs, _ := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	sort.Strings(segs)
	var prev string
	n := 0
	for _, seg := range segs {
		f, err := os.Open(seg)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			r, err := audit.ParseRecord(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: record %d: %v", seg, n, err)
			}
			if r.Index != uint64(n) || r.Prev != prev {
				t.Fatalf("record %d: index %d prev %q, want index %d prev %q", n, r.Index, r.Prev, n, prev)
			}
			h := audit.LeafHash(sc.Bytes())
			prev = fmt.Sprintf("%x", h[:])
			n++
			if r.Principal == audit.PrincipalTenant("busy") && r.Outcome == audit.OutcomeOK {
				recorded[r.Action]++
			}
		}
		f.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	for action, want := range succeeded {
		if recorded[action] < want {
			t.Errorf("%s: %d successful answers but %d audit records", action, want, recorded[action])
		}
	}
	t.Logf("successes %v, audit records %v, %d records in all", succeeded, recorded, n)
}
