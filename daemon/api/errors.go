package api

import (
	"errors"
	"fmt"
)

// Code classifies an Error so that every binding can map it (HTTP status,
// exit code, a red line in the console) without parsing messages.
type Code string

const (
	CodeInvalid     Code = "invalid"     // the request is malformed; fix it and ask again
	CodeNotFound    Code = "not_found"   // no such change, session or entry
	CodeConflict    Code = "conflict"    // already decided, stale, hash mismatch
	CodeForbidden   Code = "forbidden"   // this operator may not do this
	CodeUnavailable Code = "unavailable" // the daemon cannot do it now (shutting down, sandbox down)
	CodeInternal    Code = "internal"    // a bug or a failed disk; the log says more
)

// Error is what an operator sees when something fails: what happened and
// what to do next. Message and Hint must never quote conversation content or
// secrets.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"error"`
	Hint    string `json:"hint,omitempty"`
}

func (e *Error) Error() string {
	if e.Hint == "" {
		return e.Message
	}
	return e.Message + " (" + e.Hint + ")"
}

// Errorf makes an *Error.
func Errorf(code Code, hint, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Hint: hint}
}

// CodeOf returns err's Code, CodeInternal for an error that is not an *Error
// and "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
