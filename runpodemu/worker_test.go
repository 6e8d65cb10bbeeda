package runpodemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The test binary doubles as a worker: with RUNPODEMU_TEST_WORKER set in its
// environment (through the endpoint's env) TestMain runs one of these
// instead of the tests. They speak the protocol as Runpod's worker SDK does
// (RUNPOD.md §4), with no flash code.

// testJob is the input the queue worker understands.
type testJob struct {
	SleepMs   int    `json:"sleep_ms"`   // work this long (cancellable)
	Fail      string `json:"fail"`       // answer this error
	CrashOnce string `json:"crash_once"` // exit 3 mid-job unless this file exists (and create it)
	Stream    int    `json:"stream"`     // post this many stream chunks first
	StopMark  string `json:"stop_mark"`  // write this file when the job is stopped through the stop channel
	Volume    string `json:"volume"`     // write this file name into ./runpod-volume
	Progress  bool   `json:"progress"`   // post one progress update
}

func runTestWorker(kind string) int {
	switch kind {
	case "queue":
		return queueWorker()
	case "lb":
		return lbWorker()
	}
	return 2
}

func queueWorker() int {
	id, key := os.Getenv("RUNPOD_POD_ID"), os.Getenv("RUNPOD_AI_API_KEY")
	take := strings.ReplaceAll(os.Getenv("RUNPOD_WEBHOOK_GET_JOB"), "$ID", id)
	stopURL := strings.Replace(take, "/job-take/", "/job-stop/", 1)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	client := &http.Client{Timeout: 90 * time.Second}
	call := func(method, url string, body any) (*http.Response, error) {
		var rd *bytes.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, _ := http.NewRequestWithContext(context.Background(), method, url, rd)
		req.Header.Set("Authorization", key)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as the SDK, sic
		return client.Do(req)
	}
	jobURL := func(env, job string) string {
		u := strings.ReplaceAll(os.Getenv(env), "$RUNPOD_POD_ID", id)
		return strings.ReplaceAll(u, "$ID", job)
	}
	var mu sync.Mutex
	running := map[string]context.CancelFunc{}
	stopAsked := map[string]bool{} // a stop may arrive before the job is registered
	go func() {                    // stop channel
		for ctx.Err() == nil {
			resp, err := call("GET", stopURL, nil)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			var body struct{ JobsToStop []string }
			if resp.StatusCode == 200 {
				json.NewDecoder(resp.Body).Decode(&body)
			}
			resp.Body.Close()
			mu.Lock()
			for _, j := range body.JobsToStop {
				if cancel := running[j]; cancel != nil {
					cancel()
				}
				stopAsked[j] = true
			}
			mu.Unlock()
		}
	}()
	go func() { // heartbeat
		for ctx.Err() == nil {
			if resp, err := call("GET", jobURL("RUNPOD_WEBHOOK_PING", ""), nil); err == nil {
				resp.Body.Close()
			}
			time.Sleep(time.Second)
		}
	}()
	done := 0
	for ctx.Err() == nil {
		resp, err := call("GET", take+"&job_in_progress=0", nil)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			continue
		}
		var j struct {
			ID    string  `json:"id"`
			Input testJob `json:"input"`
		}
		json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		done++
		in := j.Input
		if in.CrashOnce != "" {
			if _, err := os.Stat(in.CrashOnce); err != nil {
				os.WriteFile(in.CrashOnce, []byte(id), 0o600)
				os.Exit(3)
			}
		}
		jctx, cancel := context.WithCancel(context.Background())
		mu.Lock()
		running[j.ID] = cancel
		if stopAsked[j.ID] {
			cancel()
		}
		mu.Unlock()
		for i := range in.Stream {
			if r, err := call("POST", jobURL("RUNPOD_WEBHOOK_POST_STREAM", j.ID)+"&isStream=false", map[string]any{"output": i}); err == nil {
				r.Body.Close()
			}
		}
		if in.Progress {
			if r, err := call("POST", jobURL("RUNPOD_WEBHOOK_POST_OUTPUT", j.ID)+"&isStream=false", map[string]any{"status": "IN_PROGRESS", "output": "half"}); err == nil {
				r.Body.Close()
			}
		}
		stopped := false
		select {
		case <-time.After(time.Duration(in.SleepMs) * time.Millisecond):
		case <-jctx.Done():
			stopped = true
		}
		mu.Lock()
		delete(running, j.ID)
		mu.Unlock()
		cancel()
		if stopped {
			if in.StopMark != "" {
				os.WriteFile(in.StopMark, []byte(j.ID), 0o600)
			}
			continue // a stopped job posts nothing
		}
		if in.Volume != "" {
			os.WriteFile(filepath.Join("runpod-volume", in.Volume), []byte(id), 0o600)
		}
		var result map[string]any
		if in.Fail != "" {
			result = map[string]any{"error": in.Fail}
		} else {
			env := map[string]string{}
			for _, k := range []string{"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "RUNPOD_SKIP_GPU_CHECK", "RUNPOD_ENDPOINT_ID",
				"RUNPOD_PING_INTERVAL", "RUNPOD_VOLUME_ID", "RUNPOD_DC_ID", "RUNPOD_GPU_COUNT", "MY_VAR"} {
				env[k] = os.Getenv(k)
			}
			result = map[string]any{"output": map[string]any{"worker": id, "n": done, "env": env}}
		}
		if r, err := call("POST", jobURL("RUNPOD_WEBHOOK_POST_OUTPUT", j.ID)+"&isStream=false", result); err == nil {
			r.Body.Close()
		}
	}
	return 0
}

func lbWorker() int {
	id := os.Getenv("RUNPOD_POD_ID")
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+os.Getenv("HEALTH_CHECK_PATH"), func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"worker":%q,"path":%q,"auth":%q}`, id, r.URL.Path, r.Header.Get("Authorization"))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	srv.ListenAndServe()
	return 0
}
