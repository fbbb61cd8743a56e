package server_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/server"
)

// kcatRun runs kcat with args for at most d and returns what it printed.
func kcatRun(t *testing.T, kcat string, d time.Duration, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), err
}

// TestKafkaIsolationKcat is the attack of a hostile tenant, made with kcat
// (librdkafka), against the vault's embedded broker: with tenant acme's
// producer credential, and with none, it tries to read acme's and bravo's
// topics in clear, to join the vault's consumer groups, to write into
// bravo's topic and to create topics. Every attempt is refused; acme's
// credential writes to acme's topic and the events are applied; after
// acme's shred its credential no longer logs in.
func TestKafkaIsolationKcat(t *testing.T) {
	kcat := needKcat(t)
	// Ingress records kept on the broker: there is something to steal in
	// every topic, so a consumer must fetch (not just see an empty log).
	v := mustStartWith(t, t.TempDir(), "", func(c *server.Config) { c.IngressRetention = "keep" })
	acmeTok := v.createTenant("acme")
	bravoTok := v.createTenant("bravo")
	acme, _ := v.producer("acme")
	bravo, _ := v.producer("bravo")
	broker := v.brokers()[0]
	const secret = "BRAVOLIVE-123-45-6789"
	// bravo's producers publish something worth stealing, and the vault
	// consumes it (its group exists).
	v.publish("tenant.bravo.events", rec("b-1", event("b1", "b-1", "person.created", `{"ssn":"`+secret+`"}`)))
	v.waitVersion("bravo", bravoTok, "b-1", 1)
	v.publish("tenant.acme.events", rec("a-0", event("a0", "a-0", "note.created", `{"note":"`+secret+`"}`)))
	v.waitVersion("acme", acmeTok, "a-0", 1)

	base := func(a *kafka.Auth) []string {
		args := []string{"-b", broker, "-X", "message.timeout.ms=4000", "-X", "socket.timeout.ms=4000"}
		if a != nil {
			args = append(args, kcatSASL(*a)...)
		}
		return args
	}
	refusals := 0
	refused := func(name, out string, err error, wantAny ...string) {
		t.Helper()
		if strings.Contains(out, secret) {
			t.Errorf("%s: kcat printed bravo's data:\n%s", name, out)
		}
		low := strings.ToLower(out)
		ok := false
		for _, w := range wantAny {
			ok = ok || strings.Contains(low, strings.ToLower(w))
		}
		if !ok {
			t.Errorf("%s: err %v, output does not say it was refused (%q):\n%s", name, err, wantAny, out)
			return
		}
		refusals++
	}

	// Anonymous: the broker refuses a client that does not log in.
	out, err := kcatRun(t, kcat, 15*time.Second, "", append(base(nil), "-C", "-t", "tenant.bravo.events", "-o", "beginning", "-e")...)
	refused("anonymous consume", out, err, "disconnected", "down", "timed out", "transport")
	out, err = kcatRun(t, kcat, 15*time.Second, `{"x":1}`+"\n", append(base(nil), "-P", "-t", "tenant.bravo.events")...)
	if err == nil {
		t.Errorf("anonymous produce: kcat exited 0:\n%s", out)
	}
	refused("anonymous produce", out, err, "disconnected", "down", "timed out", "transport")

	// acme's credential reads no topic, not even its own (both hold a
	// record with the secret). On its own topic, which acme may describe,
	// librdkafka 2.0 reports kfake's TOPIC_AUTHORIZATION_FAILED fetch
	// answer as the end of the partition (kfake answers the error with a
	// high watermark of 0 where Kafka says -1): no record either way.
	for _, topic := range []string{"tenant.acme.events", "tenant.bravo.events"} {
		out, err = kcatRun(t, kcat, 15*time.Second, "", append(base(&acme), "-C", "-t", topic, "-o", "beginning", "-e")...)
		refused("acme consume "+topic, out, err, "authorization failed", "not authorized", "reached end of topic "+topic+" [0] at offset 0")
	}
	// acme's credential cannot join the vault's group of bravo's topic
	// (nor of its own).
	for _, g := range []string{"tenantvault", "tenantvault.tenant.bravo.events", "tenantvault.tenant.acme.events"} {
		out, err = kcatRun(t, kcat, 10*time.Second, "", append(base(&acme), "-G", g, "tenant.bravo.events")...)
		refused("acme join group "+g, out, err, "authorization failed", "not authorized")
	}
	// acme's credential cannot write into bravo's topic.
	out, err = kcatRun(t, kcat, 15*time.Second, string(event("evil-1", "b-1", "person.updated", `{"ssn":"forged"}`))+"\n", append(base(&acme), "-P", "-t", "tenant.bravo.events", "-k", "b-1")...)
	if err == nil {
		t.Errorf("acme produce to bravo's topic: kcat exited 0:\n%s", out)
	}
	refused("acme produce to bravo", out, err, "authorization failed", "not authorized")
	// ... nor create a topic.
	out, err = kcatRun(t, kcat, 15*time.Second, `{"x":1}`+"\n", append(base(&acme), "-P", "-t", "tenant.mallory.events")...)
	if err == nil {
		t.Errorf("acme produce to a new topic: kcat exited 0:\n%s", out)
	}
	refused("acme create topic", out, err, "unknown topic", "authorization failed", "not authorized", "not available")
	// A wrong password does not log in.
	wrong := kafka.Auth{User: acme.User, Password: "not-" + acme.Password}
	out, err = kcatRun(t, kcat, 15*time.Second, `{"x":1}`+"\n", append(base(&wrong), "-P", "-t", "tenant.acme.events")...)
	if err == nil {
		t.Errorf("produce with a wrong password: kcat exited 0:\n%s", out)
	}
	refused("wrong password", out, err, "authentication", "disconnected", "down", "timed out")
	t.Logf("kcat: %d attempts refused", refusals)

	// acme's credential produces to acme's topic, and the vault applies it.
	out, err = kcatRun(t, kcat, 30*time.Second, string(event("a1", "order-1", "order.placed", `{"total":7}`))+"\n", append(base(&acme), "-P", "-t", "tenant.acme.events", "-k", "order-1")...)
	if err != nil {
		t.Fatalf("acme produce to its own topic: %v\n%s", err, out)
	}
	if s := v.waitVersion("acme", acmeTok, "order-1", 1); !strings.Contains(string(s.Data), `"total":7`) {
		t.Fatalf("acme's state = %s", s.Data)
	}
	// The vault still owns its groups: a new bravo event is applied, and
	// nothing the attacks sent was (b-1 is at its one event).
	v.publish("tenant.bravo.events", rec("b-2", event("b2", "b-2", "person.created", `{"n":2}`)))
	v.waitVersion("bravo", bravoTok, "b-2", 1)
	if _, s := v.state("bravo", bravoTok, "b-1"); s.Version != 1 || !strings.Contains(string(s.Data), secret) {
		t.Errorf("bravo's b-1 after the attacks = v%d %s, want v1 untouched", s.Version, s.Data)
	}

	// After acme's shred, its credential no longer logs in.
	if st := v.do("DELETE", "/v1/tenants/acme?confirm=acme", v.srv.AdminToken(), nil, nil); st != 200 {
		t.Fatalf("shred acme = %d", st)
	}
	out, err = kcatRun(t, kcat, 15*time.Second, `{"x":1}`+"\n", append(base(&acme), "-P", "-t", "tenant.acme.events")...)
	if err == nil {
		t.Errorf("produce with acme's credential after its shred: kcat exited 0:\n%s", out)
	}
	refused("acme after shred", out, err, "authentication", "disconnected", "down", "timed out")
	// bravo's credential still works.
	out, err = kcatRun(t, kcat, 30*time.Second, string(event("b3", "b-3", "person.created", `{"n":3}`))+"\n", append(base(&bravo), "-P", "-t", "tenant.bravo.events", "-k", "b-3")...)
	if err != nil {
		t.Fatalf("bravo produce after acme's shred: %v\n%s", err, out)
	}
}

