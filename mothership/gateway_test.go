package mothership

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// replica is a QB endpoint that keeps its jobs in its own memory, like a
// child process: only it knows them.
type replica struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	jobs map[string]bool
	hits int
}

func newReplica(t *testing.T, name string) *replica {
	r := &replica{name: name, jobs: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		id := fmt.Sprintf("%s-job-%d", r.name, len(r.jobs))
		r.jobs[id] = true
		r.hits++
		r.mu.Unlock()
		wire.WriteJSON(w, http.StatusOK, map[string]string{"id": id, "status": "IN_QUEUE"})
	})
	known := func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		ok := r.jobs[req.PathValue("id")]
		r.mu.Unlock()
		if !ok {
			wire.WriteError(w, http.StatusNotFound, "job not found")
			return
		}
		wire.WriteJSON(w, http.StatusOK, map[string]string{"id": req.PathValue("id"), "status": "COMPLETED", "replica": r.name})
	}
	mux.HandleFunc("GET /status/{id}", known)
	mux.HandleFunc("POST /cancel/{id}", known)
	mux.HandleFunc("POST /retry/{id}", known)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.hits++
		r.mu.Unlock()
		wire.WriteJSON(w, http.StatusOK, map[string]string{"replica": r.name, "path": req.URL.Path, "query": req.URL.RawQuery})
	})
	r.Server = httptest.NewServer(mux)
	t.Cleanup(r.Close)
	return r
}

