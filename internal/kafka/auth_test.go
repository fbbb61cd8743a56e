package kafka

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	testSuperUser = "tenantvault"
	testSuperPass = "super-secret-password-0123456789"
)

// authBroker is an authenticating embedded broker with the vault's
// superuser, and an Admin logged in as it.
type authBroker struct {
	e     *Embedded
	admin *Admin
	super Auth
}

func mustStartAuthBroker(tb testing.TB, dataDir string) *authBroker {
	tb.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dataDir, Logger: testLogger(),
		Auth: &EmbeddedAuth{SuperUser: testSuperUser, SuperPassword: testSuperPass}})
	if err != nil {
		tb.Fatalf("StartEmbedded: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	super := Auth{User: testSuperUser, Password: testSuperPass}
	a, err := NewAdmin([]string{e.Addr()}, super)
	if err != nil {
		tb.Fatalf("NewAdmin: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return &authBroker{e: e, admin: a, super: super}
}

// mustAddProducer creates topic and user with password, allowed to produce
// to topic only.
func (b *authBroker) mustAddProducer(tb testing.TB, user, password, topic string) {
	tb.Helper()
	ctx := context.Background()
	if err := b.admin.CreateTopic(ctx, topic, 1); err != nil {
		tb.Fatal(err)
	}
	if err := b.admin.SetSCRAM(ctx, user, password); err != nil {
		tb.Fatal(err)
	}
	if err := b.admin.AllowProduce(ctx, user, topic); err != nil {
		tb.Fatal(err)
	}
}

// client is a franz-go client of the broker as a (anonymous without User).
func (b *authBroker) client(tb testing.TB, a Auth, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(b.e.Addr()), kgo.RequestRetries(0), kgo.RecordRetries(1),
		kgo.RetryTimeout(time.Second), kgo.MetadataMinAge(10 * time.Millisecond)}, a.kgoOpts()...)
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

func TestEmbeddedAuthProduceOwnTopicOnly(t *testing.T) {
	b := mustStartAuthBroker(t, "")
	b.mustAddProducer(t, "tenant-acme", "acme-password-0123456789", "tenant.acme.events")
	b.mustAddProducer(t, "tenant-bravo", "bravo-password-0123456789", "tenant.bravo.events")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	acme := b.client(t, Auth{User: "tenant-acme", Password: "acme-password-0123456789", Mechanism: SCRAMSHA512})
	if err := acme.ProduceSync(ctx, &kgo.Record{Topic: "tenant.acme.events", Key: []byte("s"), Value: []byte("{}")}).FirstErr(); err != nil {
		t.Fatalf("acme produce to its own topic: %v", err)
	}
	err := acme.ProduceSync(ctx, &kgo.Record{Topic: "tenant.bravo.events", Value: []byte("{}")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("acme produce to bravo's topic: %v, want %v", err, kerr.TopicAuthorizationFailed)
	}

	// The superuser reads what acme wrote.
	sup := b.client(t, b.super, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"tenant.acme.events": {0: kgo.NewOffset().AtStart()}}))
	fs := sup.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	if n := fs.NumRecords(); n != 1 {
		t.Fatalf("superuser read %d records of acme's topic, want 1", n)
	}
}

func TestEmbeddedAuthWrongPasswordRefused(t *testing.T) {
	b := mustStartAuthBroker(t, "")
	b.mustAddProducer(t, "tenant-acme", "acme-password-0123456789", "tenant.acme.events")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range []Auth{
		{User: "tenant-acme", Password: "not-the-password"},
		{User: "nobody", Password: "whatever-password"},
		{User: testSuperUser, Password: "guessed-superuser-password"},
	} {
		cl := b.client(t, a)
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: "tenant.acme.events", Value: []byte("{}")}).FirstErr()
		// kfake closes the connection of a failed SASL exchange.
		if err == nil {
			t.Errorf("produce as %s with a wrong password: allowed, want refused", a)
		}
	}
}

