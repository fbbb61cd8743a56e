package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type keysStatus struct {
	Keys []struct {
		ID      uint32
		Primary bool
		Status  string
	}
	Usage  map[string]uint64 `json:"values_per_key"`
	Rewrap *struct {
		Running            bool
		Scanned, Rewrapped uint64
		Done               bool
		Error              string
	}
}

// TestRotateUnderLoadWithCrash rotates a tenant's key and rewraps its store
// while events are published and read, kills vaultd in the middle of the
// rewrap, and checks that the rewrap resumes and finishes, that no event is
// lost, and that once every value is under the new key the old key can be
// destroyed with everything still readable.
func TestRotateUnderLoadWithCrash(t *testing.T) {
	f := startWithTenant(t, "rot")
	dir, httpAddr, kafkaAddr, base, p, admin, tok := f.dir, f.httpAddr, f.kafkaAddr, f.base, f.p, f.admin, f.token
	publishN(t, kafkaAddr, "rot", 0, 6000)
	waitTotal(t, base, "rot", tok, 6000)

	var before keysStatus
	api(t, "GET", base+"/v1/tenants/rot/keys", admin, "", &before)
	oldKey := before.Keys[0].ID

	// Load: reads and writes go on during the rotation.
	var reads, readErrs atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var out map[string]any
			switch st := apiQuiet(base+fmt.Sprintf("/v1/tenants/rot/streams/stream-%d", i%20), tok, &out); st {
			case 200:
				reads.Add(1)
			case 0: // the process is down (killed on purpose)
			default:
				readErrs.Add(1)
			}
		}
	}()

	var rs keysStatus
	if st := api(t, "POST", base+"/v1/tenants/rot/keys/rotate", admin, `{"rewrap":true}`, &rs); st != 200 {
		t.Fatalf("rotate = %d", st)
	}
	var newKey uint32
	for _, k := range rs.Keys {
		if k.Primary {
			newKey = k.ID
		}
	}
	if newKey == 0 || newKey == oldKey {
		t.Fatalf("rotate: primary %d (old %d)", newKey, oldKey)
	}
	if err := publishQuiet(kafkaAddr, "rot", 6000, 500); err != nil {
		t.Fatal(err)
	}
	// Kill -9 in the middle of the rewrap.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st keysStatus
		api(t, "GET", base+"/v1/tenants/rot/keys", admin, "", &st)
		if st.Rewrap != nil && st.Rewrap.Scanned > 0 && st.Rewrap.Running {
			break
		}
		if st.Rewrap != nil && st.Rewrap.Done {
			t.Log("rewrap finished before the kill: the crash hits a finished job")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rewrap never started: %+v", st.Rewrap)
		}
		time.Sleep(2 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done

	startVaultd(t, dir, httpAddr, kafkaAddr)
	if err := publishQuiet(kafkaAddr, "rot", 6500, 500); err != nil {
		t.Fatal(err)
	}
	// The rewrap resumed by itself and finishes: nothing left under the old key.
	deadline = time.Now().Add(60 * time.Second)
	var after keysStatus
	for {
		after = keysStatus{} // decoding into a used map would merge the old counts
		api(t, "GET", base+"/v1/tenants/rot/keys?usage=true", admin, "", &after)
		if after.Usage[fmt.Sprint(oldKey)] == 0 && (after.Rewrap == nil || !after.Rewrap.Running) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: old key %d new key %d; keys %+v usage %v, rewrap %+v", oldKey, newKey, after.Keys, after.Usage, after.Rewrap)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitTotal(t, base, "rot", tok, 7000)
	close(stop)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no read succeeded during the rotation")
	}
	if readErrs.Load() > 0 {
		t.Fatalf("%d reads failed during the rotation", readErrs.Load())
	}
	// The old key can go; every event still reads.
	if st := api(t, "POST", base+fmt.Sprintf("/v1/tenants/rot/keys/%d/destroy", oldKey), admin, "", nil); st != 200 {
		t.Fatalf("destroy old key = %d", st)
	}
	var hist struct{ Events []json.RawMessage }
	for s := 0; s < 20; s++ {
		if st := api(t, "GET", base+fmt.Sprintf("/v1/tenants/rot/streams/stream-%d/events?limit=1000", s), tok, "", &hist); st != 200 || len(hist.Events) != 350 {
			t.Fatalf("history of stream-%d after destroying the old key = %d, %d events, want 350", s, st, len(hist.Events))
		}
	}
	t.Logf("%d reads during rotation, old key %d destroyed, new key %d", reads.Load(), oldKey, newKey)
}