// TestKafkaIsolationFranzGo is the hostile matrix with franz-go as the
// client: each principal (anonymous, acme, bravo) against each operation on
// each tenant's topic and the vault's groups. Only a tenant's producer on
// its own topic (produce, describe) is allowed; every refusal is counted.
func TestKafkaIsolationFranzGo(t *testing.T) {
	// Ingress records kept: every topic holds records, so a consumer that
	// were allowed to read would get some, and one that is not is refused
	// by the fetch itself.
	v := mustStartWith(t, t.TempDir(), "", func(c *server.Config) { c.IngressRetention = "keep" })
	acmeTok := v.createTenant("acme")
	v.createTenant("bravo")
	acme, _ := v.producer("acme")
	bravo, _ := v.producer("bravo")
	v.publish("tenant.bravo.events", rec("b-1", event("b1", "b-1", "person.created", `{"ssn":"BRAVO-SECRET"}`)))
	ctx := context.Background()

	type principal struct {
		name string
		opts []kgo.Opt
	}
	login := func(a kafka.Auth) []kgo.Opt {
		return []kgo.Opt{kgo.SASL(scram.Auth{User: a.User, Pass: a.Password}.AsSha256Mechanism())}
	}
	principals := []principal{{"anonymous", nil}, {"acme", login(acme)}, {"bravo", login(bravo)}}
	type op struct {
		name string
		do   func(ctx context.Context, cl *kgo.Client) error
	}
	produce := func(topic string) func(context.Context, *kgo.Client) error {
		return func(ctx context.Context, cl *kgo.Client) error {
			return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("m-1"), Value: event("m-"+topic, "m-1", "t.x", `{"m":1}`)}).FirstErr()
		}
	}
	consume := func(topic string) func(context.Context, *kgo.Client) error {
		return func(ctx context.Context, cl *kgo.Client) error {
			cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})
			defer cl.RemoveConsumePartitions(map[string][]int32{topic: {0}})
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				for _, fe := range fs.Errors() {
					if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
						return fe.Err
					}
				}
				if fs.NumRecords() > 0 {
					return nil
				}
			}
			return ctx.Err()
		}
	}
	describeGroup := func(g string) func(context.Context, *kgo.Client) error {
		return func(ctx context.Context, cl *kgo.Client) error {
			gs, err := kadm.NewClient(cl).DescribeGroups(ctx, g)
			if err != nil {
				return err
			}
			return gs.Error()
		}
	}
	commit := func(g, topic string) func(context.Context, *kgo.Client) error {
		return func(ctx context.Context, cl *kgo.Client) error {
			os := kadm.Offsets{}
			os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1 << 40, LeaderEpoch: -1})
			r, err := kadm.NewClient(cl).CommitOffsets(ctx, g, os)
			if err != nil {
				return err
			}
			return r.Error()
		}
	}
	createTopic := func(topic string) func(context.Context, *kgo.Client) error {
		return func(ctx context.Context, cl *kgo.Client) error {
			r, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic)
			if err != nil {
				return err
			}
			return r.Err
		}
	}
	ops := []op{
		{"produce acme", produce("tenant.acme.events")},
		{"produce bravo", produce("tenant.bravo.events")},
		{"consume acme", consume("tenant.acme.events")},
		{"consume bravo", consume("tenant.bravo.events")},
		{"describe the vault's group", describeGroup("tenantvault")},
		{"commit in the vault's group", commit("tenantvault", "tenant.bravo.events")},
		{"describe the vault's legacy group of bravo", describeGroup("tenantvault.tenant.bravo.events")},
		{"create a topic", createTopic("tenant.mallory.events")},
		// Mistyped names of acme's topic: only the vault creates topics,
		// so nothing can be left on them in plaintext.
		{"create tenant_acme_events", createTopic("tenant_acme_events")},
		{"produce tenant_acme_events (auto-create)", produce("tenant_acme_events")},
		{"produce tenant.acme.event (auto-create)", produce("tenant.acme.event")},
		{"consume vault.alerts", consume("vault.alerts")},
	}
	allowed := map[string]bool{"acme/produce acme": true, "bravo/produce bravo": true}
	refused, cells := 0, 0
	for _, p := range principals {
		opts := append([]kgo.Opt{kgo.SeedBrokers(v.brokers()...), kgo.RequestRetries(1), kgo.RecordRetries(2), kgo.RetryTimeout(2 * time.Second)}, p.opts...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ops {
			cells++
			key := p.name + "/" + o.name
			d := 6 * time.Second
			if p.opts == nil {
				d = 2 * time.Second // refused at the first request: no login
			}
			octx, cancel := context.WithTimeout(ctx, d)
			err := o.do(octx, cl)
			cancel()
			switch {
			case allowed[key] && err != nil:
				t.Errorf("%s: %v, want allowed", key, err)
			case !allowed[key] && err == nil:
				t.Errorf("%s: allowed, want refused", key)
			case !allowed[key]:
				refused++
				// A logged-in principal must be refused by an ACL (a topic
				// it may not describe is also unknown to it), not by a
				// timeout that an empty topic would give as well.
				if p.name != "anonymous" && !errors.Is(err, kerr.TopicAuthorizationFailed) && !errors.Is(err, kerr.GroupAuthorizationFailed) &&
					!errors.Is(err, kerr.ClusterAuthorizationFailed) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
					t.Errorf("%s: refused with %v, want an authorization error", key, err)
				}
			}
		}
		cl.Close()
	}
	adm, err := kafka.NewAdmin(v.brokers(), v.srv.KafkaAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"tenant.mallory.events", "tenant_acme_events", "tenant.acme.event"} {
		if slices.Contains(topics, topic) {
			t.Errorf("topic %s exists after the hostile matrix: a client other than the vault created it", topic)
		}
	}
	t.Logf("franz-go hostile matrix: %d principals x %d operations = %d cells, %d refused, %d allowed", len(principals), len(ops), cells, refused, len(allowed))
	if refused != cells-len(allowed) {
		t.Errorf("refused %d of %d cells, want %d", refused, cells, cells-len(allowed))
	}
	// acme's allowed produce was applied; the hostile commit did not make
	// the vault skip bravo's next event.
	v.waitVersion("acme", acmeTok, "m-1", 1)
	v.publish("tenant.bravo.events", rec("b-2", event("b2", "b-2", "person.created", `{"n":2}`)))
	waitFor(t, 20*time.Second, "bravo's next event applied", func() bool {
		for _, r := range v.audit("tenant=bravo&action=ingest.batch").Records {
			if r.Details["last_offset"] == "2" || r.Details["first_offset"] == "2" {
				return true
			}
		}
		return false
	})
}