// TestEmbeddedAuthHostileMatrix tries every principal on every operation
// that could read, write or disturb a tenant's data, and counts the
// refusals. Only the superuser (the vault) and a tenant's producer on its
// own topic (write, describe) are allowed anything.
func TestEmbeddedAuthHostileMatrix(t *testing.T) {
	b := mustStartAuthBroker(t, "")
	const (
		topicA = "tenant.acme.events"
		topicB = "tenant.bravo.events"
		groupA = "tenantvault.tenant.acme.events"
		groupB = "tenantvault.tenant.bravo.events"
	)
	b.mustAddProducer(t, "tenant-acme", "acme-password-0123456789", topicA)
	b.mustAddProducer(t, "tenant-bravo", "bravo-password-0123456789", topicB)
	ctx := context.Background()

	type principal struct {
		name string
		auth Auth
	}
	principals := []principal{
		{"anonymous", Auth{}},
		{"tenant-acme", Auth{User: "tenant-acme", Password: "acme-password-0123456789"}},
		{"tenant-bravo", Auth{User: "tenant-bravo", Password: "bravo-password-0123456789", Mechanism: SCRAMSHA512}},
	}
	type op struct {
		name string
		do   func(ctx context.Context, cl *kgo.Client) error
	}
	ops := []op{
		{"produce " + topicA, produceOp(topicA)},
		{"produce " + topicB, produceOp(topicB)},
		{"fetch " + topicA, fetchOp(topicA)},
		{"fetch " + topicB, fetchOp(topicB)},
		{"list offsets " + topicA, listOffsetsOp(topicA)},
		{"list offsets " + topicB, listOffsetsOp(topicB)},
		{"describe " + topicA, describeTopicOp(topicA)},
		{"describe " + topicB, describeTopicOp(topicB)},
		{"join group " + groupA, joinGroupOp(groupA, topicA)},
		{"join group " + groupB, joinGroupOp(groupB, topicB)},
		{"describe group " + groupA, describeGroupOp(groupA)},
		{"commit offset in " + groupA, commitOp(groupA, topicA)},
		{"create topic tenant.mallory.events", createTopicOp("tenant.mallory.events")},
		{"auto-create topic tenant.mallory2.events", autoCreateOp("tenant.mallory2.events")},
		{"delete records of " + topicA, deleteRecordsOp(topicA)},
		{"delete topic " + topicB, deleteTopicOp(topicB)},
		{"alter SCRAM of tenant-bravo", alterSCRAMOp("tenant-bravo")},
		{"create ACL read " + topicB, createACLOp(topicB)},
		{"delete ACLs", deleteACLsOp()},
		{"describe ACLs", describeACLsOp()},
		{"describe SCRAM users", describeSCRAMOp()},
	}
	// allowed is what must succeed; every other cell must be refused.
	allowed := map[string]bool{
		"tenant-acme/produce " + topicA:       true,
		"tenant-acme/describe " + topicA:      true,
		"tenant-acme/list offsets " + topicA:  true, // DESCRIBE: offsets, no records
		"tenant-bravo/produce " + topicB:      true,
		"tenant-bravo/describe " + topicB:     true,
		"tenant-bravo/list offsets " + topicB: true,
	}
	refused, cells := 0, 0
	for _, p := range principals {
		cl := b.client(t, p.auth)
		for _, o := range ops {
			cells++
			key := p.name + "/" + o.name
			t.Run(key, func(t *testing.T) {
				octx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				err := o.do(octx, cl)
				switch {
				case allowed[key] && err != nil:
					t.Errorf("%s: %v, want allowed", key, err)
				case !allowed[key] && err == nil:
					t.Errorf("%s: allowed, want refused", key)
				case !allowed[key]:
					refused++
				}
			})
		}
	}
	t.Logf("hostile matrix: %d principals x %d operations = %d cells, %d refused, %d allowed", len(principals), len(ops), cells, refused, len(allowed))
	if want := cells - len(allowed); refused != want {
		t.Errorf("refused %d cells, want %d", refused, want)
	}
	// Nothing the hostile principals tried changed the broker.
	topics, err := b.admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(topics, ","); got != topicA+","+topicB {
		t.Errorf("topics after the matrix: %s, want %s,%s", got, topicA, topicB)
	}
	starts, err := b.admin.LogStartOffsets(ctx, topicA)
	if err != nil || starts[0] != 0 {
		t.Errorf("log start of %s after the matrix: %v, %v; want 0 (nothing deleted)", topicA, starts, err)
	}
	// The vault still consumes in its group.
	sup := b.client(t, b.super)
	if err := joinGroupOp(groupA, topicA)(ctx, sup); err != nil {
		t.Errorf("superuser join group %s: %v", groupA, err)
	}
}

func produceOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("s"), Value: []byte(`{"x":1}`)}).FirstErr()
	}
}

// codeErr turns a Kafka error code into an error.
func codeErr(code int16) error { return kerr.ErrorForCode(code) }

func fetchOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12 // by topic name
		req.ReplicaID = -1
		req.MaxWaitMillis = 10
		req.MaxBytes = 1 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = 0
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		if err := codeErr(resp.ErrorCode); err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := codeErr(p.ErrorCode); err != nil {
					return err
				}
				if len(p.RecordBatches) == 0 {
					return errors.New("no records")
				}
			}
		}
		return nil
	}
}

func listOffsetsOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := codeErr(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func describeTopicOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			if err := codeErr(t.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func autoCreateOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrMetadataRequest()
		req.AllowAutoTopicCreation = true
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			if err := codeErr(t.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func joinGroupOp(group, topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version = 4
		req.Group = group
		req.SessionTimeoutMillis = 6000
		req.RebalanceTimeoutMillis = 6000
		req.ProtocolType = "consumer"
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Topics = []string{topic}
		proto := kmsg.NewJoinGroupRequestProtocol()
		proto.Name = "range"
		proto.Metadata = meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, proto)
		for range 3 { // v4: the first join answers MEMBER_ID_REQUIRED
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				return err
			}
			err = codeErr(resp.ErrorCode)
			if errors.Is(err, kerr.MemberIDRequired) {
				req.MemberID = resp.MemberID
				continue
			}
			if err == nil {
				leave := kmsg.NewPtrLeaveGroupRequest()
				leave.Group, leave.MemberID = group, resp.MemberID
				_, _ = leave.RequestWith(ctx, cl)
			}
			return err
		}
		return errors.New("join group: no answer")
	}
}

