package audit

import (
	"slices"
	"strings"

	"github.com/tenantvault/tenantvault/events"
)

// The vocabulary of a record: who acted (Principal, of a PrincipalKind),
// what they did (Action) and how it ended (Outcome). The types are strings,
// so a record's JSON is the same as with plain strings; the constants are
// every value tenantvault writes.

// Principal names who acted: PrincipalAdmin, PrincipalTenant(id) ("tenant:<id>"),
// PrincipalIngest, PrincipalVault or PrincipalAnonymous. Records read from
// an export may carry others.
type Principal string

// Principals. A tenant credential is PrincipalTenant(id).
const (
	// PrincipalAdmin is the admin credential.
	PrincipalAdmin Principal = "admin"
	// PrincipalIngest is the vault's consumer of tenant topics.
	PrincipalIngest Principal = "ingest"
	// PrincipalVault is the vault acting on its own (background key
	// rewraps).
	PrincipalVault Principal = "vault"
	// PrincipalAnonymous is a request without a valid credential.
	PrincipalAnonymous Principal = "anonymous"
)

// tenantPrefix starts the principal of a tenant credential.
const tenantPrefix = "tenant:"

// PrincipalTenant returns the principal of tenant t's credential: "tenant:<t>".
func PrincipalTenant(t events.TenantID) Principal { return Principal(tenantPrefix + string(t)) }

// PrincipalKind is what sort of caller a Principal is.
type PrincipalKind string

// Principal kinds. KindUnknown is a principal tenantvault does not write.
const (
	KindAdmin     PrincipalKind = "admin"
	KindTenant    PrincipalKind = "tenant"
	KindIngest    PrincipalKind = "ingest"
	KindVault     PrincipalKind = "vault"
	KindAnonymous PrincipalKind = "anonymous"
	KindUnknown   PrincipalKind = "unknown"
)

// Kind returns p's kind: KindTenant for any "tenant:" principal (even one
// naming an invalid id), KindUnknown for a principal tenantvault does not write.
func (p Principal) Kind() PrincipalKind {
	switch p {
	case PrincipalAdmin:
		return KindAdmin
	case PrincipalIngest:
		return KindIngest
	case PrincipalVault:
		return KindVault
	case PrincipalAnonymous:
		return KindAnonymous
	}
	if strings.HasPrefix(string(p), tenantPrefix) {
		return KindTenant
	}
	return KindUnknown
}

// Tenant returns the tenant of a tenant credential's principal, as written
// (not validated), and whether p is one.
func (p Principal) Tenant() (string, bool) {
	t, ok := strings.CutPrefix(string(p), tenantPrefix)
	if !ok {
		return "", false
	}
	return t, true
}

// Outcome is how an action ended. Append refuses any other value than the
// four constants.
type Outcome string

// Outcomes.
const (
	OutcomeOK       Outcome = "ok"
	OutcomeDenied   Outcome = "denied"
	OutcomeError    Outcome = "error"
	OutcomeRejected Outcome = "rejected"
)

// valid reports whether o is one of the four outcomes.
func (o Outcome) valid() bool {
	switch o {
	case OutcomeOK, OutcomeDenied, OutcomeError, OutcomeRejected:
		return true
	}
	return false
}

// Action names what was done. On disk it is free text (a verifier accepts
// any); the constants are every action tenantvault writes.
type Action string

// Actions on tenants.
const (
	ActionTenantCreate = Action("tenant.create")
	ActionTenantList   = Action("tenant.list")
	ActionTenantShred  = Action("tenant.shred")
	// ActionTenantExport writes a tenant's bundle (vaultctl tenant export);
	// ActionTenantImport reads one into another vault; ActionTenantMoved
	// ends the tenant on the source once the import is done (its keys
	// destroyed, its store removed, the destination recorded).
	ActionTenantExport = Action("tenant.export")
	ActionTenantImport = Action("tenant.import")
	ActionTenantMoved  = Action("tenant.moved")
	// ActionTenantReplicate takes here a tenant another node of the
	// cluster created (its keyset and registry entry, from the cluster
	// directory). ActionTenantAcquire and ActionTenantRelease are a node
	// taking and handing off a tenant's topic in the consumer group; they
	// carry the audit log's size at the hand-off, so the two nodes' logs
	// link.
	ActionTenantReplicate = Action("tenant.replicate")
	ActionTenantAcquire   = Action("tenant.acquire")
	ActionTenantRelease   = Action("tenant.release")
	// ActionTopicCheck is the start-up check of a tenant topic's identity.
	ActionTopicCheck = Action("tenant.topic_check")
	// ActionKafkaCredentialRotate replaces a tenant's producer credential.
	ActionKafkaCredentialRotate = Action("tenant.kafka_credential.rotate")
)

