package server_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tenantvault/tenantvault/internal/kafka"
)

// kcatSASL are kcat's (librdkafka's) options to log in as a.
func kcatSASL(a kafka.Auth) []string {
	return []string{"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-256",
		"-X", "sasl.username=" + a.User, "-X", "sasl.password=" + a.Password}
}

// needKcat returns kcat's path, or skips (fails under CI=true).
func needKcat(t *testing.T) string {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat is required under CI=true (scripts/test.sh installs it): %v", err)
		}
		t.Skip("kcat not installed; scripts/test.sh installs it")
	}
	return kcat
}

// TestKcatPublish publishes with kcat (librdkafka), a client that shares no
// code with the vault, in structured and in binary CloudEvents mode.
func TestKcatPublish(t *testing.T) {
	kcat := needKcat(t)
	v := mustStart(t, t.TempDir(), "")
	tok := v.createTenant("kc-tenant")

	run := func(stdin string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a, _ := v.producer("kc-tenant")
		cmd := exec.CommandContext(ctx, kcat, append(append([]string{"-P", "-b", v.brokers()[0], "-t", "tenant.kc-tenant.events"}, kcatSASL(a)...), args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, out.String())
		}
	}
	// Structured mode: the whole CloudEvent is the value; key = stream id.
	run(string(event("k1", "order-k", "order.placed", `{"total":5}`))+"\n", "-k", "order-k")
	// Binary mode: attributes in ce_* headers, data is the value.
	run(`{"shipped":true}`+"\n", "-k", "order-k",
		"-H", "ce_specversion=1.0", "-H", "ce_id=k2", "-H", "ce_source=kcat", "-H", "ce_type=order.shipped",
		"-H", "ce_subject=order-k", "-H", "content-type=application/json")

	s := v.waitVersion("kc-tenant", tok, "order-k", 2)
	if !strings.Contains(string(s.Data), `"total":5`) || !strings.Contains(string(s.Data), `"shipped":true`) {
		t.Fatalf("state = %s, want both kcat events merged", s.Data)
	}
}

// TestFranzGoPublish publishes with franz-go's kgo, a second independent
// Kafka client implementation.
func TestFranzGoPublish(t *testing.T) {
	v := mustStart(t, t.TempDir(), "")
	tok := v.createTenant("fg-tenant")
	a, _ := v.producer("fg-tenant")
	cl, err := kgo.NewClient(kgo.SeedBrokers(v.brokers()...), kgo.SASL(scram.Auth{User: a.User, Pass: a.Password}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx,
		&kgo.Record{Topic: "tenant.fg-tenant.events", Key: []byte("cart-1"), Value: event("f1", "cart-1", "cart.created", `{"items":[]}`)},
		&kgo.Record{Topic: "tenant.fg-tenant.events", Key: []byte("cart-1"), Value: event("f2", "cart-1", "cart.updated", `{"items":["x"],"n":1}`)},
	)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	s := v.waitVersion("fg-tenant", tok, "cart-1", 2)
	if string(s.Data) != `{"items":["x"],"n":1}` {
		t.Fatalf("state = %s", s.Data)
	}
}
