package flasherr

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestCodeOf(t *testing.T) {
	notFound := Errorf(CodeNotFound, "no item %d", 7)
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, ""},
		{"plain", errors.New("x"), CodeUnknown},
		{"coded", notFound, CodeNotFound},
		{"wrapped coded", fmt.Errorf("loading: %w", notFound), CodeNotFound},
		{"outer code wins", Errorf(CodeInternal, "outer: %w", notFound), CodeInternal},
		{"WithCode", WithCode(CodePermissionDenied, errors.New("no")), CodePermissionDenied},
		{"remote with code", &RemoteError{Type: "Error", Message: "m", Code: CodeAlreadyExists}, CodeAlreadyExists},
		{"remote without code", &RemoteError{Type: "Error", Message: "m"}, CodeUnknown},
		{"invalid code", Errorf("bogus", "x"), CodeUnknown},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), CodeDeadlineExceeded},
		{"flash timeout", fmt.Errorf("%w: slow", ErrTimeout), CodeDeadlineExceeded},
		{"canceled", context.Canceled, CodeCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodeOf(tt.err); got != tt.want {
				t.Fatalf("CodeOf = %q, want %q", got, tt.want)
			}
		})
	}
	if WithCode(CodeInternal, nil) != nil {
		t.Error("WithCode(c, nil) is not nil")
	}
	if notFound.Error() != "no item 7" {
		t.Errorf("message %q: want the message alone", notFound.Error())
	}
}

func TestCodeHTTPStatus(t *testing.T) {
	for c, want := range map[Code]int{CodeNotFound: 404, CodeInvalidArgument: 400, CodeAlreadyExists: 409,
		CodePermissionDenied: 403, CodeUnauthenticated: 401, CodeResourceExhausted: 429, CodeUnavailable: 503,
		CodeDeadlineExceeded: 504, CodeCanceled: 499, CodeUnimplemented: 501, CodeInternal: 500, "bogus": 500, "": 500} {
		if got := c.HTTPStatus(); got != want {
			t.Errorf("%q.HTTPStatus() = %d, want %d", c, got, want)
		}
	}
}

func TestRemoteErrorAs(t *testing.T) {
	err := fmt.Errorf("call f on r: %w", &RemoteError{Function: "f", Resource: "r", Type: "Error", Message: "gone", Code: CodeNotFound})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNotFound || e.Error() != "gone" {
		t.Fatalf("errors.As(*Error) = %+v", e)
	}
	if !errors.Is(err, ErrRemoteFunction) {
		t.Error("not ErrRemoteFunction")
	}
}
