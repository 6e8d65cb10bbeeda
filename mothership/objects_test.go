package mothership

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// objectReplica holds instances in its own memory, as a child does, and
// answers a call to one it does not hold as lost.
type objectReplica struct {
	*httptest.Server
	id    string
	mu    sync.Mutex
	count map[string]int
}

func newObjectReplica(t *testing.T) *objectReplica {
	r := &objectReplica{id: wire.NewReplicaID(), count: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flash/replica", func(w http.ResponseWriter, req *http.Request) {
		wire.WriteJSON(w, http.StatusOK, wire.ReplicaAnswer{Replica: r.id})
	})
	mux.HandleFunc("POST /flash/objects/{object}", func(w http.ResponseWriter, req *http.Request) {
		id := wire.NewObjectID(r.id)
		r.mu.Lock()
		r.count[id] = 0
		r.mu.Unlock()
		w.Header().Set(wire.HeaderReplica, r.id)
		wire.WriteJSON(w, http.StatusCreated, wire.ObjectRef{Object: req.PathValue("object"), ID: id})
	})
	mux.HandleFunc("POST /flash/objects/{object}/{id}/{method}", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		n, ok := r.count[req.PathValue("id")]
		if ok {
			n++
			r.count[req.PathValue("id")] = n
		}
		r.mu.Unlock()
		if !ok {
			wire.WriteError(w, http.StatusNotFound, "lost", "error_type", "ObjectLost", "code", "not_found")
			return
		}
		wire.WriteJSON(w, http.StatusOK, map[string]any{"replica": r.id, "n": n})
	})
	r.Server = httptest.NewServer(mux)
	t.Cleanup(r.Close)
	return r
}

// TestGatewayObjectReachesItsReplica: through the gateway, new instances
// spread over three replicas, each call reaches the one that holds its
// instance (also through a mothership that saw none of them), and a call
// to an instance whose replica is gone answers 404 ObjectLost.
func TestGatewayObjectReachesItsReplica(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	h.run(t)
	var reps []*objectReplica
	var urls []string
	for range 3 {
		r := newObjectReplica(t)
		reps = append(reps, r)
		urls = append(urls, r.URL)
	}
	mf := buildManifest(t, res{name: "keeper", min: 3}).WithRuntime("keeper",
		manifest.Runtime{EndpointURLs: urls, Status: manifest.StatusDeployed})
	if _, err := h.m.Publish(t.Context(), mf); err != nil {
		t.Fatal(err)
	}
	call := func(base, method, path string) (int, map[string]any) {
		return gatewayCall[any](t, base, method, path, `{}`)
	}
	holder := map[string]string{} // instance id → replica id
	for i := range 6 {
		code, ref := call(h.srv.URL, "POST", "/keeper/flash/objects/Counter")
		id, _ := ref["id"].(string)
		r, ok := wire.ObjectReplica(id)
		if code != http.StatusCreated || !ok {
			t.Fatalf("new %d: %d %v", i, code, ref)
		}
		holder[id] = r
	}
	spread := map[string]bool{}
	for _, r := range holder {
		spread[r] = true
	}
	if len(spread) != 3 {
		t.Fatalf("6 instances on %d replicas, want round robin over 3", len(spread))
	}
	for _, base := range []string{h.srv.URL, secondMothership(t, h)} {
		for id, r := range holder {
			code, out := call(base, "POST", "/keeper/flash/objects/Counter/"+id+"/inc")
			if code != http.StatusOK || out["replica"] != r {
				t.Fatalf("inc of %s (held by %s): %d %v", id, r, code, out)
			}
		}
	}
	gone := reps[0]
	gone.Close()
	for id, r := range holder {
		code, out := call(h.srv.URL, "POST", "/keeper/flash/objects/Counter/"+id+"/inc")
		if r == gone.id {
			if code != http.StatusNotFound || out["error_type"] != "ObjectLost" || out["code"] != "not_found" {
				t.Errorf("instance on the closed replica: %d %v, want 404 ObjectLost", code, out)
			}
			continue
		}
		if code != http.StatusOK || out["replica"] != r {
			t.Errorf("instance on %s after another replica closed: %d %v", r, code, out)
		}
	}
	unknown := wire.NewObjectID(wire.NewReplicaID())
	if code, out := call(h.srv.URL, "POST", "/keeper/flash/objects/Counter/"+unknown+"/inc"); code != http.StatusNotFound || out["error_type"] != "ObjectLost" {
		t.Errorf("instance of no replica: %d %v", code, out)
	}
	if code, out := call(h.srv.URL, "POST", "/keeper/flash/objects/Counter/not-an-id/inc"); code != http.StatusBadRequest {
		t.Errorf("bad instance id: %d %v", code, out)
	}
	if code, out := call(h.srv.URL, "POST", "/nobody/flash/objects/Counter"); code != http.StatusNotFound {
		t.Errorf("unknown resource: %d %v", code, out)
	}
	h.m.transport.(*http.Transport).CloseIdleConnections()
}

// secondMothership serves h's store from another Mothership, which has
// learned nothing of the replicas.
func secondMothership(t *testing.T, h *harness) string {
	m2, err := New(t.Context(), Config{App: "app", Store: h.st, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	m2.Register(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		m2.transport.(*http.Transport).CloseIdleConnections()
	})
	return srv.URL
}
