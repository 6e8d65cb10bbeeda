package scaler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Runpod's defaults for what a resource entry leaves out (RUNPOD.md §2.2, §2.6).
const (
	DefaultValue = 4               // seconds of queue delay, or requests per worker
	DefaultMax   = 3               // workersMax
	DefaultIdle  = 5 * time.Second // idleTimeout
	MaxIdle      = time.Hour       // the longest idleTimeout accepted
)

// Config is a resource's autoscaling: the policy and the idle timeout after
// which a worker above the minimum stops.
type Config struct {
	Policy
	Idle time.Duration
}

// entry holds the keys of a manifest resource entry that say how it scales.
type entry struct {
	WorkersMin  *float64 `json:"workersMin"`
	WorkersMax  *float64 `json:"workersMax"`
	ScalerType  *string  `json:"scalerType"`
	ScalerValue *float64 `json:"scalerValue"`
	IdleTimeout *float64 `json:"idleTimeout"`
}

// FromEntry reads a manifest resource entry's autoscaling in Runpod's keys:
// scalerType (QUEUE_DELAY or REQUEST_COUNT), scalerValue, workersMin,
// workersMax and idleTimeout (seconds). ok is false when the entry has no
// scalerType: such a resource keeps a fixed number of workers. workersMax
// is raised to max(workersMin, 1), so that a call can always be served, and
// lowered to limit. Every mistake is reported in words for the deployer.
func FromEntry(raw json.RawMessage, limit int) (c Config, ok bool, err error) {
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Config{}, false, fmt.Errorf("scaling keys: %w", err)
	}
	if e.ScalerType == nil {
		return Config{}, false, nil
	}
	c = Config{Policy: Policy{Kind: Kind(strings.ToUpper(*e.ScalerType)), Value: DefaultValue, Max: DefaultMax}, Idle: DefaultIdle}
	var errs []error
	workers := func(name string, v *float64, dst *int) {
		switch {
		case v == nil:
		case *v < 0 || *v != math.Trunc(*v) || *v > float64(limit):
			errs = append(errs, fmt.Errorf("%s: want a whole number from 0 to %d, got %v", name, limit, *v))
		default:
			*dst = int(*v)
		}
	}
	workers("workersMin", e.WorkersMin, &c.Min)
	if e.WorkersMax != nil && *e.WorkersMax > float64(limit) && *e.WorkersMax == math.Trunc(*e.WorkersMax) {
		c.Max = limit // the cap of this mothership, not a mistake
	} else {
		workers("workersMax", e.WorkersMax, &c.Max)
	}
	c.Max = min(max(c.Max, c.Min, 1), max(limit, 1))
	if v := e.ScalerValue; v != nil {
		c.Value = *v
	}
	if v := e.IdleTimeout; v != nil {
		if *v <= 0 || *v > MaxIdle.Seconds() {
			errs = append(errs, fmt.Errorf("idleTimeout: want seconds above 0 and at most %v, got %v", MaxIdle.Seconds(), *v))
		} else {
			c.Idle = time.Duration(*v * float64(time.Second))
		}
	}
	if err := c.Validate(); err != nil && len(errs) == 0 {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, false, err
	}
	return c, true, nil
}
