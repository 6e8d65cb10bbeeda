package serve

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// Limits are the bounds of a Server that an operator may set, per resource,
// through the environment of its endpoint (LimitsFromEnv). Zero fields take
// the defaults.
type Limits struct {
	// MaxResults bounds the /run jobs kept (queued, running or final until
	// their ResultTTL passes); default 50,000 (FLASH_MAX_RESULTS). When
	// reached, /run answers 429 with Retry-After saying when the oldest
	// result expires, before reading the body; /runsync keeps nothing and is
	// not affected.
	MaxResults int
	// MaxResultBytes bounds the memory of kept /run jobs: results and error
	// messages plus 2 KiB each; default 256 MiB (FLASH_MAX_RESULT_BYTES).
	// When reached, /run answers 429 as for MaxResults; a result that would
	// pass it is not kept, and its job is FAILED with error type
	// "ResultTooLarge".
	MaxResultBytes int64
	// LBConcurrency bounds the load-balanced calls running at once; default
	// Config.Workers (FLASH_LB_CONCURRENCY).
	LBConcurrency int
	// LBQueue bounds the load-balanced calls waiting for a slot beyond
	// those; default LBConcurrency (FLASH_LB_QUEUE). A call beyond it gets
	// 429 with Retry-After at once, before its body is read.
	LBQueue int
	// SlowRequest is the duration from which a request is logged at Info
	// even when it succeeded (others log at Debug); default 10 s
	// (FLASH_SLOW_REQUEST_MS).
	SlowRequest time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxResults     = 50_000
	DefaultMaxResultBytes = 256 << 20
	DefaultSlowRequest    = 10 * time.Second
)

// LimitsFromEnv reads Limits from FLASH_MAX_RESULTS, FLASH_MAX_RESULT_BYTES,
// FLASH_LB_CONCURRENCY, FLASH_LB_QUEUE and FLASH_SLOW_REQUEST_MS through
// getenv; unset variables leave the defaults.
func LimitsFromEnv(getenv func(string) string) (Limits, error) {
	var l Limits
	var errs []error
	positive := func(name string, set func(int64)) {
		v := getenv(name)
		if v == "" {
			return
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive integer", name, v))
			return
		}
		set(n)
	}
	positive("FLASH_MAX_RESULTS", func(n int64) { l.MaxResults = int(min(n, 1<<31)) })
	positive("FLASH_MAX_RESULT_BYTES", func(n int64) { l.MaxResultBytes = n })
	positive("FLASH_LB_CONCURRENCY", func(n int64) { l.LBConcurrency = int(min(n, 1<<31)) })
	positive("FLASH_LB_QUEUE", func(n int64) { l.LBQueue = int(min(n, 1<<31)) })
	positive("FLASH_SLOW_REQUEST_MS", func(n int64) { l.SlowRequest = time.Duration(min(n, 1<<40)) * time.Millisecond })
	return l, errors.Join(errs...)
}

// admission bounds the load-balanced calls of a server: limit run at once,
// at most queue more wait for a slot; beyond, a call is refused at once.
type admission struct {
	slots   chan struct{}
	waiting atomic.Int64
	queue   int64
}

func newAdmission(limit, queue int) *admission {
	return &admission{slots: make(chan struct{}, limit), queue: int64(queue)}
}

// errBusy is acquire's refusal: every slot taken and the queue full.
var errBusy = errors.New("busy")

// acquire takes a slot, waiting while ctx lasts. It returns errBusy at once
// when the queue is full, ctx's error when ctx ends first.
func (a *admission) acquire(ctx context.Context) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	if a.waiting.Add(1) > a.queue {
		a.waiting.Add(-1)
		return errBusy
	}
	defer a.waiting.Add(-1)
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *admission) release() { <-a.slots }
