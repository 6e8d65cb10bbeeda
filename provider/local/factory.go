package local

import (
	"context"
	"fmt"
	"os"

	"github.com/flash-go/flash/provider"
)

// Factory is the provider.Factory of FLASH_PROVIDER=local: it runs the
// resources as processes of this very executable, with their logs in the
// app's state directory.
func Factory(_ context.Context, s provider.Setup) (provider.Provider, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("local provider: find this binary: %w", err)
	}
	return New(Config{
		App: s.App, Binary: exe, LogDir: s.Dir.Logs(), Env: s.Env, Store: s.Store, Logger: s.Logger,
		OnChange: s.Changed,
		OnEvent: func(ev Event) {
			if s.Event == nil {
				return
			}
			detail := fmt.Sprintf("pid %d %s", ev.PID, ev.URL)
			if ev.Err != nil {
				detail += ": " + ev.Err.Error()
			}
			s.Event(provider.Event{Resource: ev.Resource, Kind: ev.Kind, Detail: detail})
		},
	})
}
