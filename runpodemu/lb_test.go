package runpodemu

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

func lbEndpoint(t *testing.T, e *Emulator, extra map[string]any) string {
	t.Helper()
	body := map[string]any{"name": "api", "type": "LOAD_BALANCER", "image": "example/api:1", "args": workerCommand(t),
		"env":     map[string]string{"RUNPODEMU_TEST_WORKER": "lb", "PORT": "8000", "HEALTH_CHECK_PATH": "/healthz"},
		"ports":   []string{"8000/http"},
		"cpu":     []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}},
		"workers": map[string]any{"min": 0, "max": 2, "idleTimeout": 1}, "scaling": map[string]any{"type": "REQUEST_COUNT", "requestCount": 4}}
	for k, v := range extra {
		body[k] = v
	}
	st, ep := call(t, e, "POST", "/v2/serverless", body)
	if st != 201 {
		t.Fatalf("create LB endpoint: %d %v", st, ep)
	}
	urls := ep["requestUrls"].(map[string]any)
	if urls["base"] != e.URL()+"/lb/"+ep["id"].(string) || urls["health"] != urls["base"].(string)+"/healthz" {
		t.Errorf("requestUrls: %v", urls)
	}
	return ep["id"].(string)
}

func lbGet(t *testing.T, url, key string, affinity ...string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for _, a := range affinity {
		req.Header.Set(headerWorkerID, a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out, resp.Header.Get(headerWorkerID)
}

func TestLoadBalancedEndpointScalesFromZero(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := lbEndpoint(t, e, nil)
	if n := summary(t, e, id)["total"]; n != 0.0 {
		t.Fatalf("workers before the first request: %v", n)
	}
	// The first request waits for a worker to start and become healthy.
	st, ans, wid := lbGet(t, e.URL()+"/lb/"+id+"/hello/world?x=1", e.APIKey())
	if st != 200 || ans["path"] != "/hello/world" || ans["worker"] != wid || wid == "" {
		t.Fatalf("proxied answer: %d %v (worker header %q)", st, ans, wid)
	}
	// Affinity (RUNPOD.md §5): strict to a live worker reaches it, to a gone one is refused.
	if st, ans, got := lbGet(t, e.URL()+"/lb/"+id+"/hello", e.APIKey(), "strict "+wid); st != 200 || got != wid {
		t.Errorf("strict affinity: %d %v from %q", st, ans, got)
	}
	if st, ans, _ := lbGet(t, e.URL()+"/lb/"+id+"/hello", e.APIKey(), "strict nope"); st != 404 || ans["error"] != "affinity_worker_gone" {
		t.Errorf("strict affinity to a gone worker: %d %v", st, ans)
	}
	if st, _, _ := lbGet(t, e.URL()+"/lb/"+id+"/hello", "wrong"); st != 401 {
		t.Errorf("wrong key: %d", st)
	}
	if st, _, _ := lbGet(t, e.URL()+"/lb/nope/hello", e.APIKey()); st != 404 {
		t.Errorf("unknown endpoint: %d", st)
	}
	if st, _ := call(t, e, "POST", "/v2/"+id+"/run", map[string]any{"input": 1}); st != 400 {
		t.Errorf("/run on a load-balanced endpoint: %d", st)
	}
	// Idle past idleTimeout, the worker goes.
	waitFor(t, "scale down to zero", func() bool { return summary(t, e, id)["total"] == 0.0 })
}

func TestLoadBalancedNoWorkers(t *testing.T) {
	cfg := testConfig(t)
	cfg.LBWait = 100 * time.Millisecond
	e := startEmu(t, cfg)
	id := lbEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 0, "max": 0}})
	st, ans, _ := lbGet(t, e.URL()+"/lb/"+id+"/hello", e.APIKey())
	if st != 503 || ans["error"] != noWorkersDetail {
		t.Errorf("no workers: %d %v", st, ans)
	}
}
