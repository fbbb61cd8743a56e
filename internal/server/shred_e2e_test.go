package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	aesgcmpb "github.com/tink-crypto/tink-go/v2/proto/aes_gcm_go_proto"
	hmacpb "github.com/tink-crypto/tink-go/v2/proto/hmac_prf_go_proto"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
	vaultpkg "github.com/tenantvault/tenantvault/vault"
)

// rawTenantKeys digs tenant's raw key bytes out of the keystore, the way
// an attacker holding the master key file would: the needles the shred test
// must not find anywhere afterwards.
func rawTenantKeys(t *testing.T, dataDir, tenant string) [][]byte {
	t.Helper()
	mb, err := os.ReadFile(filepath.Join(dataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	mh, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(mb)))
	if err != nil {
		t.Fatalf("read master key: %v", err)
	}
	master, err := aead.New(mh)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := os.ReadFile(filepath.Join(dataDir, "keys", tenant+".keyset"))
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(kb, &f); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, field := range []string{"aead", "prf"} {
		h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(f[field])), master, []byte(tenant))
		if err != nil {
			t.Fatalf("unwrap %s keyset of %s: %v", field, tenant, err)
		}
		for _, k := range insecurecleartextkeyset.KeysetMaterial(h).GetKey() {
			v := k.GetKeyData().GetValue()
			var g aesgcmpb.AesGcmKey
			var p hmacpb.HmacPrfKey
			switch {
			case field == "aead" && proto.Unmarshal(v, &g) == nil && len(g.GetKeyValue()) == 32:
				out = append(out, g.GetKeyValue())
			case field == "prf" && proto.Unmarshal(v, &p) == nil && len(p.GetKeyValue()) >= 32:
				out = append(out, p.GetKeyValue())
			default:
				t.Fatalf("unexpected %s key material in %s's keyset", field, tenant)
			}
		}
	}
	return out
}

