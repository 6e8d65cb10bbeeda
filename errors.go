package flash

import "github.com/flash-go/flash/flasherr"

// Code classifies a function's error (see package flasherr): an LB route
// answers the HTTP status of its code, a QB job carries it in its output,
// and the caller gets it back with CodeOf or errors.As.
type Code = flasherr.Code

// The codes a function's error can carry.
const (
	CodeCanceled           = flasherr.CodeCanceled
	CodeUnknown            = flasherr.CodeUnknown
	CodeInvalidArgument    = flasherr.CodeInvalidArgument
	CodeDeadlineExceeded   = flasherr.CodeDeadlineExceeded
	CodeNotFound           = flasherr.CodeNotFound
	CodeAlreadyExists      = flasherr.CodeAlreadyExists
	CodePermissionDenied   = flasherr.CodePermissionDenied
	CodeResourceExhausted  = flasherr.CodeResourceExhausted
	CodeFailedPrecondition = flasherr.CodeFailedPrecondition
	CodeAborted            = flasherr.CodeAborted
	CodeOutOfRange         = flasherr.CodeOutOfRange
	CodeUnimplemented      = flasherr.CodeUnimplemented
	CodeInternal           = flasherr.CodeInternal
	CodeUnavailable        = flasherr.CodeUnavailable
	CodeDataLoss           = flasherr.CodeDataLoss
	CodeUnauthenticated    = flasherr.CodeUnauthenticated
)

// Error is an error with a Code.
type Error = flasherr.Error

// Errorf returns an error with code c and a message formatted as by
// fmt.Errorf (%w wraps).
func Errorf(c Code, format string, args ...any) error { return flasherr.Errorf(c, format, args...) }

// WithCode gives err the code c (nil stays nil).
func WithCode(c Code, err error) error { return flasherr.WithCode(c, err) }

// CodeOf returns err's code: the one it carries, even from another
// endpoint; CodeDeadlineExceeded or CodeCanceled for an ended context;
// CodeUnknown for any other error; "" for nil.
func CodeOf(err error) Code { return flasherr.CodeOf(err) }
