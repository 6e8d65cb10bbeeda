package scaler

import (
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
