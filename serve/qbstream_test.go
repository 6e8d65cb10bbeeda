package serve

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestQueueStreamEndpoint: GET /stream/{id} hands out each value once and
// the final state with the last values; a producer nobody reads stops at
// MaxStreamPending with resource_exhausted.
func TestQueueStreamEndpoint(t *testing.T) {
	gate := make(chan struct{})
	s, err := New(Config{Logger: discard()}, []Func{
		{Name: "three", Bind: bindJSON(func(ctx context.Context, in any) (any, error) {
			return Stream(func(yield func(any, error) bool) {
				if !yield(1, nil) || !yield(2, nil) {
					return
				}
				<-gate
				yield(3, nil)
			}), nil
		})},
		{Name: "flood", Bind: bindJSON(func(ctx context.Context, in any) (any, error) {
			big := strings.Repeat("x", 1<<20)
			return Stream(func(yield func(any, error) bool) {
				for yield(big, nil) {
				}
			}), nil
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	start := func(fn string) string {
		var ref struct{ ID string }
		if err := json.Unmarshal(do(t, s, "POST", "/run", envelopeFor(fn, nil)).Body, &ref); err != nil || ref.ID == "" {
			t.Fatalf("/run %s: %v", fn, err)
		}
		return ref.ID
	}
	take := func(id string) (status string, values []int, a map[string]any) {
		r := do(t, s, "GET", "/stream/"+id, "")
		var ans struct {
			Status string
			Stream []struct{ Output json.RawMessage }
		}
		if err := json.Unmarshal(r.Body, &ans); err != nil {
			t.Fatalf("/stream: %d bytes that are not an answer", len(r.Body))
		}
		for _, l := range ans.Stream {
			var n int
			if json.Unmarshal(l.Output, &n) == nil {
				values = append(values, n)
			}
		}
		return ans.Status, values, r.json(t)
	}
	waitFinal := func(id string) {
		for {
			var v struct{ Status string }
			json.Unmarshal(do(t, s, "GET", "/status/"+id, "").Body, &v)
			if v.Status != StatusInQueue && v.Status != StatusInProgress {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	id := start("three")
	var got []int
	for len(got) < 2 {
		_, vs, _ := take(id)
		got = append(got, vs...)
	}
	if _, vs, _ := take(id); len(vs) != 0 || len(got) != 2 {
		t.Fatalf("values handed out twice: %v then %v", got, vs)
	}
	close(gate)
	waitFinal(id)
	if st, vs, _ := take(id); st != StatusCompleted || len(vs) != 1 || vs[0] != 3 {
		t.Fatalf("final take: %s %v", st, vs)
	}

	id = start("flood")
	waitFinal(id)
	_, _, a := take(id)
	out, _ := a["output"].(map[string]any)
	if a["status"] != StatusFailed || out["code"] != "resource_exhausted" {
		t.Fatalf("unread flood: %v", a["status"])
	}
	if r := do(t, s, "GET", "/stream/nope", ""); r.Code != 404 {
		t.Fatalf("unknown id: %d", r.Code)
	}
}