// TestForeignTopicQuarantined: a tenant topic deleted and created again
// past the vault (on a real cluster, by anyone allowed to create topics)
// has another topic id. Its records are quarantined and flagged
// (foreign_topic), never applied, while the vault runs and after a restart.
func TestForeignTopicQuarantined(t *testing.T) {
	dir := t.TempDir()
	v := mustStart(t, dir, "")
	tok := v.createTenant("acme")
	v.publish("tenant.acme.events", rec("o-1", event("a1", "o-1", "order.placed", `{"n":1}`)))
	v.waitVersion("acme", tok, "o-1", 1)

	adm, err := kafka.NewAdmin(v.brokers(), v.srv.KafkaAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	before, err := adm.TopicID(ctx, "tenant.acme.events")
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.DeleteTopic(ctx, "tenant.acme.events"); err != nil {
		t.Fatal(err)
	}
	// acme's producers keep writing (their ACL names the topic): into the
	// impostor topic.
	v.superPublish("tenant.acme.events",
		rec("o-1", event("f1", "o-1", "order.updated", `{"n":666}`)),
		rec("o-2", event("f2", "o-2", "order.placed", `{"n":667}`)))
	after, err := adm.TopicID(ctx, "tenant.acme.events")
	if err != nil || after == before {
		t.Fatalf("topic id after re-creation = %q (%v), before %q", after, err, before)
	}
	var q struct {
		Quarantine []struct{ Code, Reason string }
	}
	waitFor(t, 30*time.Second, "the impostor topic's records quarantined", func() bool {
		v.do("GET", "/v1/tenants/acme/quarantine", tok, nil, &q)
		return len(q.Quarantine) == 2
	})
	for _, e := range q.Quarantine {
		if e.Reason != "topic not created by the vault" {
			t.Errorf("quarantine reason = %q", e.Reason)
		}
	}
	if _, s := v.state("acme", tok, "o-1"); !strings.Contains(string(s.Data), `"n":1`) || s.Version != 1 {
		t.Errorf("o-1 after the impostor's records = v%d %s, want v1 {\"n\":1}", s.Version, s.Data)
	}
	if st, _ := v.state("acme", tok, "o-2"); st != 404 {
		t.Errorf("o-2 = %d, want 404 (never applied)", st)
	}
	flagged := func() int {
		n := 0
		for _, r := range v.audit("tenant=acme&flagged=true").Records {
			if r.Details[audit.DetailTopicID] == after && r.Details[audit.DetailTenantTopicID] == before && r.Reason == "tenant topic not created by the vault" {
				n++
			}
		}
		return n
	}
	if n := flagged(); n == 0 {
		t.Fatal("no flagged audit record names the impostor topic")
	}
	// A restart checks the topic again, and says so in the audit log.
	v.stop()
	v = mustStart(t, dir, "")
	waitFor(t, 10*time.Second, "the start-up topic check flagged", func() bool {
		for _, r := range v.audit("tenant=acme&action=tenant.topic_check&flagged=true").Records {
			if r.Details[audit.DetailTopicID] == after {
				return true
			}
		}
		return false
	})
}

// TestBrokerDataLost: the embedded broker's data is gone (its directory
// replaced) while the vault's is not. At start the vault creates the
// tenant's topic again and consumes it from its start — the store's offsets
// of the lost topic are forgotten, so events published afterwards at the
// same offsets are all applied, and an event id applied before is still a
// duplicate — and says so in the audit log. The broker lost the tenant's
// producer principal too: the vault warns, and a rotation gives it a new
// one.
func TestBrokerDataLost(t *testing.T) {
	dir := t.TempDir()
	v := mustStart(t, dir, "")
	tok := v.createTenant("acme")
	v.publish("tenant.acme.events",
		rec("s-1", event("a1", "s-1", "t.set", `{"a":1}`)),
		rec("s-2", event("a2", "s-2", "t.set", `{"b":1}`)),
		rec("s-3", event("a3", "s-3", "t.set", `{"c":1}`)))
	v.waitVersion("acme", tok, "s-3", 1)
	v.stop()
	if err := os.RemoveAll(filepath.Join(dir, "broker")); err != nil {
		t.Fatal(err)
	}

	v = mustStart(t, dir, "")
	var rotated struct {
		Kafka struct{ User, Password string }
	}
	if st := v.do("POST", "/v1/tenants/acme/kafka-credential/rotate", v.srv.AdminToken(), nil, &rotated); st != 200 || rotated.Kafka.Password == "" {
		t.Fatalf("rotate = %d %+v", st, rotated)
	}
	a := kafka.Auth{User: rotated.Kafka.User, Password: rotated.Kafka.Password}
	publishAs(t, v.brokers(), a, "tenant.acme.events",
		rec("s-1", event("a1", "s-1", "t.set", `{"a":"again"}`)), // offset 0: a redelivered id
		rec("s-4", event("a4", "s-4", "t.set", `{"d":1}`)),       // offset 1
		rec("s-5", event("a5", "s-5", "t.set", `{"e":1}`)),       // offset 2
		rec("s-6", event("a6", "s-6", "t.set", `{"f":1}`)))       // offset 3: past the old end
	for _, s := range []string{"s-4", "s-5", "s-6"} {
		v.waitVersion("acme", tok, s, 1)
	}
	if _, s := v.state("acme", tok, "s-1"); s.Version != 1 || !strings.Contains(string(s.Data), `"a":1`) {
		t.Errorf("s-1 = v%d %s, want v1 {\"a\":1}: a1 applied once", s.Version, s.Data)
	}
	found := false
	for _, r := range v.audit("tenant=acme&action=tenant.topic_check").Records {
		if r.Outcome == "ok" && !r.Flagged && r.Details["previous_topic_id"] != "" {
			found = true
		}
	}
	if !found {
		t.Error("no audit record of the topic created again")
	}
}
