package vault

import (
	"encoding/hex"
	"fmt"

	"github.com/tenantvault/tenantvault/events"
)

// KeyedHashPrefix starts the stand-in an audit record holds for
// producer-supplied text: "hmac:" and 32 hex digits, the first 16 bytes of
// the vault's keyed hash (Keys.Hasher) of the text. Equal texts have equal
// stand-ins, so records correlate; the text itself is not in the log. No
// tenant id starts so (':' is not in one).
const KeyedHashPrefix = "hmac:"

// Keyed hash kinds (domains) of the audit log's stand-ins.
const (
	hashClaimedTenant = "audit/claimed-tenant"
	hashTopic         = "audit/topic"
	hashProbedTenant  = "audit/probed-tenant"
)

// auditHash returns the audit log's stand-in for producer text s of kind.
func (v *Vault) auditHash(kind, s string) (string, error) {
	h, err := v.cfg.Keys.Hasher.AuditHash(kind, []byte(s))
	if err != nil {
		return "", fmt.Errorf("audit hash: %w", err)
	}
	return KeyedHashPrefix + hex.EncodeToString(h[:min(len(h), 16)]), nil
}

// claimedTenant returns what an audit record holds of a tenant an event
// names: the id itself when it is a valid id of a tenant of the registry
// (in any state), else its keyed hash — the claim is producer text, and
// may be anything, personal data included. Either way it differs from
// the topic's tenant when the claim does, so the crossing is flagged.
func (v *Vault) claimedTenant(s string) (string, error) {
	if t, err := events.ParseTenantID(s); err == nil {
		if _, ok := v.reg.get(t); ok {
			return s, nil
		}
	}
	return v.auditHash(hashClaimedTenant, s)
}

// topicResource returns the Resource of an audit record about topic:
// "topics/<topic>" for the topic of a tenant of the registry (in any
// state), else "topics/" and the topic's keyed hash — anyone who reaches
// the broker can create a topic, and name it anything.
func (v *Vault) topicResource(topic string) (string, error) {
	if t, err := events.TenantFromTopic(topic); err == nil {
		if _, ok := v.reg.get(t); ok {
			return "topics/" + topic, nil
		}
	}
	h, err := v.auditHash(hashTopic, topic)
	if err != nil {
		return "", err
	}
	return "topics/" + h, nil
}

// probedTenant returns what an audit record of a refused request holds of
// the tenant its path names: the id when it is a valid id of a tenant of
// the registry (in any state), else its keyed hash.
func (v *Vault) probedTenant(s string) (string, error) {
	if t, err := events.ParseTenantID(s); err == nil {
		if _, ok := v.reg.get(t); ok {
			return s, nil
		}
	}
	return v.auditHash(hashProbedTenant, s)
}
