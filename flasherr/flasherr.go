// Package flasherr holds the errors a flash call can return, in one place, so
// that every layer (router, invoker, serving, CLI) returns the same values and
// callers can branch with errors.Is and errors.As. Package flash re-exports them.
package flasherr

import (
	"errors"
	"fmt"
)

// Sentinels for the kinds of failure of SPEC §5.3. Typed errors below match
// them with errors.Is.
var (
	ErrFunctionNotFound    = errors.New("function not found")
	ErrRemoteFunction      = errors.New("remote function failed")
	ErrSerialization       = errors.New("serialization error")
	ErrInvalidManifest     = errors.New("invalid manifest")
	ErrManifestUnavailable = errors.New("manifest service unavailable")
	ErrEndpointNotReady    = errors.New("endpoint not ready")
	ErrLoopDetected        = errors.New("call loop detected")
	ErrTimeout             = errors.New("call timed out")
	ErrCircuitOpen         = errors.New("circuit open")
	ErrOverloaded          = errors.New("endpoint overloaded")
	// ErrObjectLost is a call to a stateful object's instance that no
	// longer exists: its replica died or restarted, it was closed, or it
	// was evicted after being idle. The instance is never silently
	// recreated; make a new one.
	ErrObjectLost = errors.New("object lost")
)

// Retryable reports whether err is worth retrying later as it stands: the
// target was not ready, unavailable or overloaded, not wrong.
func Retryable(err error) bool {
	var nr *NotReadyError
	if errors.As(err, &nr) {
		return true
	}
	return errors.Is(err, ErrEndpointNotReady) || errors.Is(err, ErrManifestUnavailable) ||
		errors.Is(err, ErrCircuitOpen) || errors.Is(err, ErrOverloaded)
}

// RemoteError is a function that ran on another endpoint and returned an error.
type RemoteError struct {
	Function string // the function called
	Resource string // the resource that ran it
	Type     string // the error's type as the callee reported it ("ValueError", "Panic", …)
	Message  string
	Code     Code // the error's code as the callee reported it; "" when it sent none
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s on %s: %s: %s", e.Function, e.Resource, e.Type, e.Message)
}

// Is makes errors.Is(err, ErrRemoteFunction) true, and errors.Is(err,
// ErrObjectLost) for an object's instance the callee no longer holds.
func (e *RemoteError) Is(target error) bool {
	return target == ErrRemoteFunction || target == ErrObjectLost && e.Type == ObjectLostType
}

// ErrorCode reports the callee's code, so that CodeOf finds it and serving
// the error again passes it on.
func (e *RemoteError) ErrorCode() Code { return e.Code }

// Unwrap gives errors.As an *Error with the callee's code and message, when
// the callee sent a code.
func (e *RemoteError) Unwrap() error {
	if e.Code == "" {
		return nil
	}
	return &Error{Code: e.Code, err: errors.New(e.Message)}
}

// ErrorType reports the callee's error type, so that serving the error again
// (a remote error passing through an intermediate endpoint) keeps it.
func (e *RemoteError) ErrorType() string { return e.Type }

// OutputError is a job its endpoint reports COMPLETED whose output is not a
// flash function's result (no "json_result"): a Python worker's
// {"result": "<base64>"}, a handler's bare value, or nothing. It matches
// ErrSerialization with errors.Is.
type OutputError struct {
	Function string
	Resource string
	Output   string // what came back, cut short and printable; "" when there was no output
}

func (e *OutputError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("call %s on %s: the job completed without an output", e.Function, e.Resource)
	}
	return fmt.Sprintf("call %s on %s: the job completed but its output is not a flash result (no json_result): %s",
		e.Function, e.Resource, e.Output)
}

// Is makes errors.Is(err, ErrSerialization) true.
func (e *OutputError) Is(target error) bool { return target == ErrSerialization }

// NotReadyError is a call to a resource that has no endpoint URL yet, or whose
// deployment failed. It is retryable.
type NotReadyError struct {
	Function string
	Resource string
	Status   string // manifest status of the resource ("pending", "failed", …)
	Reason   string // the recorded deployment error, if any
}

func (e *NotReadyError) Error() string {
	msg := fmt.Sprintf("endpoint not ready: resource %q (for function %q) ", e.Resource, e.Function)
	switch {
	case e.Status == "failed":
		msg += "failed to deploy"
	case e.Status != "":
		msg += "is " + e.Status + " with no endpoint URL yet"
	default:
		msg += "has no endpoint URL yet"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg + "; retry later"
}

// Is makes errors.Is(err, ErrEndpointNotReady) true.
func (e *NotReadyError) Is(target error) bool { return target == ErrEndpointNotReady }

// StatusError is an HTTP answer from another endpoint that was not a result:
// its status code and the error text it carried. Its text leaves out the
// URL, which is internal to the app.
type StatusError struct {
	URL     string // the request's URL, password hidden: for logs, not for the caller's caller
	Code    int
	Message string
	Kind    error // the sentinel this status maps to (ErrFunctionNotFound, ErrLoopDetected, …), or nil
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("endpoint answered %d: %s", e.Code, e.Message)
}

// Unwrap lets errors.Is match the sentinel the status maps to.
func (e *StatusError) Unwrap() error { return e.Kind }

// ObjectLostType is the error type an endpoint reports for a call to an
// object's instance it does not hold (code not_found).
const ObjectLostType = "ObjectLost"

// ObjectLostError is a call to an instance that does not exist (any more).
// It matches ErrObjectLost with errors.Is; its code is CodeNotFound.
type ObjectLostError struct {
	Object string // the object type's name
	ID     string // the instance id
	Reason string // why, for people: "closed", "no replica holds it", …
}

func (e *ObjectLostError) Error() string {
	return fmt.Sprintf("object %s instance %s lost: %s", e.Object, e.ID, e.Reason)
}

// Is makes errors.Is(err, ErrObjectLost) true.
func (e *ObjectLostError) Is(target error) bool { return target == ErrObjectLost }

// ErrorType reports ObjectLostType, the type the error travels with.
func (e *ObjectLostError) ErrorType() string { return ObjectLostType }

// ErrorCode reports CodeNotFound.
func (e *ObjectLostError) ErrorCode() Code { return CodeNotFound }
