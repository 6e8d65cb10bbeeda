package local

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/flash-go/flash/provider"
)

// Factory is the provider.Factory of FLASH_PROVIDER=local: it runs the
// resources as processes of this very executable, with their logs in the
// app's state directory. FLASH_LOG_MAX_SIZE (bytes) and FLASH_LOG_KEEP set
// the log rotation.
func Factory(_ context.Context, s provider.Setup) (provider.Provider, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("local provider: find this binary: %w", err)
	}
	maxSize, err := positive(s.Getenv, "FLASH_LOG_MAX_SIZE")
	if err != nil {
		return nil, err
	}
	keep, err := positive(s.Getenv, "FLASH_LOG_KEEP")
	if err != nil {
		return nil, err
	}
	return New(Config{
		App: s.App, Binary: exe, LogDir: s.Dir.Logs(), LogMaxSize: maxSize, LogKeep: int(min(keep, 1000)),
		Env: s.Env, Store: s.Store, Logger: s.Logger,
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

// positive reads a positive integer setting; unset is 0 (the default).
func positive(getenv func(string) string, name string) (int64, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}