func describeGroupOp(group string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, g := range resp.Groups {
			if err := codeErr(g.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func commitOp(group, topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version = 2
		req.Group = group
		req.Generation = -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 1 << 40 // an intruder's commit would make the vault skip
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := codeErr(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func createTopicOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, -1
		req.Topics = append(req.Topics, rt)
		req.TimeoutMillis = 5000
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			if err := codeErr(t.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func deleteRecordsOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrDeleteRecordsRequest()
		req.TimeoutMillis = 5000
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Offset = -1 // everything
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := codeErr(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func deleteTopicOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TimeoutMillis = 5000
		req.TopicNames = []string{topic}
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			if err := codeErr(t.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func alterSCRAMOp(user string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
		up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		up.Name, up.Mechanism, up.Iterations = user, 1, 4096
		up.Salt = []byte("0123456789abcdef")
		up.SaltedPassword = make([]byte, 32)
		req.Upsertions = append(req.Upsertions, up)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, r := range resp.Results {
			if err := codeErr(r.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func createACLOp(topic string) func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrCreateACLsRequest()
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceTypeTopic, topic, kmsg.ACLResourcePatternTypeLiteral
		c.Principal, c.Host = "User:*", "*"
		c.Operation, c.PermissionType = kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
		req.Creations = append(req.Creations, c)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, r := range resp.Results {
			if err := codeErr(r.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func deleteACLsOp() func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrDeleteACLsRequest()
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
		f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		req.Filters = append(req.Filters, f)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, r := range resp.Results {
			if err := codeErr(r.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	}
}

func describeACLsOp() func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrDescribeACLsRequest()
		req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
		req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		return codeErr(resp.ErrorCode)
	}
}

func describeSCRAMOp() func(context.Context, *kgo.Client) error {
	return func(ctx context.Context, cl *kgo.Client) error {
		req := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		return codeErr(resp.ErrorCode)
	}
}

// TestEmbeddedAuthSurvivesRestart: principals, ACLs and the superuser's
// login survive a restart of a persisted broker, also when the superuser's
// password changed meanwhile.
func TestEmbeddedAuthSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "broker")
	b := mustStartAuthBroker(t, dir)
	b.mustAddProducer(t, "tenant-acme", "acme-password-0123456789", "tenant.acme.events")
	b.admin.Close()
	b.e.Close()

	const newPass = "a-new-superuser-password-987654321"
	e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: testLogger(),
		Auth: &EmbeddedAuth{SuperUser: testSuperUser, SuperPassword: newPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b2 := &authBroker{e: e, super: Auth{User: testSuperUser, Password: newPass}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sup := b2.client(t, b2.super)
	if err := describeSCRAMOp()(ctx, sup); err != nil {
		t.Fatalf("superuser with its new password after restart: %v", err)
	}
	old := b2.client(t, b.super)
	if err := describeSCRAMOp()(ctx, old); err == nil {
		t.Errorf("superuser with its old password after restart: allowed, want refused")
	}
	acme := b2.client(t, Auth{User: "tenant-acme", Password: "acme-password-0123456789"})
	if err := produceOp("tenant.acme.events")(ctx, acme); err != nil {
		t.Errorf("acme produce after restart: %v", err)
	}
	if err := fetchOp("tenant.acme.events")(ctx, acme); err == nil {
		t.Errorf("acme fetch after restart: allowed, want refused")
	}
}

func TestAdminPrincipals(t *testing.T) {
	b := mustStartAuthBroker(t, "")
	ctx := context.Background()
	b.mustAddProducer(t, "tenant-acme", "acme-password-0123456789", "tenant.acme.events")
	if ok, err := b.admin.HasSCRAM(ctx, "tenant-acme"); err != nil || !ok {
		t.Fatalf("HasSCRAM(tenant-acme) = %v, %v; want true", ok, err)
	}
	acls, err := b.admin.ACLsOf(ctx, "tenant-acme")
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, a := range acls {
		ops = append(ops, fmt.Sprintf("%s %s %s %s", a.Permission, a.Operation, a.Resource, a.Name))
	}
	if got := strings.Join(ops, "; "); !strings.Contains(got, "ALLOW WRITE TOPIC tenant.acme.events") || !strings.Contains(got, "ALLOW DESCRIBE TOPIC tenant.acme.events") || len(acls) != 2 {
		t.Errorf("ACLs of tenant-acme: %s; want exactly ALLOW WRITE and DESCRIBE on tenant.acme.events", got)
	}
	// Rotation: the old password stops working, the new one works.
	if err := b.admin.SetSCRAM(ctx, "tenant-acme", "acme-rotated-password-000"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := produceOp("tenant.acme.events")(cctx, b.client(t, Auth{User: "tenant-acme", Password: "acme-password-0123456789"})); err == nil {
		t.Errorf("produce with the rotated-out password: allowed")
	}
	if err := produceOp("tenant.acme.events")(cctx, b.client(t, Auth{User: "tenant-acme", Password: "acme-rotated-password-000"})); err != nil {
		t.Errorf("produce with the new password: %v", err)
	}
	// Removal: credential and ACLs gone.
	if err := b.admin.RevokeAll(ctx, "tenant-acme"); err != nil {
		t.Fatal(err)
	}
	if err := b.admin.DeleteSCRAM(ctx, "tenant-acme"); err != nil {
		t.Fatal(err)
	}
	if err := b.admin.DeleteSCRAM(ctx, "tenant-acme"); err != nil {
		t.Errorf("DeleteSCRAM twice: %v", err)
	}
	if ok, err := b.admin.HasSCRAM(ctx, "tenant-acme"); err != nil || ok {
		t.Errorf("HasSCRAM after delete = %v, %v; want false", ok, err)
	}
	if acls, err := b.admin.ACLsOf(ctx, "tenant-acme"); err != nil || len(acls) != 0 {
		t.Errorf("ACLs after revoke = %v, %v; want none", acls, err)
	}
	if id, err := b.admin.TopicID(ctx, "tenant.acme.events"); err != nil || len(id) != 32 {
		t.Errorf("TopicID = %q, %v", id, err)
	}
	if _, err := b.admin.TopicID(ctx, "tenant.nope.events"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("TopicID of a missing topic: %v, want ErrTopicNotFound", err)
	}
}
