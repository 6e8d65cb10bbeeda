package child

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// fakeRunpod replays the answers of Runpod's client API
// (/v2/{endpoint_id}/runsync, /status/{id}, /cancel/{id}; RUNPOD.md §6)
// for one endpoint, by function name, and checks Runpod's bearer key.
type fakeRunpod struct {
	key string

	mu        sync.Mutex
	polls     map[string]int // GET /status per job
	cancelled []string
	auths     []string
}

func (f *fakeRunpod) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		w.WriteHeader(http.StatusUnauthorized) // Runpod answers 401 with an empty body
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/ep1")
	switch {
	case !ok:
		wire.WriteError(w, http.StatusNotFound, "endpoint not found")
	case r.Method == http.MethodPost && rest == "/runsync":
		inv, err := wire.DecodeJobRequest(readAll(r))
		if err != nil {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		// Not done within runsync's wait: Runpod answers the job's id.
		wire.WriteJSON(w, http.StatusOK, wire.JobRef{ID: inv.Function + "-3f2a-u1", Status: wire.StatusInQueue})
	case r.Method == http.MethodGet && strings.HasPrefix(rest, "/status/"):
		id := strings.TrimPrefix(rest, "/status/")
		f.mu.Lock()
		f.polls[id]++
		n := f.polls[id]
		f.mu.Unlock()
		fn, _, _ := strings.Cut(id, "-")
		if n == 1 {
			wire.WriteRawJSON(w, 200, []byte(`{"id":"`+id+`","status":"IN_QUEUE","delayTime":0}`))
			return
		}
		if n == 2 || fn == "never" {
			wire.WriteRawJSON(w, 200, []byte(`{"id":"`+id+`","status":"IN_PROGRESS","delayTime":812}`))
			return
		}
		body := map[string]string{
			"embed":     `{"id":"%s","status":"COMPLETED","delayTime":812,"executionTime":31,"output":{"success":true,"json_result":{"vector":[1,2],"hops":1}}}`,
			"pyfail":    `{"id":"%s","status":"FAILED","delayTime":812,"executionTime":31,"error":"{\"error_type\": \"<class 'ValueError'>\", \"error_message\": \"bad text\", \"error_traceback\": \"Traceback (most recent call last): ...\", \"hostname\": \"4c9e\", \"worker_id\": \"w1\", \"runpod_version\": \"1.7.9\"}"}`,
			"expired":   `{"id":"%s","status":"TIMED_OUT","delayTime":86400000}`,
			"cancelled": `{"id":"%s","status":"CANCELLED","delayTime":812}`,
			"python":    `{"id":"%s","status":"COMPLETED","delayTime":812,"executionTime":31,"output":{"text":["Hello!"]}}`,
		}[fn]
		if body == "" {
			wire.WriteError(w, http.StatusNotFound, "job not found")
			return
		}
		wire.WriteRawJSON(w, 200, []byte(strings.Replace(body, "%s", id, 1)))
	case r.Method == http.MethodPost && strings.HasPrefix(rest, "/cancel/"):
		id := strings.TrimPrefix(rest, "/cancel/")
		f.mu.Lock()
		f.cancelled = append(f.cancelled, id)
		f.mu.Unlock()
		wire.WriteJSON(w, 200, wire.JobRef{ID: id, Status: wire.StatusCancelled})
	default:
		wire.WriteError(w, http.StatusNotFound, "no route")
	}
}

func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

