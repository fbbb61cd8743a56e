package audit

// Boundary-crossing detection. A record is flagged by what it says
// happened, never by the caller's say-so: Classify derives the flag and its
// reason from a record's raw fields (principal, tenant, action, details), so
// replaying the raw records re-derives exactly the same flags, and a verifier
// can check every stored flag (see CheckFlag).

// Details keys that carry the raw facts Classify reads.
const (
	// DetailEventTenant is the tenant an ingested event names in its
	// "tenant" attribute.
	DetailEventTenant = "event_tenant"
	// DetailKeyOwner is the tenant owning the key of a ciphertext met while
	// serving Record.Tenant.
	DetailKeyOwner = "key_owner"
	// DetailBreakGlass is the reason an admin stated to read tenant data.
	DetailBreakGlass = "break_glass"
	// DetailTenantState is the state of the tenant when accessed ("shredded").
	DetailTenantState = "tenant_state"
	// DetailTopicID is the broker's id of the topic records came from, and
	// DetailTenantTopicID the id of the topic the vault created for the
	// tenant: records from another topic than the vault's were published
	// past it (a topic deleted and created again by someone else).
	DetailTopicID       = "topic_id"
	DetailTenantTopicID = "tenant_topic_id"
)

// Violation codes: stable, low-cardinality names of boundary crossings
// (alert and metric labels).
const (
	ViolationTokenTenant   = "token_tenant_mismatch"
	ViolationForeignKey    = "foreign_key"
	ViolationEventTenant   = "event_tenant_mismatch"
	ViolationShredded      = "shredded_tenant"
	ViolationBreakGlass    = "break_glass"
	ViolationAdminOnTenant = "admin_on_tenant_data"
	ViolationForeignTopic  = "foreign_topic"
)

// violationReasons are the Reason texts of flagged records.
var violationReasons = map[string]string{
	ViolationTokenTenant:   "token tenant differs from path tenant",
	ViolationForeignKey:    "ciphertext sealed under another tenant's key",
	ViolationEventTenant:   "event tenant differs from topic tenant",
	ViolationShredded:      "access to a shredded tenant",
	ViolationBreakGlass:    "break-glass: admin read of tenant data",
	ViolationAdminOnTenant: "admin credential used on tenant data without break-glass",
	ViolationForeignTopic:  "tenant topic not created by the vault",
}

// Classify reports whether r crosses a tenant boundary, with the violation
// code and the reason text a flagged record carries. It reads only r's raw
// fields (not Flagged or Reason).
func Classify(r Record) (flagged bool, code, reason string) {
	code = classify(r)
	if code == "" {
		return false, "", ""
	}
	return true, code, violationReasons[code]
}

func classify(r Record) string {
	d := r.Details
	switch {
	case d[DetailTenantState] == "shredded":
		return ViolationShredded
	case tokenTenantDiffers(r):
		return ViolationTokenTenant
	case d[DetailKeyOwner] != "" && d[DetailKeyOwner] != r.Tenant:
		return ViolationForeignKey
	case d[DetailEventTenant] != "" && d[DetailEventTenant] != r.Tenant:
		return ViolationEventTenant
	case d[DetailTopicID] != "" && d[DetailTenantTopicID] != "" && d[DetailTopicID] != d[DetailTenantTopicID]:
		return ViolationForeignTopic
	case r.Principal.Kind() == KindAdmin && r.Action.IsTenantData() && d[DetailBreakGlass] != "":
		return ViolationBreakGlass
	case r.Principal.Kind() == KindAdmin && r.Action.IsTenantData():
		return ViolationAdminOnTenant
	}
	return ""
}

// tokenTenantDiffers reports whether r was made with a tenant credential
// on another tenant than its own.
func tokenTenantDiffers(r Record) bool {
	t, ok := r.Principal.Tenant()
	return ok && r.Tenant != "" && t != r.Tenant
}

// Flag sets r's Flagged and, when flagged, Reason from Classify, and
// returns the violation code ("" when r crosses no boundary).
func Flag(r *Record) string {
	flagged, code, reason := Classify(*r)
	r.Flagged = flagged
	if flagged {
		r.Reason = reason
	}
	return code
}

// CheckFlag reports whether r's stored flag is the one its raw fields
// derive: false means the record was flagged (or unflagged) by something
// other than Classify — a tampered or foreign record.
func CheckFlag(r Record) bool {
	flagged, _, reason := Classify(r)
	if flagged != r.Flagged {
		return false
	}
	return !flagged || r.Reason == reason
}
