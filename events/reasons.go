package events

import "errors"

// Reason codes: why an input was refused, finer than its Error code and
// stable (they are written to the permanent audit log, and alert on them
// is fine). A reason code never holds any part of the input: the audit
// log outlives a shredded tenant, so a producer's attribute values —
// which may be personal data — must not reach it. The full message
// (Error.Message) stays with the input, sealed in the tenant's quarantine.
const (
	ReasonTooLarge            = "too_large"               // the record is over the size limit
	ReasonNotJSONObject       = "not_json_object"         // the value is not a JSON object (syntax, type, UTF-8)
	ReasonSpecVersion         = "specversion_unsupported" // specversion is not 1.0
	ReasonAttributeNotString  = "attribute_not_string"    // a CloudEvents attribute is not a string
	ReasonIDMissing           = "id_missing"
	ReasonSourceMissing       = "source_missing"
	ReasonTypeMissing         = "type_missing"
	ReasonSubjectMissing      = "subject_missing"
	ReasonIDTooLong           = "id_too_long"
	ReasonSubjectTooLong      = "subject_too_long"
	ReasonTypeTooLong         = "type_too_long"
	ReasonSourceTooLong       = "source_too_long"
	ReasonDataConflict        = "data_and_data_base64" // both data and data_base64
	ReasonDataInvalid         = "data_invalid"         // data is not valid JSON (for its content type)
	ReasonDataBase64Invalid   = "data_base64_invalid"
	ReasonTimeInvalid         = "time_invalid"    // time (ce_time) is not RFC 3339
	ReasonTenantInvalid       = "tenant_invalid"  // the tenant attribute is not a valid tenant id
	ReasonTenantMismatch      = "tenant_mismatch" // the event names another tenant than its topic's
	ReasonKeyMismatch         = "key_mismatch"    // the Kafka key differs from the subject
	ReasonForeignTopic        = "foreign_topic"   // read from a topic the vault did not create
	ReasonStoreLimit          = "store_limit"     // data over what the tenant's store keeps in one value
	ReasonTenantUnknown       = "tenant_unknown"  // the topic's tenant is not in the registry
	ReasonTenantShredded      = "tenant_shredded" // the topic's tenant was shredded
	ReasonTopicInvalid        = "topic_invalid"   // not a topic of a valid tenant id
	ReasonCredentialMissing   = "credential_missing"
	ReasonCredentialUnknown   = "credential_unknown"
	ReasonRateLimited         = "rate_limited"       // refused before authentication: too many failures from the source
	ReasonAttributeNotUTF8    = "attribute_not_utf8" // a binary-mode attribute (ce_* header) is not valid UTF-8
	ReasonTopicCollision      = "topic_collision"    // the tenant's topic name collides with a topic on the broker ('.' and '_' read alike)
	ReasonCursorInvalid       = "cursor_invalid"     // a list cursor (after=) that the vault did not hand out
	ReasonParamInvalid        = "param_invalid"      // a query parameter out of its range or of the wrong type (limit=0, after=-1)
	ReasonTenantMoved         = "moved"              // the tenant moved to another vault (a 410, or records of its topic skipped here)
	ReasonTenantMoving        = "tenant_moving"      // no node of the cluster owns the tenant right now, or its owner is unreachable (a 503 with Retry-After)
	reasonInternalPlaceholder = "internal"
)

// Reasonf returns an *Error with the given code, reason code and formatted
// message.
func Reasonf(code, reason, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	e.Reason = reason
	return e
}

// ErrorReason returns the reason code of the first *Error in err's chain;
// its Code when it has none, "internal" for any other non-nil error, and
// "" for nil. Unlike ErrorMessage, it never holds any part of an input.
func ErrorReason(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Reason != "" {
			return e.Reason
		}
		return e.Code
	}
	return reasonInternalPlaceholder
}

// Reason codes of documents (events of a type ending in ".document") and of
// searches of a tenant's documents.
const (
	ReasonDocumentInvalid    = "document_invalid"    // the data of a document event is not {"text", "embedding", "attributes"} as documented
	ReasonEmbeddingInvalid   = "embedding_invalid"   // data.embedding is not an array of float32 numbers of non-zero length, or is too long
	ReasonEmbeddingMissing   = "embedding_missing"   // a document without data.embedding, and no embedder to compute one
	ReasonEmbeddingDimension = "embedding_dimension" // an embedding (or a query vector) of another dimension than the tenant's
	ReasonEmbedderFailed     = "embedder_failed"     // the embedder did not answer with an embedding for the text
	ReasonSearchInvalid      = "search_invalid"      // a search request that is not as documented (no vector or text, both, a bad filter)
	ReasonSearchKInvalid     = "search_k_invalid"    // k outside 1..MaxSearchK
	ReasonEmbedderMissing    = "embedder_missing"    // a text query, and no embedder to embed it
)