// TestInvokeRunpodQueue: what Runpod's queue answers and a local child
// does not (a non-final /runsync, then polls; Python FAILED, TIMED_OUT,
// CANCELLED; a foreign output) maps to flash's errors, and every request
// carries Runpod's key, not the app's.
func TestInvokeRunpodQueue(t *testing.T) {
	rp := &fakeRunpod{key: "rp-key", polls: map[string]int{}}
	srv, client := startServer(t, rp)
	iv := NewInvoker(InvokerConfig{APIKey: "app-key", RunpodAPIKey: "rp-key", RunpodBaseURL: srv.URL + "/v2/",
		Client: client, Logger: quietLogger()})
	target := func(fn string) *Target { return qbTarget(fn, srv.URL+"/v2/ep1") }
	ctx := context.Background()

	var out embedOut
	if err := iv.Invoke(ctx, target("embed"), embedIn{Text: "hi"}, &out); err != nil || len(out.Vector) != 2 || out.Hops != 1 {
		t.Fatalf("embed through the queue: %+v, %v", out, err)
	}
	if n := rp.polls["embed-3f2a-u1"]; n != 3 {
		t.Errorf("%d polls of /status, want 3 (IN_QUEUE, IN_PROGRESS, COMPLETED)", n)
	}

	err := iv.Invoke(ctx, target("pyfail"), embedIn{}, nil)
	var re *flasherr.RemoteError
	if !errors.As(err, &re) || re.Type != "ValueError" || re.Message != "bad text" {
		t.Errorf("Python worker's failure: %v (%+v), want ValueError: bad text", err, re)
	}
	if err := iv.Invoke(ctx, target("expired"), embedIn{}, nil); !errors.Is(err, flasherr.ErrTimeout) {
		t.Errorf("TIMED_OUT: %v, want ErrTimeout", err)
	}
	if err := iv.Invoke(ctx, target("cancelled"), embedIn{}, nil); !errors.As(err, &re) || re.Type != "Cancelled" {
		t.Errorf("CANCELLED: %v, want a Cancelled RemoteError", err)
	}
	var oe *flasherr.OutputError
	if err := iv.Invoke(ctx, target("python"), embedIn{}, &out); !errors.As(err, &oe) || !strings.Contains(oe.Output, "Hello!") {
		t.Errorf("a Python handler's output: %v, want an OutputError showing it", err)
	}

	// A job that outlives the caller's deadline is polled until then, and
	// cancelled on Runpod when the caller gives up.
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := iv.Invoke(dctx, target("never"), embedIn{}, nil); !errors.Is(err, flasherr.ErrTimeout) {
		t.Errorf("job past the deadline: %v, want ErrTimeout", err)
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if len(rp.cancelled) != 1 || rp.cancelled[0] != "never-3f2a-u1" {
		t.Errorf("cancelled %v, want [never-3f2a-u1]", rp.cancelled)
	}
	for _, a := range rp.auths {
		if a != "Bearer rp-key" {
			t.Fatalf("a request to Runpod carried %q", a)
		}
	}
}

// TestInvokeRunpodWrongKey: Runpod's 401 (empty body) is a clear error
// that shows no key.
func TestInvokeRunpodWrongKey(t *testing.T) {
	rp := &fakeRunpod{key: "rp-key", polls: map[string]int{}}
	srv, client := startServer(t, rp)
	iv := NewInvoker(InvokerConfig{APIKey: "app-key", Client: client, Logger: quietLogger()})
	err := iv.Invoke(context.Background(), qbTarget("embed", srv.URL+"/v2/ep1"), embedIn{}, nil)
	var se *flasherr.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || strings.Contains(err.Error(), "app-key") {
		t.Fatalf("got %v, want a 401 StatusError", err)
	}
}

func TestRunpodURL(t *testing.T) {
	base := "http://127.0.0.1:7000/v2"
	for _, tt := range []struct {
		url    string
		runpod bool
	}{
		{"https://api.runpod.ai/v2/q7emb3dd1ng/runsync", true},
		{"https://k2r9x0api.api.runpod.ai/process", true},
		{"https://API.RunPod.ai:443/v2/x/status/1", true},
		{"http://127.0.0.1:7000/v2/ep1/runsync", true},
		{"http://127.0.0.1:7000/v2", true},
		{"http://127.0.0.1:7000/v2x/ep1", false},
		{"https://api.runpod.ai.example.com/v2/x", false},
		{"https://example.com/api.runpod.ai/v2/x", false},
		{"http://127.0.0.1:8081/runsync", false},
	} {
		if got := runpodURL(tt.url, base); got != tt.runpod {
			t.Errorf("runpodURL(%q) = %v, want %v", tt.url, got, tt.runpod)
		}
	}
}