// Actions on keys.
const (
	ActionKeysRotate = Action("keys.rotate")
	// ActionKeysRead lists a tenant's keys and their usage.
	ActionKeysRead = Action("keys.read")
	// ActionKeysRetire is the request to disable or destroy a key, as
	// authenticated; the vault records ActionKeysDisable or
	// ActionKeysDestroy.
	ActionKeysRetire  = Action("keys.retire")
	ActionKeysDisable = Action("keys.disable")
	ActionKeysDestroy = Action("keys.destroy")
	// ActionKeysRewrap is the background rewrap of a tenant's sealed values
	// under its primary key (by PrincipalVault).
	ActionKeysRewrap = Action("keys.rewrap")
	// ActionMasterRotate replaces the master key (KEK).
	ActionMasterRotate = Action("master.rotate")
)

// Actions of ingest (by PrincipalIngest).
const (
	ActionIngestBatch  = Action("ingest.batch")
	ActionIngestReject = Action("ingest.reject")
	// ActionIngestSkip is a batch of records that cannot be attributed to
	// a live tenant (an unknown, shredded or unparsable topic), skipped.
	ActionIngestSkip = Action("ingest.skip")
)

// Actions that read a tenant's data: IsTenantData reports exactly these, and
// Classify flags an admin's use of them. The tenant session (vault.Session)
// opens and reads only under these actions.
const (
	ActionStreamRead     = Action("stream.read")
	ActionStreamList     = Action("stream.list")
	ActionEventsRead     = Action("events.read")
	ActionQuarantineRead = Action("quarantine.read")
	// ActionSearch is a search of a tenant's documents (its vector
	// index): the record holds the number of results and the key ids
	// opened, never the query or a document's text.
	ActionSearch = Action("search")
)

// Other actions.
const (
	// ActionRequestForward is a node's failure to forward a request for a
	// tenant another node of the cluster owns (the owner unreachable):
	// the forwarding node authenticated nothing, so its principal is
	// PrincipalAnonymous, and it read no tenant data.
	ActionRequestForward = Action("request.forward")
	// ActionAuditRead reads the audit log (metadata only, never tenant data).
	ActionAuditRead = Action("audit.read")
	// ActionClusterStatus reads the cluster's nodes and who owns each
	// tenant (GET /v1/cluster, admin).
	ActionClusterStatus = Action("cluster.status")
	// ActionAuth is an authentication without a more specific action.
	ActionAuth = Action("auth")
)

// tenantDataActions are the actions that read a tenant's data, sorted.
var tenantDataActions = []Action{ActionEventsRead, ActionQuarantineRead, ActionSearch, ActionStreamList, ActionStreamRead}

// IsTenantData reports whether a reads a tenant's data: an admin doing so is
// flagged (ViolationBreakGlass or ViolationAdminOnTenant).
func (a Action) IsTenantData() bool { return slices.Contains(tenantDataActions, a) }

// TenantDataActions returns the actions that read a tenant's data, sorted.
func TenantDataActions() []Action { return slices.Clone(tenantDataActions) }

// Details keys of a vault that is one node of a cluster (several vaultd
// nodes on one Kafka cluster, each owning some tenants).
const (
	// DetailNode is the id of the node that wrote the record.
	DetailNode = "node"
	// DetailViaNode is the id of the node a forwarded request came
	// through, as that request claimed it: a node id, not a credential.
	DetailViaNode = "via_node"
	// DetailOwnerNode is the id of the node a request was forwarded to.
	DetailOwnerNode = "owner_node"
)
