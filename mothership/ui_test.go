package mothership

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flash-go/flash/internal/wire"
)

// TestUIEvents: the stream starts with the state (status and deploy steps),
// sends it again after a deploy, and refuses streams beyond its bound.
func TestUIEvents(t *testing.T) {
	h := newHarness(t)
	h.run(t)
	mustReconcile(t, h.m, buildManifest(t, res{name: "api", lb: true}))

	open := func(ctx context.Context) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/flash/ui/events", nil)
		if err != nil {
			return nil, err
		}
		return h.srv.Client().Do(req)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	next := func() uiState {
		t.Helper()
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var st uiState
				if err := json.Unmarshal([]byte(data), &st); err != nil {
					t.Fatal(err)
				}
				return st
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return uiState{}
	}
	first := next()
	if _, ok := first.Status.Resources["api"]; !ok || len(first.Deploys) == 0 {
		t.Fatalf("first state: %+v", first)
	}
	mustReconcile(t, h.m, buildManifest(t, res{name: "api", lb: true}, res{name: "embedder"}))
	for {
		st := next()
		if _, ok := st.Status.Resources["embedder"]; ok && st.Status.Version > first.Status.Version {
			// Each reconciliation's steps carry its own number.
			if d0, d1 := st.Deploys[0].Deploy, st.Deploys[len(st.Deploys)-1].Deploy; d0 != 1 || d1 != 2 {
				t.Fatalf("deploy numbers %d … %d, want 1 … 2", d0, d1)
			}
			break
		}
	}
	// An edge report shows in the next state; a process event sends one at once.
	body, _ := json.Marshal(wire.EdgeReport{Resource: "api", Instance: "a", Edges: []wire.EdgeCount{{Target: "embedder", Calls: 2}}})
	if resp, err := h.srv.Client().Post(h.srv.URL+wire.PathEdges, "application/json", bytes.NewReader(body)); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("edge report: %v %v", resp, err)
	}
	h.m.EndpointEvent("embedder", "exited", "test", false)
	for st := next(); len(st.Edges) == 0; st = next() {
	}

	// One stream is open; fill up to the bound, then one more is refused.
	for range maxUIStreams - 1 {
		r, err := open(ctx)
		if err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("stream within the bound: %v %v", r, err)
		}
		defer r.Body.Close()
	}
	r, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("stream beyond the bound: %d, want 429 with Retry-After", r.StatusCode)
	}
}
