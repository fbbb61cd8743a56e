package server_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/internal/embed"
	"github.com/tenantvault/tenantvault/internal/server"
	"github.com/tenantvault/tenantvault/projections"
)

type searchResp struct {
	Results []struct {
		ID    string  `json:"id"`
		Score float64 `json:"score"`
		Text  string  `json:"text"`
	} `json:"results"`
	Error map[string]string `json:"error"`
}

// docData is the data of a document event: text and, unless nil, an
// embedding.
func docData(text string, emb []float32) string {
	d := map[string]any{"text": text}
	if emb != nil {
		d["embedding"] = emb
	}
	b, _ := json.Marshal(d)
	return string(b)
}

// TestSearchEndToEnd: documents published over Kafka (with an embedding,
// or embedded by --embedder hash:64), searched over HTTP by text and by
// vector, only the caller's; an index entry copied from globex's store
// into acme's on disk is refused and flagged (foreign_key, alerted);
// after acme's shred, search answers 410 and neither acme's text nor the
// float32 bytes of its embedding is anywhere under the data dir.
func TestSearchEndToEnd(t *testing.T) {
	dir := t.TempDir()
	hook := newWebhook(t)
	start := func() *vault {
		return mustStartWith(t, dir, "", func(c *server.Config) { c.Embedder = "hash:64"; c.AlertWebhook = hook.srv.URL })
	}
	v := start()
	acme, globex := v.createTenant("acme"), v.createTenant("globex")
	h := embed.Hash{Dim: 64}
	const acmeMarker, globexMarker = "acme-search-marker-91c2", "globex-search-marker-4d7e"
	// A distinctive embedding: its float32 little-endian bytes are the
	// needle of the disk scans.
	distinct := h.Vector("refund policy")
	distinct[0], distinct[1], distinct[2], distinct[3] = 0.123456789, -0.987654321, 0.314159265, 0.271828182
	var needle []byte
	for _, x := range distinct[:4] {
		needle = binary.LittleEndian.AppendUint32(needle, math.Float32bits(x))
	}
	texts := []string{"refunds take 14 days", "shipping is free over 50 euros", "passwords are reset by support"}
	for _, tn := range []struct{ name, marker string }{{"acme", acmeMarker}, {"globex", globexMarker}} {
		var recs [][2][]byte
		for i, text := range texts {
			stream := fmt.Sprintf("doc-%d", i)
			recs = append(recs, rec(stream, event(tn.name+stream, stream, "kb.document", docData(text+" "+tn.marker, nil))))
		}
		recs = append(recs, rec("doc-distinct", event(tn.name+"-distinct", "doc-distinct", "kb.document", docData("the refund policy "+tn.marker, distinct))))
		v.publish("tenant."+tn.name+".events", recs...)
	}
	v.waitVersion("acme", acme, "doc-distinct", 1)
	v.waitVersion("globex", globex, "doc-distinct", 1)

	search := func(tenant, token string, body any) (int, searchResp) {
		var r searchResp
		st := v.do("POST", "/v1/tenants/"+tenant+"/search", token, body, &r)
		return st, r
	}
	for _, tn := range []struct{ name, token, marker string }{{"acme", acme, acmeMarker}, {"globex", globex, globexMarker}} {
		for _, body := range []any{map[string]any{"text": "how long do refunds take", "k": 10}, map[string]any{"vector": distinct, "k": 2}} {
			st, r := search(tn.name, tn.token, body)
			if st != 200 || len(r.Results) == 0 {
				t.Fatalf("search %s %v = %d %+v", tn.name, body, st, r)
			}
			for _, hit := range r.Results {
				if !strings.HasSuffix(hit.Text, tn.marker) {
					t.Fatalf("search of %s answered %+v", tn.name, hit)
				}
			}
		}
	}
	if st, r := search("acme", acme, map[string]any{"vector": distinct, "k": 1}); st != 200 || r.Results[0].ID != "doc-distinct" {
		t.Fatalf("nearest to the distinctive embedding = %d %+v", st, r)
	}
	if st, _ := search("acme", globex, map[string]any{"text": "refunds"}); st != 403 {
		t.Fatalf("globex's token on acme's search = %d, want 403", st)
	}
	if hits := scanBytes(t, dir, [][]byte{needle}); len(hits) != 0 {
		t.Fatalf("the embedding's float32 bytes are in clear in %v", hits)
	}
	v.stop()

	// An attacker with disk access copies globex's index entry of
	// doc-distinct over acme's.
	open := func(tenant string) *badger.DB {
		db, err := badger.Open(projections.Config{Dir: dir}.BadgerOptionsFor(filepath.Join(dir, "tenants", tenant)))
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	vectors := func(db *badger.DB) map[string][]byte {
		out := map[string][]byte{}
		db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("v/"), PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				val, _ := it.Item().ValueCopy(nil)
				out[string(it.Item().Key())] = val
			}
			return nil
		})
		return out
	}
	gdb := open("globex")
	stolen := vectors(gdb)
	gdb.Close()
	adb := open("acme")
	own := vectors(adb)
	if len(own) != 4 || len(stolen) != 4 {
		t.Fatalf("index entries: acme %d, globex %d; want 4 each", len(own), len(stolen))
	}
	var key string
	for k := range own {
		key = k
		break
	}
	var planted []byte
	for _, val := range stolen {
		planted = val
		break
	}
	if err := adb.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), planted) }); err != nil {
		t.Fatal(err)
	}
	adb.Close()

	v = start()
	alertsBefore := hook.count()
	st, r := search("acme", acme, map[string]any{"text": "refunds"})
	if st != 403 || r.Error["code"] != "forbidden" || strings.Contains(fmt.Sprint(r), "globex") {
		t.Fatalf("search over an entry sealed under globex's key = %d %+v, want 403 forbidden, globex unnamed", st, r)
	}
	recs := v.audit("flagged=true&tenant=acme").Records
	last := recs[len(recs)-1]
	if last.Action != "search" || last.Details[audit.DetailKeyOwner] != "globex" || last.Reason != "ciphertext sealed under another tenant's key" {
		t.Fatalf("flagged record = %+v", last)
	}
	waitFor(t, 10*time.Second, "the foreign_key alert", func() bool { return hook.count() > alertsBefore })
	if a := hook.last(); a.Violation != audit.ViolationForeignKey || a.Tenant != "acme" {
		t.Fatalf("alert = %+v, want foreign_key on acme", a)
	}
	// globex is untouched.
	if st, r := search("globex", globex, map[string]any{"text": "refunds"}); st != 200 || len(r.Results) == 0 {
		t.Fatalf("globex's search = %d %+v", st, r)
	}

	// Shred: 410, and nothing of acme's documents on disk.
	if st := v.do("DELETE", "/v1/tenants/acme?confirm=acme", v.srv.AdminToken(), nil, nil); st != 200 {
		t.Fatalf("shred acme = %d", st)
	}
	if st, _ := search("acme", acme, map[string]any{"text": "refunds"}); st != 410 {
		t.Fatalf("search after the shred = %d, want 410", st)
	}
	waitFor(t, 20*time.Second, "acme's texts and embedding gone from every file", func() bool {
		return len(scanBytes(t, dir, [][]byte{[]byte(acmeMarker), needle})) == 0
	})
	if st, r := search("globex", globex, map[string]any{"vector": distinct, "k": 1}); st != 200 || r.Results[0].ID != "doc-distinct" {
		t.Fatalf("globex's search after acme's shred = %d %+v", st, r)
	}
}
