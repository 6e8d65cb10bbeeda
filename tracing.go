package flash

import (
	"context"
	"log/slog"
	"time"

	"github.com/flash-go/flash/internal/telemetry"
)

// flushTimeout bounds how long a stopping process waits to export its last spans.
const flushTimeout = 5 * time.Second

// startTracing returns the process's tracer (nil when the OTEL_* variables
// do not ask for traces) and the function that flushes it at exit.
func startTracing(ctx context.Context, service string, log *slog.Logger) (*telemetry.Tracer, func(), error) {
	tr, err := telemetry.New(ctx, service)
	if err != nil || tr == nil {
		return nil, func() {}, err
	}
	return tr, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			log.Warn("exporting the last spans", "err", err)
		}
	}, nil
}