// scanBytes reports every file under root holding one of needles.
func scanBytes(t *testing.T, root string, needles [][]byte) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				hits = append(hits, path)
			}
		}
		return nil
	})
	return hits
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestShred publishes marker strings for acme and globex, copies acme's
// sealed store aside, shreds acme, and checks the promise: nothing of acme
// anywhere under the data dir or the broker's (markers, stream ids, raw key
// bytes), the copied records open by no code path, globex reads back whole,
// acme answers 410, publishing to its old topic is refused and audited,
// and the signed receipt verifies.
func TestShred(t *testing.T) {
	dir := t.TempDir()
	hook := newWebhook(t)
	v := startWithWebhook(t, dir, hook.srv.URL)
	acme, globex := v.createTenant("acme"), v.createTenant("globex")
	acmeMarker, globexMarker := "acme-shred-marker-6c1d", "globex-keep-marker-0b7e"
	acmeStream := "acme-stream-shred-e3f0"
	var recs [][2][]byte
	for i := 0; i < 50; i++ {
		recs = append(recs, rec(acmeStream, event("a"+string(rune('A'+i%26))+strings.Repeat("x", i), acmeStream, "t.set", `{"m":"`+acmeMarker+`"}`)))
	}
	v.publish("tenant.acme.events", recs...)
	v.publish("tenant.globex.events", rec("g-1", event("g1", "g-1", "t.set", `{"m":"`+globexMarker+`"}`)))
	v.waitVersion("acme", acme, acmeStream, 50)
	v.waitVersion("globex", globex, "g-1", 1)
	keyBytes := rawTenantKeys(t, dir, "acme")

	// An attacker's copy of acme's sealed store, taken before the shred.
	stolen := t.TempDir()
	copyDir(t, filepath.Join(dir, "tenants", "acme"), stolen)

	// Refusals first: each audited, nothing done.
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/v1/tenants/acme?confirm=globex", v.srv.AdminToken(), 400},
		{"/v1/tenants/acme", v.srv.AdminToken(), 400},
		{"/v1/tenants/nobody?confirm=nobody", v.srv.AdminToken(), 404},
		{"/v1/tenants/acme?confirm=acme", acme, 403},
		{"/v1/tenants/..%2Fx?confirm=..%2Fx", v.srv.AdminToken(), 400},
	} {
		if st := v.request("DELETE", c.path, "Bearer "+c.token, nil, ""); st != c.want {
			t.Fatalf("DELETE %s = %d, want %d", c.path, st, c.want)
		}
	}
	v.waitVersion("acme", acme, acmeStream, 50) // still there

	var receipt vaultpkg.Receipt
	if st := v.do("DELETE", "/v1/tenants/acme?confirm=acme", v.srv.AdminToken(), nil, &receipt); st != 200 {
		t.Fatalf("shred acme = %d", st)
	}
	if receipt.Tenant != "acme" || len(receipt.KeyIDs) == 0 || receipt.Events != 50 || receipt.Signature == "" {
		t.Fatalf("receipt = %+v", receipt)
	}
	// The receipt is signed by the audit log's key.
	pub := strings.TrimSpace(string(v.get("/v1/audit/public-key")))
	verifier, err := note.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open([]byte(receipt.Signature), note.VerifierList(verifier)); err != nil {
		t.Fatalf("receipt signature does not verify: %v", err)
	}
	if rc, err := audit.OpenReceipt([]byte(receipt.Signature), pub); err != nil || rc.AuditIndex != receipt.AuditIndex || rc.Tenant != "acme" {
		t.Fatalf("audit.OpenReceipt(receipt) = %+v, %v; want tenant acme at audit index %d", rc, err, receipt.AuditIndex)
	}
	if st := v.do("DELETE", "/v1/tenants/acme?confirm=acme", v.srv.AdminToken(), nil, nil); st != 410 {
		t.Fatalf("second shred = %d, want 410", st)
	}

	// 410 for the tenant, flagged.
	if st, _ := v.state("acme", acme, acmeStream); st != 410 {
		t.Fatalf("GET acme after shred = %d, want 410", st)
	}
	flagged := v.audit("flagged=true&tenant=acme").Records
	if last := flagged[len(flagged)-1]; last.Details[audit.DetailTenantState] != "shredded" {
		t.Fatalf("last flagged record = %+v, want an access to a shredded tenant", last)
	}
	// globex untouched.
	if _, s := v.state("globex", globex, "g-1"); !strings.Contains(string(s.Data), globexMarker) {
		t.Fatalf("globex after acme's shred = %s", s.Data)
	}
	// Re-creating needs the explicit ask, and brings nothing back.
	if st := v.do("POST", "/v1/tenants", v.srv.AdminToken(), map[string]string{"id": "acme"}, nil); st != 409 {
		t.Fatalf("re-create without recreate = %d, want 409", st)
	}

	// acme's producers can no longer log in: their principal went with
	// the shred.
	if a, ok := v.producer("acme"); !ok {
		t.Fatal("no producer credential of acme")
	} else if err := tryPublish(v.brokers(), a, "tenant.acme.events", rec(acmeStream, event("late0", acmeStream, "t.set", `{}`))); err == nil {
		t.Fatal("publish with acme's credential after its shred: accepted, want refused")
	}
	// Publishing to the shredded tenant's old topic (only a principal
	// allowed to create topics can bring it back) is refused (audited,
	// flagged) and its records deleted from the broker.
	v.superPublish("tenant.acme.events", rec(acmeStream, event("late", acmeStream, "t.set", `{"m":"`+acmeMarker+`"}`)))
	waitFor(t, 15*time.Second, "the late publish audited", func() bool {
		for _, r := range v.audit("action=ingest.skip&flagged=true").Records {
			if r.Details[audit.DetailTenantState] == "shredded" {
				return true
			}
		}
		return false
	})

	// Nothing of acme anywhere: data dir and broker dir.
	needles := append([][]byte{[]byte(acmeMarker), []byte(acmeStream)}, keyBytes...)
	waitFor(t, 20*time.Second, "acme's bytes gone from every file", func() bool {
		return len(scanBytes(t, dir, needles)) == 0
	})
	if hits := scanBytes(t, dir, [][]byte{[]byte(globexMarker)}); len(hits) != 0 {
		// globex's ingress records are deleted too once sealed (ingress retention).
		t.Logf("globex marker still in %v (ingress retention may lag)", hits)
	}

	// The stolen copy opens by no code path: acme's keys are gone, a
	// re-created acme has new keys, and globex's keys are not acme's.
	v.stop()
	db, err := badger.Open(projections.Config{Dir: stolen}.BadgerOptionsFor(stolen))
	if err != nil {
		t.Fatal(err)
	}
	var sealed [][]byte
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("l/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			val, _ := it.Item().ValueCopy(nil)
			sealed = append(sealed, val)
		}
		return nil
	})
	db.Close()
	if len(sealed) != 50 {
		t.Fatalf("stolen copy holds %d log entries, want 50", len(sealed))
	}
	v = startWithWebhook(t, dir, hook.srv.URL)
	var created struct{ Token string }
	if st := v.do("POST", "/v1/tenants", v.srv.AdminToken(), map[string]any{"id": "acme", "recreate": true}, &created); st != 201 {
		t.Fatalf("re-create acme = %d", st)
	}
	if st, _ := v.state("acme", created.Token, acmeStream); st != 404 {
		t.Fatalf("re-created acme has the old stream: %d", st)
	}
	// Plant a stolen record in globex's store: refused as foreign, owner acme.
	v.stop()
	gdb, err := badger.Open(projections.Config{Dir: dir}.BadgerOptionsFor(filepath.Join(dir, "tenants", "globex")))
	if err != nil {
		t.Fatal(err)
	}
	gdb.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("s/")})
		it.Rewind()
		k := it.Item().KeyCopy(nil)
		it.Close()
		return txn.Set(k, sealed[0])
	})
	gdb.Close()
	v = startWithWebhook(t, dir, hook.srv.URL)
	if st, _ := v.state("globex", globex, "g-1"); st != 403 {
		t.Fatalf("read of a stolen acme record planted in globex = %d, want 403", st)
	}
	recs2 := v.audit("flagged=true&tenant=globex").Records
	if last := recs2[len(recs2)-1]; last.Details[audit.DetailKeyOwner] != "acme" {
		t.Fatalf("flagged record = %+v, want key owner acme", last)
	}
}

