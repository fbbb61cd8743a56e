package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
)

// Producers manages the broker identity of each tenant's producers: one
// principal per tenant (events.ProducerPrincipal), allowed to write and
// describe its tenant's topic and nothing else — no read of any topic, no
// group, no topic creation. kafka.Admin is one. Optional: nil when the
// brokers do not authenticate clients (then tenants have no producer
// credential).
type Producers interface {
	// SetProducer creates user with secret, or replaces its secret, and
	// lets it produce to topic (idempotent).
	SetProducer(ctx context.Context, user, secret, topic string) error
	// AllowProducer (re)creates the ACLs that let user produce to topic,
	// keeping its secret (idempotent).
	AllowProducer(ctx context.Context, user, topic string) error
	// RemoveProducer deletes user's credential and every ACL naming it;
	// a user that does not exist is not an error.
	RemoveProducer(ctx context.Context, user string) error
	// HasProducer reports whether user has a credential on the brokers.
	HasProducer(ctx context.Context, user string) (bool, error)
}

// TopicIDs tells a topic's identity on the brokers (Kafka's topic ID): a
// topic deleted and created again under the same name has another one.
// kafka.Admin is one. Optional: without it topics are not checked.
type TopicIDs interface {
	// TopicID returns topic's id, "" if the brokers have none; a missing
	// topic is an error wrapping ErrTopicMissing (matched with errors.Is
	// through the adapter).
	TopicID(ctx context.Context, topic string) (string, error)
}

// KafkaCredential is the broker credential of a tenant's producers. The
// password is shown once, when it is made (tenant create, rotate); only the
// brokers keep it (salted, as SCRAM does).
type KafkaCredential struct {
	User     string `json:"user"`
	Password string `json:"password,omitempty"`
	Topic    string `json:"topic"`
}

// newProducerSecret is a producer password: 256 random bits.
func newProducerSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("producer secret: %w", err)
	}
	return "tvk_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// setProducer gives t's producers a new secret on the brokers and returns
// it; nil without Producers.
func (v *Vault) setProducer(ctx context.Context, t events.TenantID) (*KafkaCredential, error) {
	if v.cfg.Producers == nil {
		return nil, nil
	}
	secret, err := newProducerSecret()
	if err != nil {
		return nil, err
	}
	c := &KafkaCredential{User: events.ProducerPrincipal(t), Password: secret, Topic: events.TopicFor(t)}
	if err := v.cfg.Producers.SetProducer(ctx, c.User, secret, c.Topic); err != nil {
		return nil, fmt.Errorf("producer credential of tenant %s: %w", t, err)
	}
	return c, nil
}

// RotateKafkaCredential replaces the broker secret of tenant's producers
// and returns the new one, shown only here (admin only). Producers already
// connected stay connected; every new connection needs the new secret.
func (v *Vault) RotateKafkaCredential(ctx context.Context, p Principal, tenant string) (KafkaCredential, error) {
	const action = audit.ActionKafkaCredentialRotate
	resource := "tenants/" + tenant + "/kafka-credential"
	t, err := v.adminTenantAt(ctx, p, tenant, action, resource)
	if err != nil {
		return KafkaCredential{}, err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: tenant, Action: action, Resource: resource, Outcome: audit.OutcomeRejected}
	v.createMu.Lock() // no shred meanwhile
	defer v.createMu.Unlock()
	e, ok := v.reg.get(t)
	switch {
	case !ok || !e.active():
		return KafkaCredential{}, v.gone(ctx, rec)
	case v.cfg.Producers == nil:
		rec.Reason = "brokers do not authenticate"
		return KafkaCredential{}, v.auditDenied(ctx, rec, events.Errorf(events.EUNAVAILABLE, "the brokers do not authenticate clients: tenants have no Kafka credential"))
	}
	c, err := v.setProducer(ctx, t)
	if err != nil {
		rec.Outcome, rec.Reason = audit.OutcomeError, events.ErrorMessage(err)
		if aerr := v.record(ctx, rec); aerr != nil {
			return KafkaCredential{}, errors.Join(err, aerr)
		}
		return KafkaCredential{}, err
	}
	if e.KafkaUser != c.User {
		e.KafkaUser = c.User // a tenant made before the brokers authenticated
		if err := v.reg.put(e); err != nil {
			return KafkaCredential{}, err
		}
	}
	rec.Outcome = audit.OutcomeOK
	rec.Details = map[string]string{"kafka_user": c.User}
	if err := v.record(ctx, rec); err != nil {
		return KafkaCredential{}, err
	}
	v.cfg.Logger.Info("tenant kafka credential rotated", "tenant", t, "kafka_user", c.User)
	return *c, nil
}

