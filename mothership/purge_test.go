package mothership

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// /v2/{resource}/purge-queue reaches every replica (each holds its own
// queue) with the caller's key, and answers the sum; a replica that fails
// makes a 502 naming the resource.
func TestGatewayPurgeQueueReachesEveryReplica(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	h.run(t)
	var calls atomic.Int64
	var urls []string
	for i := range 3 {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /purge-queue", func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if r.Header.Get("Authorization") != "Bearer k" {
				wire.WriteError(w, http.StatusUnauthorized, "bad key")
				return
			}
			wire.WriteJSON(w, http.StatusOK, map[string]any{"removed": i + 1, "status": "completed"})
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	publish := func(urls []string) {
		mf := buildManifest(t, res{name: "gpu", min: len(urls)}).WithRuntime("gpu",
			manifest.Runtime{EndpointURLs: urls, Status: manifest.StatusDeployed})
		if _, err := h.m.Publish(t.Context(), mf); err != nil {
			t.Fatal(err)
		}
	}
	purge := func(key string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", h.srv.URL+"/v2/gpu/purge-queue", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	publish(urls)
	if code, out := purge("k"); code != http.StatusOK || fmt.Sprint(out["removed"]) != "6" || out["status"] != "completed" {
		t.Fatalf("purge: %d %v", code, out)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d replicas purged, want 3", n)
	}
	if code, out := purge("wrong"); code != http.StatusBadGateway || !strings.Contains(fmt.Sprint(out), `"gpu"`) {
		t.Errorf("a replica refusing: %d %v", code, out)
	}
}
