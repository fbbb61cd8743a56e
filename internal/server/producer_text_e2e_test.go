package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tenantvault/tenantvault/internal/server"
)

// producerMarker is planted in every producer-controlled place; lower
// case letters and digits, so that it also makes a tenant id and a topic.
const producerMarker = "zq7producer"

// lockedBuffer collects a server's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mustStartLogged is mustStart with the server's logs (info and up, the
// default level) in logs. At debug level the Kafka client names the topics
// it consumes, whatever their name.
func mustStartLogged(tb testing.TB, dataDir string, logs *lockedBuffer) *vault {
	tb.Helper()
	v := &vault{tb: tb, dataDir: dataDir, done: make(chan error, 1)}
	v.srv = &server.Server{Config: server.Config{DataDir: dataDir, HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MaxEventBytes: maxEventBytes},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	if err := v.srv.Open(ctx); err != nil {
		cancel()
		tb.Fatalf("Open: %v", err)
	}
	go func() { v.done <- v.srv.Run(ctx) }()
	v.base = "http://" + v.srv.HTTPAddr()
	tb.Cleanup(v.stop)
	waitFor(tb, 10*time.Second, "readyz", func() bool {
		resp, err := http.Get(v.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return v
}

// TestNoProducerTextInAuditLog publishes, over Kafka, events that carry a
// marker in every attribute (structured and binary mode, extensions,
// headers, Kafka keys), each with a defect, and records on topics named
// with it: none of it reaches the audit log's files or the logs, while the
// rejected events are quarantined, sealed, in the tenant's store.
func TestNoProducerTextInAuditLog(t *testing.T) {
	var logs lockedBuffer
	dir := t.TempDir()
	v := mustStartLogged(t, dir, &logs)
	acme := v.createTenant("acme")
	m := producerMarker
	structured := []string{
		`{"specversion":"` + m + `","id":"` + m + `","source":"` + m + `","type":"` + m + `","subject":"` + m + `","data":{"` + m + `":1}}`,
		`{"specversion":"1.0","source":"` + m + `","type":"` + m + `","subject":"` + m + `","dataschema":"` + m + `","` + m + `":"` + m + `"}`,
		`{"specversion":"1.0","id":"` + m + `","source":"` + m + `","type":"` + m + `","subject":"` + m + `","time":"` + m + `"}`,
		`{"specversion":"1.0","id":"` + m + `","source":"` + m + `","type":"` + m + `","subject":"` + m + `","tenant":"` + m + `"}`,
		`{"specversion":"1.0","id":"` + m + `","source":"` + m + `","type":"` + m + `","subject":"` + m + `","tenant":"` + strings.ToUpper(m) + ` x","datacontenttype":"` + m + `"}`,
		`{"specversion":"2.0","id":"` + m + `","source":"` + m + `","type":"` + m + `","subject":"` + m + `","tenant":"` + m + `-co"}`,
		`{"specversion":"1.0","id":"` + m + `","source":"` + m + `","type":"` + m + `","subject":"` + m + `","data_base64":"` + m + `"}`,
		`{"` + m + `":`,
	}
	var recs []*kgo.Record
	for _, s := range structured {
		recs = append(recs, &kgo.Record{Topic: "tenant.acme.events", Value: []byte(s)})
	}
	recs = append(recs,
		&kgo.Record{Topic: "tenant.acme.events", Key: []byte(m + "-key"), Value: event(m, m, m, `{}`)}, // key differs from subject
		&kgo.Record{Topic: "tenant.acme.events", Value: []byte(`{"` + m + `"`), Headers: []kgo.RecordHeader{
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte(m)}, {Key: "ce_source", Value: []byte(m)},
			{Key: "ce_type", Value: []byte(m)}, {Key: "ce_subject", Value: []byte(m)}, {Key: "content-type", Value: []byte("application/json")}}},
		&kgo.Record{Topic: "tenant.acme.events", Value: []byte(`{}`), Headers: []kgo.RecordHeader{
			{Key: "ce_specversion", Value: []byte(m)}, {Key: "ce_tenant", Value: []byte(m)}, {Key: "ce_" + m, Value: []byte(m)}}},
	)
	a, ok := v.producer("acme")
	if !ok {
		t.Fatal("no producer credential of acme")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(v.brokers()...), kgoAuth(a))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cl.Close()
	for _, topic := range []string{"tenant." + m + ".events", "tenant." + m + "-" + strings.ToUpper(m) + ".events"} {
		v.superPublish(topic, rec(m, event(m, m, m, `{}`)), rec(m, event(m+"2", m, m, `{}`)))
	}

	var q struct {
		Quarantine []struct{ Raw []byte }
	}
	waitFor(t, 20*time.Second, "every record quarantined", func() bool {
		v.do("GET", "/v1/tenants/acme/quarantine", acme, nil, &q)
		return len(q.Quarantine) == len(recs)
	})
	waitFor(t, 20*time.Second, "the unknown topics audited", func() bool {
		return len(v.audit("action=ingest.skip").Records) >= 2
	})
	held := 0
	for _, e := range q.Quarantine {
		if bytes.Contains(e.Raw, []byte(m)) {
			held++
		}
	}
	if held != len(recs)-1 { // one binary record's value is "{}"
		t.Errorf("%d quarantine entries hold the record as published, want %d", held, len(recs)-1)
	}
	flagged := 0
	for _, r := range v.audit("action=ingest.reject&tenant=acme").Records {
		if r.Flagged {
			flagged++
		}
	}
	if flagged != 4 {
		t.Errorf("%d flagged ingest.reject records, want 4 (the events naming another tenant)", flagged)
	}
	v.stop() // every file complete

	if hits := scanFor(t, filepath.Join(dir, "audit"), "", []string{m, strings.ToUpper(m)}); len(hits) > 0 {
		t.Errorf("the audit log holds producer text: %q", hits)
	}
	if hits := scanFor(t, dir, filepath.Join(dir, "broker"), []string{m, strings.ToUpper(m)}); len(hits) > 0 {
		t.Errorf("the data dir holds producer text in clear: %q", hits)
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), m) {
		i := strings.Index(strings.ToLower(l), m)
		t.Errorf("the logs hold producer text: …%s…", l[max(0, i-300):min(len(l), i+100)])
	}
}
