package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEndToEnd drives the whole path with real components: kafka-go over
// TCP to the embedded kfake broker, Tink, Badger on disk, the HTTP API.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	v := mustStart(t, dir, "")
	acme := v.createTenant("acme")
	globex := v.createTenant("globex")

	// Markers that must never reach the disk in clear.
	acmeSecret, globexSecret := "acme-secret-marker-7f3a", "globex-secret-marker-91c2"
	acmeStream, globexStream := "acme-stream-id-5b1e", "globex-stream-id-c04d"

	v.publish("tenant.acme.events",
		rec(acmeStream, event("a1", acmeStream, "order.placed", `{"total":12,"note":"`+acmeSecret+`"}`)),
		rec(acmeStream, event("a2", acmeStream, "order.paid", `{"paid":true}`)),
		rec(acmeStream, event("a2", acmeStream, "order.paid", `{"paid":"again"}`)), // same id: applied once
		rec("order-2", event("a3", "order-2", "order.placed", `{"total":1}`)),
		rec("order-2", event("a4", "order-2", "order.deleted", ``)),
	)
	v.publish("tenant.globex.events",
		rec(globexStream, event("g1", globexStream, "invoice.sent", `{"amount":99,"memo":"`+globexSecret+`"}`)),
	)

	s := v.waitVersion("acme", acme, acmeStream, 2)
	var state map[string]any
	if err := json.Unmarshal(s.Data, &state); err != nil {
		t.Fatal(err)
	}
	if state["total"] != 12.0 || state["paid"] != true || state["note"] != acmeSecret {
		t.Fatalf("state of %s = %s, want merge of both events", acmeStream, s.Data)
	}
	h := v.history("acme", acme, acmeStream)
	if len(h.Events) != 2 || h.Events[0].ID != "a1" || h.Events[1].ID != "a2" || h.Events[1].Version != 2 {
		t.Fatalf("history of %s = %+v, want a1, a2", acmeStream, h.Events)
	}
	v.waitVersion("globex", globex, globexStream, 1)

	// A deleted stream: history kept, state gone.
	waitFor(t, 10*time.Second, "order-2 deleted", func() bool {
		st, _ := v.state("acme", acme, "order-2")
		return st == 404
	})
	if h := v.history("acme", acme, "order-2"); len(h.Events) != 2 {
		t.Fatalf("history of deleted order-2 = %d events, want 2", len(h.Events))
	}

	t.Run("isolation", func(t *testing.T) {
		for _, c := range []struct{ tenant, token, stream, tokenTenant string }{
			{"globex", acme, globexStream, "acme"},
			{"acme", globex, acmeStream, "globex"},
		} {
			before := len(v.audit("flagged=true").Records)
			st, body := v.state(c.tenant, c.token, c.stream)
			if st != 403 || body.Data != nil || body.Error == nil || body.Error.Code != "forbidden" {
				t.Fatalf("GET %s with %s's token = %d %+v, want 403 forbidden", c.tenant, c.tokenTenant, st, body)
			}
			for _, path := range []string{"/streams", "/streams/" + c.stream + "/events", "/quarantine"} {
				var raw map[string]any
				if st := v.do("GET", "/v1/tenants/"+c.tenant+path, c.token, nil, &raw); st != 403 {
					t.Fatalf("GET %s%s with %s's token = %d, want 403", c.tenant, path, c.tokenTenant, st)
				}
			}
			flagged := v.audit("flagged=true").Records
			if got := len(flagged) - before; got != 4 {
				t.Fatalf("flagged audit records after 4 crossings = %d, want 4", got)
			}
			last := flagged[len(flagged)-1]
			if last.Tenant != c.tenant || last.Principal != "tenant:"+c.tokenTenant || last.Outcome != "denied" || !strings.Contains(last.Reason, "token tenant") {
				t.Fatalf("flagged record = %+v", last)
			}
		}
	})

	t.Run("credentials", func(t *testing.T) {
		for _, c := range []struct {
			token string
			want  int
		}{
			{"", 401}, {"tvt_not-a-token", 401}, {v.srv.AdminToken(), 403}, {acme, 200},
		} {
			var raw map[string]any
			if st := v.do("GET", "/v1/tenants/acme/streams", c.token, nil, &raw); st != c.want {
				t.Errorf("GET /v1/tenants/acme/streams with token %.8q = %d, want %d", c.token, st, c.want)
			}
			if c.want >= 400 {
				e, _ := raw["error"].(map[string]any)
				if e == nil || e["code"] == "" || e["message"] == "" {
					t.Errorf("error body = %v, want {error:{code,message}}", raw)
				}
			}
		}
		var raw map[string]any
		if st := v.do("GET", "/v1/tenants/nope/streams", acme, nil, &raw); st != 403 {
			t.Errorf("acme token on unknown tenant = %d, want 403 (existence not revealed)", st)
		}
		if st := v.do("GET", "/v1/tenants", acme, nil, &raw); st != 403 {
			t.Errorf("tenant token on admin endpoint = %d, want 403", st)
		}
		if st := v.do("GET", "/v1/tenants/acme/streams/no-such-stream", acme, nil, &raw); st != 404 {
			t.Errorf("unknown stream = %d, want 404", st)
		}
	})

	t.Run("hostile tenant ids", func(t *testing.T) {
		for _, id := range []string{"../x", "A", "acmé", strings.Repeat("a", 64), "", "a", "-x", "a/b", "a.b"} {
			var raw map[string]any
			if st := v.do("POST", "/v1/tenants", v.srv.AdminToken(), map[string]string{"id": id}, &raw); st != 400 {
				t.Errorf("POST /v1/tenants %q = %d, want 400", id, st)
			}
		}
		var list struct{ Tenants []struct{ ID string } }
		v.do("GET", "/v1/tenants", v.srv.AdminToken(), nil, &list)
		if len(list.Tenants) != 2 {
			t.Fatalf("tenants after hostile creates = %+v, want acme and globex", list.Tenants)
		}
		if st := v.do("POST", "/v1/tenants", v.srv.AdminToken(), map[string]string{"id": "acme"}, nil); st != 409 {
			t.Errorf("re-create acme = %d, want 409", st)
		}
		if st := v.do("POST", "/v1/tenants", acme, map[string]string{"id": "evil"}, nil); st != 403 {
			t.Errorf("create with tenant token = %d, want 403", st)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		big := `{"blob":"` + strings.Repeat("x", maxEventBytes) + `"}`
		v.publish("tenant.acme.events",
			rec("", []byte(`{not json`)),
			rec("s", event("", "s", "t", `{}`)),  // missing id
			rec("", event("b2", "", "t", `{}`)),  // missing subject
			rec("s", event("b3", "s", "", `{}`)), // missing type
			rec("s", event("b4", "s", "t", big)), // too large
			rec("s", []byte(strings.Replace(string(event("b5", "s", "t", `{}`)), `"id"`, `"tenant":"globex","id"`, 1))), // wrong tenant
			rec(acmeStream, event("a5", acmeStream, "order.shipped", `{"shipped":true}`)),                               // good, after the bad ones
		)
		v.publish("tenant.unknown-tenant.events", rec("s", event("u1", "s", "t", `{}`)))
		v.publish("tenant.BAD_ID.events", rec("s", event("u2", "s", "t", `{}`)))

		v.waitVersion("acme", acme, acmeStream, 3) // ingest did not stall
		var q struct {
			Quarantine []struct {
				Code, Reason string
				Raw          []byte
			}
		}
		waitFor(t, 10*time.Second, "6 quarantined", func() bool {
			v.do("GET", "/v1/tenants/acme/quarantine", acme, nil, &q)
			return len(q.Quarantine) == 6
		})
		codes := map[string]int{}
		for _, e := range q.Quarantine {
			codes[e.Code]++
			if e.Reason == "" || len(e.Raw) == 0 {
				t.Errorf("quarantined entry without reason or evidence: %+v", e)
			}
		}
		if codes["invalid"] != 4 || codes["too_large"] != 1 || codes["forbidden"] != 1 {
			t.Fatalf("quarantine codes = %v, want 4 invalid, 1 too_large, 1 forbidden", codes)
		}
		rejects := v.audit("action=ingest.reject&tenant=acme").Records
		if len(rejects) != 6 {
			t.Fatalf("ingest.reject audit records = %d, want 6", len(rejects))
		}
		nflag := 0
		for _, r := range rejects {
			if r.Flagged {
				nflag++
				if !strings.Contains(r.Reason, "tenant") {
					t.Errorf("flagged reject reason = %q", r.Reason)
				}
			}
		}
		if nflag != 1 {
			t.Fatalf("flagged rejects = %d, want 1 (the wrong-tenant event)", nflag)
		}
		waitFor(t, 10*time.Second, "unknown tenant topics audited", func() bool {
			return len(v.audit("action=ingest.skip").Records) >= 2
		})
		// The globex stream was not touched by the event claiming globex.
		if _, s := v.state("globex", globex, globexStream); s.Version != 1 {
			t.Fatalf("globex stream version = %d after a cross-tenant event, want 1", s.Version)
		}
	})

	// Every read and write so far was audited with the key ids it used.
	okReads := 0
	for _, r := range v.audit("action=stream.read&tenant=acme").Records {
		if r.Outcome == "ok" {
			okReads++
			if len(r.KeyIDs) == 0 {
				t.Fatalf("stream.read audit record %+v has no key ids", r)
			}
		}
	}
	if okReads == 0 {
		t.Fatal("no stream.read audit record")
	}
	if n := len(v.audit("action=ingest.batch&tenant=globex").Records); n == 0 {
		t.Fatalf("no ingest.batch audit record for globex")
	}
	outcomes := map[string]int{}
	for _, r := range v.audit("action=tenant.create").Records {
		outcomes[r.Outcome]++
	}
	// 2 created; 9 hostile ids and 1 duplicate rejected; 1 tenant token denied.
	if outcomes["ok"] != 2 || outcomes["rejected"] != 10 || outcomes["denied"] != 1 {
		t.Fatalf("tenant.create audit outcomes = %v, want ok 2, rejected 10, denied 1", outcomes)
	}

	// Restart on the same data dir: nothing lost, nothing applied twice.
	v.stop()
	v = mustStart(t, dir, "")
	s = v.waitVersion("acme", acme, acmeStream, 3)
	if h := v.history("acme", acme, acmeStream); len(h.Events) != 3 {
		t.Fatalf("history after restart = %d events, want 3", len(h.Events))
	}
	// A redelivered event id after restart is still applied once; new events still flow.
	v.publish("tenant.acme.events",
		rec(acmeStream, event("a1", acmeStream, "order.placed", `{"total":999}`)),
		rec(acmeStream, event("a6", acmeStream, "order.closed", `{"closed":true}`)),
	)
	s = v.waitVersion("acme", acme, acmeStream, 4)
	if err := json.Unmarshal(s.Data, &state); err != nil || state["total"] != 12.0 || state["closed"] != true {
		t.Fatalf("state after redelivery = %s, want total 12 and closed", s.Data)
	}
	var q struct{ Quarantine []any }
	v.do("GET", "/v1/tenants/acme/quarantine", acme, nil, &q)
	if len(q.Quarantine) != 6 {
		t.Fatalf("quarantine after restart = %d, want 6", len(q.Quarantine))
	}
	v.stop()

	// Nothing on disk in clear: not in the stores, keys, audit log or
	// registry; and, with ingress retention (the default), not even in the
	// broker's ingress records once they are sealed.
	needles := []string{acmeSecret, globexSecret, acmeStream, globexStream, `"total":12`, `"paid":true`}
	if hits := scanFor(t, dir, dir+"/broker", needles); len(hits) > 0 {
		t.Fatalf("plaintext found on disk:\n%s", strings.Join(hits, "\n"))
	}
	v = mustStart(t, dir, "")
	waitFor(t, 20*time.Second, "ingress records deleted from the broker", func() bool {
		return len(scanFor(t, dir+"/broker", "", needles)) == 0
	})
	v.stop()
	// The scan itself can find things.
	probe := t.TempDir()
	os.WriteFile(filepath.Join(probe, "f"), []byte("x"+acmeSecret+"x"), 0o600)
	if hits := scanFor(t, probe, "", []string{acmeSecret}); len(hits) != 1 {
		t.Fatalf("scan of a file holding the marker found %v: the scan is broken", hits)
	}
}