// TestGatewayJobReachesItsReplica: with three replicas, a job submitted
// through /v2/{resource}/run is found by status and cancel every time (round
// robin would answer 404 two times in three), also by a mothership that did
// not see the submission (it asks the replicas).
func TestGatewayJobReachesItsReplica(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	h.run(t)
	var urls []string
	for i := range 3 {
		urls = append(urls, newReplica(t, fmt.Sprint("r", i)).URL)
	}
	mf := buildManifest(t, res{name: "gpu", min: 3}).WithRuntime("gpu",
		manifest.Runtime{EndpointURLs: urls, Status: manifest.StatusDeployed})
	if _, err := h.m.Publish(t.Context(), mf); err != nil {
		t.Fatal(err)
	}
	call := func(base, method, path string) (int, map[string]string) {
		return gatewayCall[string](t, base, method, path, `{"input":{}}`)
	}
	var ids []string
	for i := range 9 {
		code, job := call(h.srv.URL, "POST", "/v2/gpu/run")
		if code != http.StatusOK || job["id"] == "" {
			t.Fatalf("run %d: %d %v", i, code, job)
		}
		ids = append(ids, job["id"])
		for _, c := range []struct{ method, path string }{{"GET", "/v2/gpu/status/"}, {"POST", "/v2/gpu/cancel/"}, {"POST", "/v2/gpu/retry/"}} {
			if code, out := call(h.srv.URL, c.method, c.path+job["id"]); code != http.StatusOK || out["id"] != job["id"] {
				t.Fatalf("%s %s%s: %d %v", c.method, c.path, job["id"], code, out)
			}
		}
	}

	// Another mothership on the same store never saw these jobs.
	m2, err := New(t.Context(), Config{App: "app", Store: h.st, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	m2.Register(mux.Handle)
	srv2 := httptest.NewServer(mux)
	defer srv2.Close()
	for _, id := range ids {
		if code, out := call(srv2.URL, "GET", "/v2/gpu/status/"+id); code != http.StatusOK || out["id"] != id {
			t.Fatalf("status of %s through a mothership that did not see it: %d %v", id, code, out)
		}
	}
	if code, _ := call(srv2.URL, "GET", "/v2/gpu/status/nobody-has-this"); code != http.StatusNotFound {
		t.Fatalf("unknown job: %d, want 404", code)
	}
	m2.transport.(*http.Transport).CloseIdleConnections()
}

// TestGatewayLBStableAddress: an LB resource's routes answer at
// /{resource}/… on the mothership, forwarded to its replicas, path and query
// kept; a redeploy that moves the replicas does not move that address.
func TestGatewayLBStableAddress(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	h.run(t)
	a, b := newReplica(t, "a"), newReplica(t, "b")
	publish := func(urls ...string) {
		mf := buildManifest(t, res{name: "web", lb: true}, res{name: "gpu"}).
			WithRuntime("web", manifest.Runtime{EndpointURLs: urls, Status: manifest.StatusDeployed}).
			WithRuntime("gpu", manifest.Runtime{EndpointURLs: []string{a.URL}, Status: manifest.StatusDeployed})
		if _, err := h.m.Publish(t.Context(), mf); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) (int, map[string]string) {
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	publish(a.URL, b.URL)
	seen := map[string]bool{}
	for range 4 {
		code, out := get("/web/hello/there?x=1")
		if code != http.StatusOK || out["path"] != "/hello/there" || out["query"] != "x=1" {
			t.Fatalf("GET /web/hello/there?x=1: %d %v", code, out)
		}
		seen[out["replica"]] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("replicas used: %v, want both", seen)
	}
	// Redeployed elsewhere: the same address reaches the new replica.
	c := newReplica(t, "c")
	publish(c.URL)
	if code, out := get("/web/hello"); code != http.StatusOK || out["replica"] != "c" {
		t.Fatalf("after the move: %d %v", code, out)
	}
	for _, p := range []string{"/gpu/x", "/nope/x"} {
		if code, _ := get(p); code != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404 (not a load-balanced resource)", p, code)
		}
	}
	// The mothership's own routes are not shadowed.
	if code, _ := get("/flash/status"); code != http.StatusOK {
		t.Fatalf("/flash/status: %d", code)
	}
}

// TestGatewayRelaysLargeAnswersWhole: an answer too large to learn its job
// id from is still relayed byte for byte.
func TestGatewayRelaysLargeAnswersWhole(t *testing.T) {
	big := `{"id":"job-1","status":"COMPLETED","output":"` + strings.Repeat("x", 3*maxSubmitAnswer) + `"}`
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, big)
	}))
	defer backend.Close()
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	h.run(t)
	mf := buildManifest(t, res{name: "gpu"}).WithRuntime("gpu",
		manifest.Runtime{EndpointURLs: []string{backend.URL}, Status: manifest.StatusDeployed})
	if _, err := h.m.Publish(t.Context(), mf); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(h.srv.URL+"/v2/gpu/runsync", "application/json", strings.NewReader(`{"input":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(got) != big {
		t.Fatalf("%d, %d bytes (%v), want the %d bytes sent", resp.StatusCode, len(got), err, len(big))
	}
}

// gatewayCall sends body to base+path and returns the status and the JSON
// object answered.
func gatewayCall[V any](t *testing.T, base, method, path, body string) (int, map[string]V) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]V
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// TestGatewayStreamsAnswerToAPost: an LB route that reads a POST's body and
// streams its answer is relayed whole every time. The gateway's server used
// to close the request body when the answer's headers went out, while the
// transport still read it once more after its Content-Length; the transport
// then tore down the connection to the replica mid-answer ("use of closed
// network connection"), a cut about one stream in six between processes.
func TestGatewayStreamsAnswerToAPost(t *testing.T) {
	const lines = 20
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		rc := http.NewResponseController(w)
		for i := range lines {
			fmt.Fprintf(w, "{\"output\":%d}\n", i)
			rc.Flush()
		}
	}))
	defer backend.Close()
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	h.run(t)
	mf := buildManifest(t, res{name: "web", lb: true}).WithRuntime("web",
		manifest.Runtime{EndpointURLs: []string{backend.URL}, Status: manifest.StatusDeployed})
	if _, err := h.m.Publish(t.Context(), mf); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		resp, err := h.srv.Client().Post(h.srv.URL+"/web/count", "application/json", strings.NewReader(`{"n":20}`))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || strings.Count(string(got), "\n") != lines {
			t.Fatalf("stream %d: %d lines (%v), want %d", i, strings.Count(string(got), "\n"), err, lines)
		}
	}
}
