package flash

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// ParentPIDEnv names the process whose end stops this one: `flash run` sets
// it to its own pid, and the mothership's children inherit it, so a CLI that
// is killed outright (kill -9, a closed terminal) leaves nothing running.
const ParentPIDEnv = "FLASH_PARENT_PID"

// parentPollEvery is how often watchParent looks for the parent: a cheap
// kill(pid, 0) per tick.
const parentPollEvery = 500 * time.Millisecond

// watchParent returns a context that ends with ctx, or as soon as the process
// pid no longer exists. pid 0 (unset) watches nothing; an invalid value is
// logged and ignored. Linux's Pdeathsig would only cover the direct parent
// and the thread that started the process; polling covers grandchildren too.
func watchParent(ctx context.Context, value string, every time.Duration, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if value == "" {
		return ctx, cancel
	}
	pid, err := strconv.Atoi(value)
	if err != nil || pid <= 1 {
		log.Warn("ignoring "+ParentPIDEnv+": not a process id", "value", value)
		return ctx, cancel
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !processExists(pid) {
				log.Info("the process that started this one is gone; stopping", "parent_pid", pid)
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}
