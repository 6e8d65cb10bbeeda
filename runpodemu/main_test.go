package runpodemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv("RUNPODEMU_TEST_WORKER"); kind != "" {
		os.Exit(runTestWorker(kind))
	}
	code := m.Run()
	if code == 0 {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testConfig is a configuration with short timings, so that tests wait
// little; Runpod's values are the defaults.
func testConfig(t *testing.T) Config {
	return Config{Dir: t.TempDir(), APIKey: "test-key", Tick: 50 * time.Millisecond, TakeHold: 2 * time.Second,
		PingInterval: time.Second, StopGrace: 3 * time.Second, LBWait: 30 * time.Second}
}

func startEmu(t *testing.T, cfg Config) *Emulator {
	t.Helper()
	e, err := Start(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// call sends a request with the account key and decodes the JSON answer.
func call(t *testing.T, e *Emulator, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return callKey(t, e, "Bearer "+e.APIKey(), method, path, body)
}

func callKey(t *testing.T, e *Emulator, auth, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.URL()+path, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, out
}

// waitFor polls cond until it holds; it fails the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// workerCommand is the start command of a test worker: this test binary.
func workerCommand(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "exec '" + exe + "'"
}

// queueEndpoint creates a queue endpoint run by test workers.
func queueEndpoint(t *testing.T, e *Emulator, extra map[string]any) string {
	t.Helper()
	body := map[string]any{"name": "q", "type": "QUEUE", "image": "example/worker:1", "args": workerCommand(t),
		"env": map[string]string{"RUNPODEMU_TEST_WORKER": "queue", "MY_VAR": "mine"}, "cpu": []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}},
		"workers": map[string]any{"min": 0, "max": 1, "idleTimeout": 5}, "scaling": map[string]any{"type": "QUEUE_DELAY", "queueDelay": 1}}
	for k, v := range extra {
		body[k] = v
	}
	st, ep := call(t, e, "POST", "/v2/serverless", body)
	if st != 201 {
		t.Fatalf("create endpoint: %d %v", st, ep)
	}
	return ep["id"].(string)
}

// submit posts /run and returns the job id.
func submit(t *testing.T, e *Emulator, ep string, input any) string {
	t.Helper()
	st, ans := call(t, e, "POST", "/v2/"+ep+"/run", map[string]any{"input": input})
	if st != 200 || ans["status"] != statusInQueue {
		t.Fatalf("run: %d %v", st, ans)
	}
	return ans["id"].(string)
}

// final waits for a job to end and returns its job object.
func final(t *testing.T, e *Emulator, ep, id string) map[string]any {
	t.Helper()
	var ans map[string]any
	waitFor(t, "job "+id+" to end", func() bool {
		var st int
		st, ans = call(t, e, "GET", "/v2/"+ep+"/status/"+id, nil)
		if st != 200 {
			t.Fatalf("status %s: %d %v", id, st, ans)
		}
		switch ans["status"] {
		case statusCompleted, statusFailed, statusCancelled, statusTimedOut:
			return true
		}
		return false
	})
	return ans
}

// summary returns the workers summary of an endpoint.
func summary(t *testing.T, e *Emulator, ep string) map[string]any {
	t.Helper()
	st, ans := call(t, e, "GET", "/v2/serverless/"+ep+"/workers", nil)
	if st != 200 {
		t.Fatalf("workers: %d %v", st, ans)
	}
	return ans["summary"].(map[string]any)
}
