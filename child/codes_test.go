package child

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// TestInvokeErrorCodes: a function's error code comes back to the caller
// from an LB error body and from a QB job's FAILED output, readable with
// CodeOf and errors.As; a coded answer is not retried, and an answer
// without a code keeps its old meaning.
func TestInvokeErrorCodes(t *testing.T) {
	var sends atomic.Int64
	srv, client := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sends.Add(1)
		switch r.URL.Path {
		case "/lb/notfound":
			wire.WriteError(w, http.StatusNotFound, "no such item", "error_type", "Error", "code", "not_found")
		case "/lb/unavailable":
			wire.WriteError(w, http.StatusServiceUnavailable, "try later", "error_type", "Error", "code", "unavailable")
		case "/lb/bogus":
			wire.WriteError(w, http.StatusInternalServerError, "odd", "error_type", "Error", "code", "no_such_code")
		case "/runsync":
			wire.WriteJSON(w, http.StatusOK, wire.JobAnswer{ID: "j1", Status: wire.StatusFailed, Error: "Error: taken",
				Output: &wire.JobOutput{Success: new(bool), Error: "taken", ErrorType: "Error", Code: "already_exists"}})
		default:
			wire.WriteError(w, http.StatusNotFound, "no such route")
		}
	}))
	iv := newTestInvoker(t, client)
	lb := func(path string) *Target {
		return &Target{Function: "f", Resource: "api", LB: true, Method: "GET", Path: path, URLs: []string{srv.URL}}
	}
	tests := []struct {
		name   string
		target *Target
		code   flasherr.Code
		msg    string
		sends  int64
	}{
		{"LB not_found", lb("/lb/notfound"), flasherr.CodeNotFound, "no such item", 1},
		{"LB unavailable is not retried", lb("/lb/unavailable"), flasherr.CodeUnavailable, "try later", 1},
		{"QB already_exists", qbTarget("f", srv.URL), flasherr.CodeAlreadyExists, "taken", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sends.Store(0)
			err := iv.Invoke(context.Background(), tt.target, struct{}{}, nil)
			if got := flasherr.CodeOf(err); got != tt.code {
				t.Fatalf("CodeOf(%v) = %q, want %q", err, got, tt.code)
			}
			var fe *flasherr.Error
			if !errors.As(err, &fe) || fe.Code != tt.code || fe.Error() != tt.msg {
				t.Fatalf("errors.As(*flasherr.Error) on %v: %+v", err, fe)
			}
			if !errors.Is(err, flasherr.ErrRemoteFunction) {
				t.Errorf("%v is not ErrRemoteFunction", err)
			}
			if n := sends.Load(); n != tt.sends {
				t.Errorf("%d sends, want %d", n, tt.sends)
			}
		})
	}
	t.Run("unknown code is dropped", func(t *testing.T) {
		err := iv.Invoke(context.Background(), lb("/lb/bogus"), struct{}{}, nil)
		var re *flasherr.RemoteError
		if !errors.As(err, &re) || re.Code != "" || flasherr.CodeOf(err) != flasherr.CodeUnknown {
			t.Fatalf("got %v (%+v)", err, re)
		}
	})
	t.Run("404 without a code is still a missing route", func(t *testing.T) {
		err := iv.Invoke(context.Background(), lb("/elsewhere"), struct{}{}, nil)
		if !errors.Is(err, flasherr.ErrFunctionNotFound) || flasherr.CodeOf(err) != flasherr.CodeUnknown {
			t.Fatalf("got %v", err)
		}
	})
}
