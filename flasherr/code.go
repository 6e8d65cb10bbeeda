package flasherr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Code classifies a function's error so that callers can act on it, in the
// spirit of gRPC's and connect-go's codes. It travels between endpoints as
// its text ("not_found", …) and picks the HTTP status of an LB route's
// answer. The zero value means no code.
type Code string

// The codes, with the HTTP status an LB route answers for each.
const (
	CodeCanceled           Code = "canceled"            // 499: the caller went away
	CodeUnknown            Code = "unknown"             // 500: an error that carries no code
	CodeInvalidArgument    Code = "invalid_argument"    // 400: the input is wrong, whatever the state
	CodeDeadlineExceeded   Code = "deadline_exceeded"   // 504: the deadline passed
	CodeNotFound           Code = "not_found"           // 404: what was asked for does not exist
	CodeAlreadyExists      Code = "already_exists"      // 409: what was to be created exists
	CodePermissionDenied   Code = "permission_denied"   // 403: the caller may not do this
	CodeResourceExhausted  Code = "resource_exhausted"  // 429: a quota or a bound was hit
	CodeFailedPrecondition Code = "failed_precondition" // 400: the state does not allow it
	CodeAborted            Code = "aborted"             // 409: a conflict, such as a lost compare-and-swap
	CodeOutOfRange         Code = "out_of_range"        // 400: past the end of something
	CodeUnimplemented      Code = "unimplemented"       // 501: not supported
	CodeInternal           Code = "internal"            // 500: a broken invariant
	CodeUnavailable        Code = "unavailable"         // 503: try again later
	CodeDataLoss           Code = "data_loss"           // 500: data was lost or corrupted
	CodeUnauthenticated    Code = "unauthenticated"     // 401: the caller is not known
)

var httpStatus = map[Code]int{
	CodeCanceled:           499,
	CodeUnknown:            http.StatusInternalServerError,
	CodeInvalidArgument:    http.StatusBadRequest,
	CodeDeadlineExceeded:   http.StatusGatewayTimeout,
	CodeNotFound:           http.StatusNotFound,
	CodeAlreadyExists:      http.StatusConflict,
	CodePermissionDenied:   http.StatusForbidden,
	CodeResourceExhausted:  http.StatusTooManyRequests,
	CodeFailedPrecondition: http.StatusBadRequest,
	CodeAborted:            http.StatusConflict,
	CodeOutOfRange:         http.StatusBadRequest,
	CodeUnimplemented:      http.StatusNotImplemented,
	CodeInternal:           http.StatusInternalServerError,
	CodeUnavailable:        http.StatusServiceUnavailable,
	CodeDataLoss:           http.StatusInternalServerError,
	CodeUnauthenticated:    http.StatusUnauthorized,
}

// Valid reports whether c is one of the codes above.
func (c Code) Valid() bool {
	_, ok := httpStatus[c]
	return ok
}

// HTTPStatus is the status an LB route answers for an error with code c;
// 500 for a code it does not know.
func (c Code) HTTPStatus() int {
	if s, ok := httpStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an error with a code. Its text is the message alone: the code
// travels beside it.
type Error struct {
	Code Code
	err  error
}

// Errorf returns an error with code c and the message fmt.Errorf(format,
// args...) gives; %w wraps as usual.
func Errorf(c Code, format string, args ...any) error {
	return &Error{Code: c, err: fmt.Errorf(format, args...)}
}

// WithCode returns err with code c, or nil when err is nil.
func WithCode(c Code, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: c, err: err}
}

func (e *Error) Error() string { return e.err.Error() }

// Unwrap returns the error e gives a code to.
func (e *Error) Unwrap() error { return e.err }

// ErrorCode reports e's code.
func (e *Error) ErrorCode() Code { return e.Code }

// CodeOf returns the code of err: "" for nil; the code of the first error
// in its chain that has one (an *Error, a *RemoteError that carried one);
// CodeDeadlineExceeded or CodeCanceled for an ended context; else
// CodeUnknown.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var coded interface{ ErrorCode() Code }
	if errors.As(err, &coded) {
		if c := coded.ErrorCode(); c.Valid() {
			return c
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	}
	return CodeUnknown
}
