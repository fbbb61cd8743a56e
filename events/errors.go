package events

import (
	"errors"
	"fmt"
)

// Error codes. The HTTP layer maps each to a status; callers branch on them
// with ErrorCode.
const (
	EINVALID      = "invalid"      // malformed input
	EUNAUTHORIZED = "unauthorized" // missing or unknown credential
	EFORBIDDEN    = "forbidden"    // a valid credential used outside its tenant
	ENOTFOUND     = "not_found"    // no such tenant, stream, ...
	ECONFLICT     = "conflict"     // already exists
	EGONE         = "gone"         // the tenant was shredded
	ETOOLARGE     = "too_large"    // over a size limit
	EUNAVAILABLE  = "unavailable"  // a dependency is down; retry later
	ERATELIMITED  = "rate_limited" // too many failures from one source; retry later
	EINTERNAL     = "internal"     // a bug or an unexpected failure
)

// Error is an application error with a machine-readable Code and a message
// safe to show to the caller. Messages never carry tenant payloads or secrets.
type Error struct {
	Code    string
	Message string
	// Reason is a stable reason code finer than Code (ReasonSpecVersion,
	// ...), safe for the audit log: it never holds input. Optional.
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic message for other errors (whose text may hold internal detail).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
