package kafka

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Principals and their ACLs, over the Kafka protocol: the same calls manage
// the embedded broker and a real cluster (the Admin's own principal needs
// ALTER on the cluster there).

// SetSCRAM creates user's SCRAM credential with password, or replaces it,
// for both SCRAM-SHA-256 and SCRAM-SHA-512 (4096 iterations): a client may
// use either mechanism.
func (a *Admin) SetSCRAM(ctx context.Context, user, password string) error {
	if user == "" || password == "" {
		return errors.New("set SCRAM credential: empty user or password")
	}
	// One request per mechanism: Kafka refuses a user named twice in one.
	for _, m := range []kadm.ScramMechanism{kadm.ScramSha256, kadm.ScramSha512} {
		res, err := a.adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: m, Iterations: 4096, Password: password}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			return fmt.Errorf("set SCRAM credential of %s: %w", user, err)
		}
	}
	return nil
}

// DeleteSCRAM deletes user's SCRAM credentials (both mechanisms). A user
// without credentials is not an error.
func (a *Admin) DeleteSCRAM(ctx context.Context, user string) error {
	var errs []error
	for _, m := range []kadm.ScramMechanism{kadm.ScramSha256, kadm.ScramSha512} {
		res, err := a.adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: user, Mechanism: m}}, nil)
		if err == nil {
			err = res.Error()
		}
		if err != nil && !errors.Is(err, kerr.ResourceNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete SCRAM credential of %s: %w", user, err)
	}
	return nil
}

// HasSCRAM reports whether user has a SCRAM credential.
func (a *Admin) HasSCRAM(ctx context.Context, user string) (bool, error) {
	res, err := a.adm.DescribeUserSCRAMs(ctx, user)
	if err != nil {
		return false, fmt.Errorf("describe SCRAM credential of %s: %w", user, err)
	}
	r, ok := res[user]
	switch {
	case !ok, errors.Is(r.Err, kerr.ResourceNotFound):
		return false, nil
	case r.Err != nil:
		return false, fmt.Errorf("describe SCRAM credential of %s: %w", user, r.Err)
	}
	return len(r.CredInfos) > 0, nil
}

// AllowProduce lets user write to topic and describe it, and nothing else
// (ACLs on the literal topic name, from any host). It is idempotent.
func (a *Admin) AllowProduce(ctx context.Context, user, topic string) error {
	b := kadm.NewACLs().Allow("User:"+user).AllowHosts("*").
		Topics(topic).ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpWrite, kadm.OpDescribe)
	res, err := a.adm.CreateACLs(ctx, b)
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				err = fmt.Errorf("%s on %s: %w", r.Operation, r.Name, r.Err)
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("allow %s to produce to %s: %w", user, topic, err)
	}
	return nil
}

// RevokeAll deletes every ACL of user, on every resource.
func (a *Admin) RevokeAll(ctx context.Context, user string) error {
	b := kadm.NewACLs().Allow("User:" + user).AllowHosts().Deny("User:" + user).DenyHosts().
		AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny)
	res, err := a.adm.DeleteACLs(ctx, b)
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				err = r.Err
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("revoke the ACLs of %s: %w", user, err)
	}
	return nil
}

// ACL is one access rule, as the broker lists it.
type ACL struct {
	Principal, Host, Resource, Name, Pattern, Operation, Permission string
}

// ACLsOf lists the ACLs of user.
func (a *Admin) ACLsOf(ctx context.Context, user string) ([]ACL, error) {
	b := kadm.NewACLs().Allow("User:" + user).AllowHosts().Deny("User:" + user).DenyHosts().
		AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny)
	res, err := a.adm.DescribeACLs(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("describe the ACLs of %s: %w", user, err)
	}
	var out []ACL
	for _, r := range res {
		if r.Err != nil {
			return nil, fmt.Errorf("describe the ACLs of %s: %w", user, r.Err)
		}
		for _, d := range r.Described {
			out = append(out, ACL{Principal: d.Principal, Host: d.Host, Resource: d.Type.String(), Name: d.Name,
				Pattern: d.Pattern.String(), Operation: d.Operation.String(), Permission: d.Permission.String()})
		}
	}
	return out, nil
}

// TopicID returns topic's Kafka topic ID (KIP-516) in hex: a topic deleted
// and created again under the same name has another. A topic that does not
// exist is an error wrapping ErrTopicNotFound; a broker without topic IDs
// answers "".
func (a *Admin) TopicID(ctx context.Context, topic string) (string, error) {
	td, err := a.adm.ListTopics(ctx, topic)
	if err != nil {
		return "", fmt.Errorf("topic id of %s: %w", topic, err)
	}
	d, ok := td[topic]
	switch {
	case !ok || isUnknownTopic(d.Err):
		a.cl.PurgeTopicsFromClient(topic)
		return "", fmt.Errorf("topic id of %s: %w", topic, ErrTopicNotFound)
	case d.Err != nil:
		return "", fmt.Errorf("topic id of %s: %w", topic, d.Err)
	case d.ID == kadm.TopicID{}:
		return "", nil
	}
	return hex.EncodeToString(d.ID[:]), nil
}

// TopicIDs lists every topic of the cluster (internal ones excluded) with
// its topic ID in hex ("" where the broker has none).
func (a *Admin) TopicIDs(ctx context.Context) (map[string]string, error) {
	td, err := a.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	out := make(map[string]string, len(td))
	for name, d := range td {
		if d.Err != nil {
			continue
		}
		if d.ID == (kadm.TopicID{}) {
			out[name] = ""
			continue
		}
		out[name] = hex.EncodeToString(d.ID[:])
	}
	return out, nil
}
