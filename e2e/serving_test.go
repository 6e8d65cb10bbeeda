package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServingQueueChild runs the pipeline's embedder as a lone child (no
// mothership: every call in-process) and checks the Runpod job API of SPEC
// §5.4 and the rules every endpoint follows (§5.6).
func TestServingQueueChild(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	port := strconv.Itoa(freePort(t))
	w.start("embedder", "FLASH_RESOURCE_NAME=embedder", "PORT="+port, "FLASH_API_KEY="+apiKey, "FLASH_MAX_BODY=1024")
	base := "http://127.0.0.1:" + port
	waitPing(t, base, 20*time.Second)
	in := textIn{Text: "hello world"}

	var want embedOut
	t.Run("runsync", func(t *testing.T) {
		j := runsync(t, base+"/runsync", "embed", in)
		j.result(t, &want)
		if want.ServedBy != "embedder" || len(want.Vector) != 8 {
			t.Errorf("embed answered %+v, want served_by embedder and 8 numbers", want)
		}
		if j.ID == "" || j.Output == nil || !j.Output.Success {
			t.Errorf("job answer %+v: want an id and output.success", j)
		}
	})

	t.Run("runsync under /v2/{id}", func(t *testing.T) {
		var got embedOut
		runsync(t, base+"/v2/ep123/runsync", "embed", in).result(t, &got)
		if got.ServedBy != "embedder" || !slices.Equal(got.Vector, want.Vector) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})

	t.Run("kwargs instead of args", func(t *testing.T) {
		body := map[string]any{"input": map[string]any{"function_name": "embed", "kwargs": map[string]any{"text": in.Text}}}
		r := mustSend(t, http.MethodPost, base+"/runsync", apiKey, body)
		var j job
		r.decode(t, &j)
		var got embedOut
		j.result(t, &got)
		if !slices.Equal(got.Vector, want.Vector) {
			t.Errorf("kwargs gave %v, args gave %v", got.Vector, want.Vector)
		}
	})

	t.Run("run, status, cancel", func(t *testing.T) {
		for _, prefix := range []string{"", "/v2/ep123"} {
			r := mustSend(t, http.MethodPost, base+prefix+"/run", apiKey, envelope("embed", in))
			var queued job
			r.decode(t, &queued)
			if r.Code != http.StatusOK || queued.ID == "" || queued.Status != "IN_QUEUE" {
				t.Fatalf("POST %s/run: %s, want 200 with an id and IN_QUEUE", prefix, r)
			}
			var done job
			eventually(t, 10*time.Second, "job "+queued.ID+" COMPLETED", func() error {
				r, err := send(http.MethodGet, base+prefix+"/status/"+queued.ID, apiKey, nil)
				if err != nil {
					return err
				}
				done = job{}
				if err := json.Unmarshal(r.Body, &done); err != nil || r.Code != http.StatusOK {
					return fmt.Errorf("%s (%v)", r, err)
				}
				switch done.Status {
				case "COMPLETED":
					return nil
				case "IN_QUEUE", "IN_PROGRESS":
					return errors.New(done.Status)
				}
				t.Fatalf("job ended %s: %+v", done.Status, done)
				return nil
			})
			var got embedOut
			done.result(t, &got)
			if done.ID != queued.ID || got.ServedBy != "embedder" {
				t.Errorf("status answered %+v / %+v", done, got)
			}

			// Cancelling a finished job changes nothing.
			r = mustSend(t, http.MethodPost, base+prefix+"/cancel/"+queued.ID, apiKey, nil)
			var cancelled job
			r.decode(t, &cancelled)
			if r.Code != http.StatusOK || cancelled.ID != queued.ID || cancelled.Status != "COMPLETED" {
				t.Errorf("POST /cancel of a finished job: %s, want 200 and status COMPLETED", r)
			}
			r = mustSend(t, http.MethodGet, base+prefix+"/status/"+queued.ID, apiKey, nil)
			var again job
			r.decode(t, &again)
			if again.Status != "COMPLETED" {
				t.Errorf("status after cancel: %s, want COMPLETED", r)
			}
		}
	})

	t.Run("unknown job id", func(t *testing.T) {
		for _, req := range []struct{ method, path string }{
			{http.MethodGet, "/status/no-such-job"},
			{http.MethodPost, "/cancel/no-such-job"},
			{http.MethodGet, "/v2/ep123/status/no-such-job"},
		} {
			if r := mustSend(t, req.method, base+req.path, apiKey, nil); r.Code != http.StatusNotFound || !isJSONError(r) {
				t.Errorf("%s %s: %s, want 404 with a JSON error", req.method, req.path, r)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		r := mustSend(t, http.MethodGet, base+"/health", apiKey, nil)
		if r.Code != http.StatusOK {
			t.Fatalf("GET /health: %s", r)
		}
		var h map[string]map[string]json.Number
		r.decode(t, &h)
		for group, keys := range map[string][]string{
			"jobs":    {"completed", "failed", "inProgress", "inQueue", "retried"},
			"workers": {"idle", "running"},
		} {
			for _, k := range keys {
				if _, ok := h[group][k]; !ok {
					t.Errorf("GET /health: no %s.%s in %s", group, k, r)
				}
			}
		}
		if n, _ := h["jobs"]["completed"].Int64(); n < 2 {
			t.Errorf("GET /health: jobs.completed = %d after the jobs above", n)
		}
	})

	t.Run("auth", func(t *testing.T) {
		for _, key := range []string{"", "wrong"} {
			for _, req := range []struct {
				method, path string
				body         any
			}{
				{http.MethodPost, "/runsync", envelope("embed", in)},
				{http.MethodPost, "/v2/ep123/run", envelope("embed", in)},
				{http.MethodGet, "/health", nil},
				{http.MethodGet, "/metrics", nil},
			} {
				if r := mustSend(t, req.method, base+req.path, key, req.body); r.Code != http.StatusUnauthorized {
					t.Errorf("%s %s with key %q: %s, want 401", req.method, req.path, key, r)
				}
			}
		}
		r := mustSend(t, http.MethodGet, base+"/ping", "", nil)
		var ping map[string]string
		r.decode(t, &ping)
		if r.Code != http.StatusOK || ping["status"] != "healthy" {
			t.Errorf("GET /ping without a key: %s, want 200 {\"status\":\"healthy\"}", r)
		}
	})

	t.Run("body over FLASH_MAX_BODY", func(t *testing.T) {
		big := envelope("embed", textIn{Text: strings.Repeat("x", 2048)})
		if r := mustSend(t, http.MethodPost, base+"/runsync", apiKey, big); r.Code != http.StatusRequestEntityTooLarge || !isJSONError(r) {
			t.Errorf("2 KiB body with FLASH_MAX_BODY=1024: %s, want 413 with a JSON error", r)
		}
		// The endpoint still serves after refusing it.
		runsync(t, base+"/runsync", "embed", in).result(t, &embedOut{})
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct {
			name, body string
			mention    string // in the error message
		}{
			{"malformed JSON", `{"input": {"function_name": "embed"`, "JSON"},
			{"not an object", `[1, 2]`, "object"},
			{"missing input", `{"inputs": {"function_name": "embed", "args": [{}]}}`, "input"},
			{"function_code", `{"input": {"function_name": "embed", "function_code": "def embed(x): return x", "args": [{}]}}`, "compiled-in"},
			{"class_code", `{"input": {"function_name": "embed", "class_code": "class E: pass", "args": [{}]}}`, "compiled-in"},
			{"execution_type class", `{"input": {"function_name": "embed", "execution_type": "class", "args": [{}]}}`, "compiled-in"},
		} {
			r := mustSend(t, http.MethodPost, base+"/runsync", apiKey, c.body)
			if r.Code != http.StatusBadRequest || !isJSONError(r) || !strings.Contains(errorText(r), c.mention) {
				t.Errorf("%s: %s, want 400 with a JSON error mentioning %q", c.name, r, c.mention)
			}
		}
	})

	t.Run("unknown function", func(t *testing.T) {
		r := mustSend(t, http.MethodPost, base+"/runsync", apiKey, envelope("nope", in))
		var body struct {
			Error     string   `json:"error"`
			Available []string `json:"available"`
		}
		r.decode(t, &body)
		if r.Code != http.StatusNotFound || !strings.Contains(body.Error, "nope") || !slices.Contains(body.Available, "embed") {
			t.Errorf("unknown function: %s, want 404 naming it and listing \"embed\"", r)
		}
	})
}

// TestServingStandalone runs the pipeline with no role at all: every
// function runs in the one process (SPEC §3).
func TestServingStandalone(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	port := strconv.Itoa(freePort(t))
	p := w.start("standalone", "PORT="+port)
	base := "http://127.0.0.1:" + port
	waitPing(t, base, 20*time.Second)

	mustProcess(t, base, map[string]string{"process": "standalone", "embed": "standalone", "summarize": "standalone", "count_words": "standalone"})

	r := mustSend(t, http.MethodGet, base+"/stats/last-hour", "", nil)
	var stats struct {
		Window   string `json:"window"`
		ServedBy string `json:"served_by"`
	}
	r.decode(t, &stats)
	if r.Code != http.StatusOK || stats.Window != "last-hour" || stats.ServedBy != "standalone" {
		t.Errorf("GET /stats/last-hour: %s", r)
	}
	if r := mustSend(t, http.MethodPost, base+"/process", "", textIn{Text: "  "}); r.Code != http.StatusInternalServerError || !isJSONError(r) {
		t.Errorf("POST /process with empty text: %s, want 500 with a JSON error", r)
	}
	if !logContains(p.log, "standalone") {
		t.Errorf("the standalone process did not log that it runs standalone")
	}
	// SIGTERM: a graceful stop, exit status 0 (SPEC §5.6).
	if err := p.stop(t, 10*time.Second); err != nil {
		t.Errorf("after SIGTERM the standalone process exited with %v, want status 0", err)
	}
}

// isJSONError reports whether r's body is a JSON object with an "error" string.
func isJSONError(r response) bool {
	return errorText(r) != ""
}

func errorText(r response) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(r.Body, &e) != nil {
		return ""
	}
	return e.Error
}
