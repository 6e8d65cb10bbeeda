package telemetry

import (
	"reflect"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// TestEdges: the calls recorded sum per target, errors being every outcome
// but ok, with their total latency; a nil Metrics has none.
func TestEdges(t *testing.T) {
	m := NewMetrics("api", time.Now)
	if got := m.Edges(); len(got) != 0 {
		t.Fatalf("before any call: %+v", got)
	}
	m.Call("embedder", "embed", "ok", time.Second)
	m.Call("embedder", "embed", "timeout", 2*time.Second)
	m.Call("embedder", "other", "ok", time.Second)
	m.Call("summarizer", "summarize", "function_error", time.Second)
	want := []wire.EdgeCount{
		{Target: "embedder", Calls: 3, Errors: 1, Seconds: 4},
		{Target: "summarizer", Calls: 1, Errors: 1, Seconds: 1},
	}
	if got := m.Edges(); !reflect.DeepEqual(got, want) {
		t.Fatalf("edges %+v, want %+v", got, want)
	}
	if (*Metrics)(nil).Edges() != nil {
		t.Fatal("nil Metrics has edges")
	}
}
