package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/server"
)

// maxEventBytes is the tests' --max-event-bytes: small, so that an
// oversized event is still under the broker's own message size limit.
const maxEventBytes = 64 << 10

// vault is a running in-process vaultd for a test.
type vault struct {
	tb      testing.TB
	dataDir string
	srv     *server.Server
	cancel  context.CancelFunc
	done    chan error
	base    string
}

// mustStart starts vaultd on dataDir with the embedded broker and the API
// on loopback ports chosen by the system. kafkaAddr "" picks a free port.
func mustStart(tb testing.TB, dataDir, kafkaAddr string) *vault {
	tb.Helper()
	return mustStartWith(tb, dataDir, kafkaAddr, nil)
}

// mustStartWith is mustStart with edit applied to the config.
func mustStartWith(tb testing.TB, dataDir, kafkaAddr string, edit func(*server.Config)) *vault {
	tb.Helper()
	if kafkaAddr == "" {
		kafkaAddr = "127.0.0.1:0"
	}
	v := &vault{tb: tb, dataDir: dataDir, done: make(chan error, 1)}
	v.srv = &server.Server{Config: server.Config{DataDir: dataDir, HTTPAddr: "127.0.0.1:0", KafkaAddr: kafkaAddr, MaxEventBytes: maxEventBytes}}
	if edit != nil {
		edit(&v.srv.Config)
	}
	if testing.Verbose() {
		v.srv.Logger = testLogger(tb)
	}
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

// stop shuts the vault down cleanly; it is idempotent.
func (v *vault) stop() {
	if v.cancel == nil {
		return
	}
	v.cancel()
	v.cancel = nil
	if err := <-v.done; err != nil {
		v.tb.Errorf("Run: %v", err)
	}
	if err := v.srv.Close(); err != nil {
		v.tb.Errorf("Close: %v", err)
	}
}

func (v *vault) brokers() []string { return v.srv.Brokers() }

// do sends an API request and decodes the JSON answer into out.
func (v *vault) do(method, path, token string, body any, out any) int {
	v.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, v.base+path, rd)
	if err != nil {
		v.tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			v.tb.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// producerCreds are the Kafka credentials tenants got when created, by
// data dir and tenant id, so that a test publishes with them after a restart
// too.
var producerCreds sync.Map // dataDir + "\x00" + tenant -> kafka.Auth

func (v *vault) createTenant(id string) string {
	v.tb.Helper()
	var out struct {
		ID, Token, Topic string
		Kafka            struct{ User, Password, Topic string }
	}
	if st := v.do("POST", "/v1/tenants", v.srv.AdminToken(), map[string]string{"id": id}, &out); st != 201 {
		v.tb.Fatalf("POST /v1/tenants %s = %d", id, st)
	}
	if out.Token == "" || out.Topic != "tenant."+id+".events" {
		v.tb.Fatalf("POST /v1/tenants %s = %+v", id, out)
	}
	if out.Kafka.User != "tenant-"+id || len(out.Kafka.Password) < 32 || out.Kafka.Topic != out.Topic {
		v.tb.Fatalf("POST /v1/tenants %s: kafka credential %+v, want user tenant-%s with a password", id, out.Kafka, id)
	}
	producerCreds.Store(v.dataDir+"\x00"+id, kafka.Auth{User: out.Kafka.User, Password: out.Kafka.Password})
	return out.Token
}

// producer is the Kafka credential tenant got when it was created.
func (v *vault) producer(tenant string) (kafka.Auth, bool) {
	a, ok := producerCreds.Load(v.dataDir + "\x00" + tenant)
	if !ok {
		return kafka.Auth{}, false
	}
	return a.(kafka.Auth), true
}

// publish sends records to topic as its tenant's producers would, with
// their credential. A topic of no tenant created here is published to by
// the vault's own principal (the embedded broker's superuser), after
// creating it: what only a misconfigured or hostile operator could do.
func (v *vault) publish(topic string, recs ...[2][]byte) {
	v.tb.Helper()
	if t, err := events.TenantFromTopic(topic); err == nil {
		if a, ok := v.producer(string(t)); ok {
			publishAs(v.tb, v.brokers(), a, topic, recs...)
			return
		}
	}
	v.superPublish(topic, recs...)
}

// superPublish creates topic if needed and publishes to it as the vault's
// own principal.
func (v *vault) superPublish(topic string, recs ...[2][]byte) {
	v.tb.Helper()
	adm, err := kafka.NewAdmin(v.brokers(), v.srv.KafkaAuth())
	if err != nil {
		v.tb.Fatal(err)
	}
	defer adm.Close()
	if err := adm.CreateTopic(context.Background(), topic, 1); err != nil {
		v.tb.Fatal(err)
	}
	publishAs(v.tb, v.brokers(), v.srv.KafkaAuth(), topic, recs...)
}

type stateResp struct {
	Stream  string          `json:"stream"`
	Version uint64          `json:"version"`
	Data    json.RawMessage `json:"data"`
	Error   *struct{ Code, Message string }
}

func (v *vault) state(tenant, token, stream string) (int, stateResp) {
	v.tb.Helper()
	var s stateResp
	st := v.do("GET", "/v1/tenants/"+tenant+"/streams/"+url.PathEscape(stream), token, nil, &s)
	return st, s
}

type historyResp struct {
	Events []struct {
		Version uint64          `json:"version"`
		ID      string          `json:"id"`
		Type    string          `json:"type"`
		Data    json.RawMessage `json:"data"`
	} `json:"events"`
}

func (v *vault) history(tenant, token, stream string) historyResp {
	v.tb.Helper()
	var h historyResp
	if st := v.do("GET", "/v1/tenants/"+tenant+"/streams/"+url.PathEscape(stream)+"/events?limit=1000", token, nil, &h); st != 200 {
		v.tb.Fatalf("history %s/%s = %d", tenant, stream, st)
	}
	return h
}

type auditResp struct {
	Records []struct {
		Index     uint64            `json:"index"`
		Principal string            `json:"principal"`
		Tenant    string            `json:"tenant"`
		Action    string            `json:"action"`
		Outcome   string            `json:"outcome"`
		Flagged   bool              `json:"flagged"`
		Reason    string            `json:"reason"`
		KeyIDs    []uint32          `json:"key_ids"`
		Count     int               `json:"count"`
		Details   map[string]string `json:"details"`
	} `json:"records"`
}

func (v *vault) audit(query string) auditResp {
	v.tb.Helper()
	var a auditResp
	if st := v.do("GET", "/v1/audit?limit=1000&"+query, v.srv.AdminToken(), nil, &a); st != 200 {
		v.tb.Fatalf("GET /v1/audit?%s = %d", query, st)
	}
	return a
}

// event builds a structured-mode CloudEvent.
func event(id, stream, typ string, data string) []byte {
	e := events.Event{ID: id, Source: "test", SpecVersion: "1.0", Type: typ, Subject: stream}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	b, err := e.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

// kgoAuth is the franz-go option that logs in as a (SCRAM-SHA-256).
func kgoAuth(a kafka.Auth) kgo.Opt {
	return kgo.SASL(scram.Auth{User: a.User, Pass: a.Password}.AsSha256Mechanism())
}

// publishAs sends records to topic with the vault's kafka-go publisher,
// authenticated as a.
func publishAs(tb testing.TB, brokers []string, a kafka.Auth, topic string, recs ...[2][]byte) {
	tb.Helper()
	if err := tryPublish(brokers, a, topic, recs...); err != nil {
		tb.Fatalf("Publish(%s) as %s: %v", topic, a, err)
	}
}

// tryPublish sends records to topic as a and returns the error.
func tryPublish(brokers []string, a kafka.Auth, topic string, recs ...[2][]byte) error {
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers, Auth: a, WriteTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer pub.Close()
	msgs := make([]*message.Message, len(recs))
	for i, r := range recs {
		msgs[i] = message.NewMessage(fmt.Sprint(i), r[1])
		if len(r[0]) > 0 {
			msgs[i].Metadata.Set(kafka.MetadataKey, string(r[0]))
		}
	}
	return pub.Publish(topic, msgs...)
}

func rec(key string, value []byte) [2][]byte { return [2][]byte{[]byte(key), value} }

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitVersion waits until stream's state has version want.
func (v *vault) waitVersion(tenant, token, stream string, want uint64) stateResp {
	v.tb.Helper()
	var s stateResp
	waitFor(v.tb, 20*time.Second, fmt.Sprintf("%s/%s at version %d", tenant, stream, want), func() bool {
		var st int
		st, s = v.state(tenant, token, stream)
		return st == 200 && s.Version >= want
	})
	if s.Version != want {
		v.tb.Fatalf("%s/%s version = %d, want %d", tenant, stream, s.Version, want)
	}
	return s
}

// scanFor reports every file under root (skipping skip) that holds one of needles.
func scanFor(tb testing.TB, root, skip string, needles []string) []string {
	tb.Helper()
	var hits []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == skip {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, fmt.Sprintf("%s holds %q", path, n))
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("scan %s: %v", root, err)
	}
	return hits
}

type logWriter struct {
	mu sync.Mutex
	tb testing.TB
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
