package events

import "strings"

// TenantID names a tenant. Values built by ParseTenantID match
// ^[a-z0-9][a-z0-9-]{1,62}$, so they are safe as a directory name and as part
// of a Kafka topic name.
type TenantID string

// MaxTenantIDLen is the longest tenant id accepted.
const MaxTenantIDLen = 63

// ParseTenantID validates s as a tenant id. The error is an *Error with code
// EINVALID that quotes s in escaped form (it may be hostile).
func ParseTenantID(s string) (TenantID, error) {
	if len(s) < 2 || len(s) > MaxTenantIDLen {
		return "", Errorf(EINVALID, "invalid tenant id %.80q: want 2 to %d characters of [a-z0-9-], starting with [a-z0-9]", s, MaxTenantIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return "", Errorf(EINVALID, "invalid tenant id %.80q: want 2 to %d characters of [a-z0-9-], starting with [a-z0-9]", s, MaxTenantIDLen)
		}
	}
	return TenantID(s), nil
}

// String returns the id.
func (t TenantID) String() string { return string(t) }

const (
	topicPrefix = "tenant."
	topicSuffix = ".events"
)

// TopicFor returns the ingress topic of tenant t: tenant.<t>.events.
func TopicFor(t TenantID) string { return topicPrefix + string(t) + topicSuffix }

// ChangelogTopicFor returns tenant t's sealed changelog topic in a cluster,
// tenant.<id>.sealed: compacted, ciphertext only, written by the vault
// alone (tenants' producers may write only their .events topic).
func ChangelogTopicFor(t TenantID) string { return topicPrefix + string(t) + ".sealed" }

// TenantTopicPattern matches the ingress topic of every valid tenant id
// (tenant.<id>.events), as a regular expression of the whole name.
const TenantTopicPattern = `^tenant\.[a-z0-9][a-z0-9-]{1,62}\.events$`

// TenantTopicShape matches every topic of the shape tenant.<x>.events,
// whether or not <x> is a valid tenant id (IsTenantTopic), as a regular
// expression of the whole name: what the vault consumes, so that records
// published to the topic of an invalid or unknown tenant are audited.
const TenantTopicShape = `^tenant\..+\.events$`

// ProducerPrincipal is the broker principal (SCRAM user) of tenant t's
// producers: tenant-<t>. It may write t's topic and nothing else.
func ProducerPrincipal(t TenantID) string { return "tenant-" + string(t) }

// IsTenantTopic reports whether topic has the shape tenant.<x>.events, whether
// or not <x> is a valid tenant id.
func IsTenantTopic(topic string) bool {
	return len(topic) > len(topicPrefix)+len(topicSuffix) &&
		strings.HasPrefix(topic, topicPrefix) && strings.HasSuffix(topic, topicSuffix)
}

// TenantFromTopic returns the tenant whose ingress topic is topic. It fails
// with EINVALID when topic is not of the form tenant.<id>.events or the id is
// not valid.
func TenantFromTopic(topic string) (TenantID, error) {
	if !IsTenantTopic(topic) {
		return "", Errorf(EINVALID, "topic %.120q is not a tenant topic (want tenant.<id>.events)", topic)
	}
	return ParseTenantID(topic[len(topicPrefix) : len(topic)-len(topicSuffix)])
}

// CheckNodeID reports whether id may name a node of a cluster: 1 to 63
// characters of [a-z0-9-], starting with a letter or digit (a DNS label,
// as a StatefulSet's pod names are).
func CheckNodeID(id string) error {
	ok := len(id) >= 1 && len(id) <= 63 && id[0] != '-'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return Errorf(EINVALID, "invalid node id %.80q: want 1 to 63 characters of [a-z0-9-], starting with a letter or digit", id)
	}
	return nil
}
