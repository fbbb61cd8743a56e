// Package events is the domain kernel of tenantvault: the validated TenantID,
// the CloudEvents envelope and its codec, topic naming, the error codes
// every other package reports through, and KeyInfo, the public description
// of a tenant key (id, primary, status) that keys lists and vault reports.
//
// Every refusal of an input carries, besides its code and a message (which
// may quote the input, escaped and bounded), a stable reason code
// (ReasonSpecVersion, ReasonIDMissing, ...; ErrorReason) that never holds
// any part of the input: what the permanent audit log records.
//
// The JSON of events is read by a one-pass scanner of its own (jsonscan.go:
// ValidJSON, the structured decoder, AppendMergePatch, the merge patch that
// projects a stream's state), several times cheaper than encoding/json on the
// ingest path, and stricter in one point: strings must be valid UTF-8.
//
// It imports only the standard library (and may import
// github.com/google/uuid), never a package of ours. It never touches the
// disk, the network or key material, and imports none of os, net, syscall,
// io/fs or path/filepath (nor their subpackages): it names things and
// checks them, nothing more. internal/archtest enforces these imports.
// A TenantID that exists as a value has passed validation, so code that
// builds a path or a topic from one may trust it.
package events