// get fetches an API path with the admin token and returns the body.
func (v *vault) get(path string) []byte {
	v.tb.Helper()
	req, _ := http.NewRequest("GET", v.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+v.srv.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func eventsCode(err error) string { return events.ErrorCode(err) }

// TestShredConcurrentReads shreds a tenant while reads are in flight: each
// read either completes before Shred returns or fails with the shred error.
func TestShredConcurrentReads(t *testing.T) {
	v := mustStart(t, t.TempDir(), "")
	tok := v.createTenant("racy")
	var recs [][2][]byte
	for i := 0; i < 200; i++ {
		s := "s-" + string(rune('a'+i%20))
		recs = append(recs, rec(s, event("e"+strings.Repeat("i", i+1), s, "t.set", `{"n":1}`)))
	}
	v.publish("tenant.racy.events", recs...)
	waitFor(t, 20*time.Second, "200 events", func() bool {
		var out struct{ Streams []struct{ Version uint64 } }
		v.do("GET", "/v1/tenants/racy/streams", tok, nil, &out)
		n := uint64(0)
		for _, s := range out.Streams {
			n += s.Version
		}
		return n == 200
	})
	vlt := v.srv.Vault()
	ctx := context.Background()
	p, err := vlt.Authenticate(ctx, tok, "test", "test")
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := vlt.Authenticate(ctx, v.srv.AdminToken(), "test", "test")

	type result struct {
		at   time.Time
		ok   bool
		code string
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := vlt.Session(ctx, p, vaultpkg.Access{Tenant: "racy", Action: "stream.read", Resource: "streams"})
				var r result
				if err == nil {
					_, err = s.State(ctx, "s-"+string(rune('a'+i%20)))
					r = result{at: time.Now(), ok: err == nil}
					s.Close()
				}
				if err != nil {
					r = result{at: time.Now(), code: eventsCode(err)}
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	count := func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range results {
			if r.at.After(after) {
				n++
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, "reads under way", func() bool { return count(time.Time{}) >= 50 })
	if _, err := vlt.Shred(ctx, admin, "racy", "racy"); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	waitFor(t, 10*time.Second, "reads after the shred returned", func() bool { return count(returned) >= 50 })
	close(stop)
	wg.Wait()
	var before, after, gone int
	for _, r := range results {
		switch {
		case r.ok && r.at.After(returned):
			t.Fatalf("a read returned data %v after Shred returned", r.at.Sub(returned))
		case r.ok:
			before++
		case r.code == "gone":
			gone++
		default:
			t.Fatalf("a read failed with %q, want gone", r.code)
		}
		if !r.ok && r.at.After(returned) {
			after++
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("reads before the shred: %d, refused after: %d — the test did not race", before, after)
	}
	t.Logf("%d reads served before the shred returned, %d refused (gone), %d of them after", before, gone, after)
}
