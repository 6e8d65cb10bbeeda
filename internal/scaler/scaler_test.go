package scaler

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDesired(t *testing.T) {
	qd := Policy{Kind: QueueDelay, Value: 4, Min: 0, Max: 3}
	rc := Policy{Kind: RequestCount, Value: 2, Min: 1, Max: 5}
	tests := []struct {
		name string
		p    Policy
		l    Load
		want int
	}{
		{"queue delay idle stays at zero", qd, Load{}, 0},
		{"queue delay first job starts one", qd, Load{Queued: 1}, 1},
		{"queue delay short wait keeps count", qd, Load{Queued: 5, OldestWait: 3 * time.Second, Workers: 2}, 2},
		{"queue delay long wait adds one", qd, Load{Queued: 5, OldestWait: 5 * time.Second, Workers: 2}, 3},
		{"queue delay capped at max", qd, Load{Queued: 5, OldestWait: time.Minute, Workers: 3}, 3},
		{"queue delay never removes live workers", qd, Load{Workers: 2}, 2},
		{"request count keeps min", rc, Load{}, 1},
		{"request count rounds up", rc, Load{Queued: 3, InProgress: 2, Workers: 1}, 3},
		{"request count capped", rc, Load{Queued: 100}, 5},
		{"max zero drains", Policy{Kind: RequestCount, Value: 1, Max: 0}, Load{Queued: 9, Workers: 2}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Desired(tt.l); got != tt.want {
				t.Errorf("Desired(%+v) = %d, want %d", tt.l, got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := []Policy{
		{Kind: QueueDelay, Value: 0.4, Max: 1},
		{Kind: RequestCount, Value: 0, Max: 1},
		{Kind: "WORKER_COUNT", Value: 1, Max: 1},
		{Kind: QueueDelay, Value: 1, Min: -1, Max: 1},
		{Kind: QueueDelay, Value: 1, Min: 2, Max: 1},
	}
	for _, p := range bad {
		if p.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
	if err := (Policy{Kind: QueueDelay, Value: 0.5, Max: 3}).Validate(); err != nil {
		t.Errorf("valid policy: %v", err)
	}
}

func TestSurplus(t *testing.T) {
	idle := 2 * time.Second
	fresh := Worker{IdleFor: time.Second}
	stale := Worker{IdleFor: 3 * time.Second}
	busy := Worker{Busy: true, IdleFor: time.Hour}
	tests := []struct {
		name string
		p    Policy
		ws   []Worker
		want []int
	}{
		{"none", Policy{Min: 0, Max: 3}, nil, nil},
		{"idle but not long enough", Policy{Min: 0, Max: 3}, []Worker{fresh, fresh}, nil},
		{"idle long enough go", Policy{Min: 0, Max: 3}, []Worker{stale, fresh, stale}, []int{0, 2}},
		{"min kept", Policy{Min: 1, Max: 3}, []Worker{stale, stale, stale}, []int{0, 1}},
		{"scale to zero", Policy{Min: 0, Max: 3}, []Worker{stale}, []int{0}},
		{"busy never chosen", Policy{Min: 0, Max: 3}, []Worker{busy, stale, busy}, []int{1}},
		{"above max at once", Policy{Min: 0, Max: 1}, []Worker{fresh, fresh, fresh}, []int{0, 1}},
		{"above max, busy waits", Policy{Min: 0, Max: 1}, []Worker{busy, busy, fresh}, []int{2}},
		{"above max then idle", Policy{Min: 0, Max: 2}, []Worker{fresh, stale, fresh, fresh}, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.Surplus(tt.ws, idle)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Surplus = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromEntry(t *testing.T) {
	tests := []struct {
		name  string
		entry string
		want  Config
		ok    bool
		err   string
	}{
		{"no scaler: fixed workers", `{"workersMin":2,"workersMax":5}`, Config{}, false, ""},
		{"defaults", `{"scalerType":"QUEUE_DELAY"}`, Config{Policy{QueueDelay, 4, 0, 3}, 5 * time.Second}, true, ""},
		{"request count", `{"scalerType":"request_count","scalerValue":2,"workersMin":1,"workersMax":4,"idleTimeout":2}`,
			Config{Policy{RequestCount, 2, 1, 4}, 2 * time.Second}, true, ""},
		{"max capped by the limit", `{"scalerType":"REQUEST_COUNT","workersMax":100}`, Config{Policy{RequestCount, 4, 0, 10}, 5 * time.Second}, true, ""},
		{"max raised to min", `{"scalerType":"REQUEST_COUNT","workersMin":4,"workersMax":2}`, Config{Policy{RequestCount, 4, 4, 4}, 5 * time.Second}, true, ""},
		{"max zero serves one", `{"scalerType":"REQUEST_COUNT","workersMax":0}`, Config{Policy{RequestCount, 4, 0, 1}, 5 * time.Second}, true, ""},
		{"unknown kind", `{"scalerType":"WORKER_COUNT"}`, Config{}, false, "unknown kind"},
		{"queue delay too short", `{"scalerType":"QUEUE_DELAY","scalerValue":0.1}`, Config{}, false, "below 0.5"},
		{"min above the limit", `{"scalerType":"QUEUE_DELAY","workersMin":11}`, Config{}, false, "workersMin"},
		{"fractional workers", `{"scalerType":"QUEUE_DELAY","workersMax":1.5}`, Config{}, false, "workersMax"},
		{"idle zero", `{"scalerType":"QUEUE_DELAY","idleTimeout":0}`, Config{}, false, "idleTimeout"},
		{"idle too long", `{"scalerType":"QUEUE_DELAY","idleTimeout":7200}`, Config{}, false, "idleTimeout"},
		{"wrong type", `{"scalerType":3}`, Config{}, false, "scaling keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := FromEntry([]byte(tt.entry), 10)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one naming %q", err, tt.err)
				}
				return
			}
			if err != nil || ok != tt.ok || got != tt.want {
				t.Fatalf("FromEntry = %+v, %v, %v; want %+v, %v", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzFromEntry(f *testing.F) {
	f.Add([]byte(`{"scalerType":"REQUEST_COUNT","scalerValue":2,"workersMin":1,"workersMax":4,"idleTimeout":2}`))
	f.Add([]byte(`{"scalerType":"QUEUE_DELAY","workersMax":1e300}`))
	f.Add([]byte(`{"workersMin":-1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, ok, err := FromEntry(raw, 10)
		if err != nil || !ok {
			return
		}
		if c.Validate() != nil || c.Max < 1 || c.Max > 10 || c.Min > c.Max || c.Idle <= 0 || c.Idle > MaxIdle {
			t.Fatalf("accepted an out-of-range config %+v from %s", c, raw)
		}
	})
}

func TestDemand(t *testing.T) {
	rc := Policy{Kind: RequestCount, Value: 2, Min: 1, Max: 5}
	qd := Policy{Kind: QueueDelay, Value: 1, Min: 0, Max: 5}
	for _, tc := range []struct {
		p    Policy
		l    Load
		want int
	}{
		{rc, Load{}, 1},                          // never below Min
		{rc, Load{InProgress: 1, Workers: 3}, 1}, // ceil(1/2)
		{rc, Load{Queued: 2, InProgress: 3}, 3},  // ceil(5/2)
		{qd, Load{}, 0},                          // Min 0: nothing needed
		{qd, Load{InProgress: 1, Workers: 3}, 1}, // one request, one worker
		{qd, Load{Queued: 1, InProgress: 2}, 3},  // a worker per request
		{qd, Load{InProgress: 9, Workers: 2}, 9}, // not clamped to Max: callers compare with the workers alive
	} {
		if got := tc.p.Demand(tc.l); got != tc.want {
			t.Errorf("%+v.Demand(%+v) = %d, want %d", tc.p, tc.l, got, tc.want)
		}
	}
}

func TestPeak(t *testing.T) {
	var p Peak
	t0 := time.Unix(0, 0)
	for _, step := range []struct {
		at       time.Duration
		n        int
		peak     int
		observed bool
	}{
		{0, 3, 3, false},
		{time.Second, 1, 3, false},
		{2 * time.Second, 2, 3, true}, // 3 is still in the 2 s window
		{3 * time.Second, 1, 2, true}, // 3 left the window
		{5 * time.Second, 1, 1, true}, // so did 2
		{6 * time.Second, 4, 4, true}, // a new peak at once
	} {
		peak, observed := p.Add(t0.Add(step.at), 2*time.Second, step.n)
		if peak != step.peak || observed != step.observed {
			t.Errorf("at %v: Add(%d) = %d, %v; want %d, %v", step.at, step.n, peak, observed, step.peak, step.observed)
		}
	}
}

func TestIdlest(t *testing.T) {
	ws := []Worker{{IdleFor: time.Second}, {IdleFor: 3 * time.Second}, {Busy: true}, {IdleFor: 2 * time.Second}}
	if got := Idlest(ws, 2); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("Idlest(2) = %v, want [1 3]", got)
	}
	if got := Idlest(ws, 9); len(got) != 4 {
		t.Errorf("Idlest(9) = %v, want all 4", got)
	}
}