// EnsureBroker brings the brokers in line with the registry at start: every
// active tenant's topic exists (a broker that lost its topics gets them
// back), its topic id is the one the vault recorded when it created it, and
// its producers' ACLs are in place.
//
// A topic the vault creates again here (the broker lost it) starts its
// offsets over: the tenant store's offsets of the old topic are forgotten
// (journaled in the registry, so a crash midway forgets them at the next
// start), and the new topic is consumed from its start, an event id applied
// before still a duplicate. A topic that exists with another id than the
// recorded one was created by someone else: it is audited (flagged),
// logged, and its records are quarantined, never applied, until it is
// deleted (the vault then creates it again, at the next start). A tenant
// whose producers have no credential on the brokers (a broker that lost its
// state) is logged: rotate the credential to give it one.
func (v *Vault) EnsureBroker(ctx context.Context) error {
	for _, t := range v.reg.ids() {
		e, ok := v.reg.get(t)
		if !ok || !e.active() {
			continue
		}
		if err := v.ensureTopic(ctx, e); err != nil {
			return err
		}
		if err := v.ensureProducer(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// ensureTopic creates e's topic if the brokers lack it and checks its id.
func (v *Vault) ensureTopic(ctx context.Context, e registryEntry) error {
	t, topic := e.ID, events.TopicFor(e.ID)
	missing := false
	var id string
	if v.cfg.TopicIDs != nil {
		var err error
		id, err = v.cfg.TopicIDs.TopicID(ctx, topic)
		switch {
		case errors.Is(err, ErrTopicMissing):
			missing = true
		case err != nil:
			return fmt.Errorf("check topic of tenant %s: %w", t, err)
		}
	}
	if err := v.cfg.Topics.CreateTopic(ctx, topic, v.cfg.Partitions); err != nil {
		return fmt.Errorf("ensure topic of tenant %s: %w", t, err)
	}
	if v.cfg.TopicIDs == nil {
		return nil
	}
	if missing {
		var err error
		if id, err = v.cfg.TopicIDs.TopicID(ctx, topic); err != nil {
			return fmt.Errorf("check topic of tenant %s: %w", t, err)
		}
	}
	switch {
	case id == "": // the brokers have no topic ids: nothing to check
	case e.TopicID == "":
		e.TopicID = id // recorded now (a tenant made before topic ids were)
		if err := v.reg.put(e); err != nil {
			return err
		}
	case missing:
		v.cfg.Logger.Warn("tenant topic was missing on the brokers; created it again, consumed from its start", "tenant", t, "topic", topic)
		prev := e.TopicID
		e.TopicID, e.OffsetsStale = id, true
		if err := v.reg.put(e); err != nil {
			return err
		}
		if err := v.record(ctx, audit.Record{Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionTopicCheck, Resource: "topics/" + topic,
			Outcome: audit.OutcomeOK, Reason: "topic missing on the brokers: created again, consumed from its start",
			Details: map[string]string{audit.DetailTopicID: id, "previous_topic_id": prev}}); err != nil {
			return err
		}
	case id != e.TopicID:
		v.cfg.Logger.Error("tenant topic was not created by the vault: its records are quarantined, never applied; delete the topic and restart vaultd to have the vault create it again",
			"tenant", t, "topic", topic, "topic_id", id, "recorded_topic_id", e.TopicID)
		if err := v.record(ctx, audit.Record{Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionTopicCheck, Resource: "topics/" + topic,
			Outcome: audit.OutcomeRejected, Reason: "topic not created by the vault",
			Details: map[string]string{audit.DetailTopicID: id, audit.DetailTenantTopicID: e.TopicID}}); err != nil {
			return err
		}
	}
	if e.OffsetsStale {
		st, release, err := v.cfg.Stores.Acquire(t)
		if err != nil {
			return fmt.Errorf("reset offsets of tenant %s: %w", t, err)
		}
		err = st.ForgetOffsets(topic)
		release()
		if err != nil {
			return err
		}
		e.OffsetsStale = false
		if err := v.reg.put(e); err != nil {
			return err
		}
	}
	return nil
}

// ensureProducer re-creates the ACLs of t's producers and warns when their
// principal is missing on the brokers.
func (v *Vault) ensureProducer(ctx context.Context, t events.TenantID) error {
	if v.cfg.Producers == nil {
		return nil
	}
	user, topic := events.ProducerPrincipal(t), events.TopicFor(t)
	has, err := v.cfg.Producers.HasProducer(ctx, user)
	if err != nil {
		return fmt.Errorf("check producer credential of tenant %s: %w", t, err)
	}
	if err := v.cfg.Producers.AllowProducer(ctx, user, topic); err != nil {
		return fmt.Errorf("producer ACLs of tenant %s: %w", t, err)
	}
	if !has {
		v.cfg.Logger.Warn("tenant has no Kafka producer credential on the brokers (a broker that lost its state, or a tenant made before credentials existed); its producers are refused until it is rotated: vaultctl tenant kafka-credential rotate "+string(t),
			"tenant", t, "kafka_user", user)
	}
	return nil
}

// ErrTopicCollision is matched (errors.Is) by a Topics error for a topic
// whose name collides with a topic the brokers have: Kafka reads '.' and
// '_' alike, so tenant_a_events, made by anyone who reaches the broker,
// keeps tenant.a.events from being created.
var ErrTopicCollision = errors.New("topic name collides")

// ErrTopicMissing is matched (errors.Is) by a TopicIDs error for a topic
// the brokers do not have. The adapter maps its own error to it.
var ErrTopicMissing = errors.New("topic missing")
