package flash

import (
	"context"

	"github.com/flash-go/flash/serve"
)

// SetStatus sets the HTTP status (200–399) of the answer of the LB route
// call running in ctx, e.g. 201 for a creation. An error's status comes
// from its code instead (Errorf). It returns an error outside an LB route's
// call, and for another status.
func SetStatus(ctx context.Context, code int) error { return serve.SetStatus(ctx, code) }

// SetHeader adds a header to the answer of the LB route call running in
// ctx (on success and on error). It returns an error outside an LB route's
// call, and for the headers the server writes itself (Content-Type, …).
func SetHeader(ctx context.Context, key, value string) error {
	return serve.SetHeader(ctx, key, value)
}
