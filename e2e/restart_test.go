package e2e

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/store/sqlite"
)

// TestDataPlaneCallAcrossChildRestart kills embedder (kill -9) and at once
// calls /process on api, which calls embed: the call waits, within its
// deadline, for the restarted embedder instead of failing (issue 13).
func TestDataPlaneCallAcrossChildRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	mustProcess(t, apiURL, pipelineServedBy)

	for round := range 3 {
		victim := w.endpointOf(t, "embedder")
		w.killPID(t, victim.PID)
		if _, err := processWith(apiURL, "X-Flash-Timeout: 20000"); err != nil {
			t.Fatalf("round %d: a call across embedder's restart failed: %v", round, err)
		}
		if after := w.endpointOf(t, "embedder"); after.PID == victim.PID {
			t.Fatalf("round %d: embedder was not restarted (pid %d)", round, after.PID)
		}
	}
}

// TestDataPlaneErrorsHideChildURLs points api's manifest at an embedder
// address where nothing listens: the failure that reaches callers outside
// the app (api's route, the mothership's gateway) says what failed without
// the internal address.
func TestDataPlaneErrorsHideChildURLs(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ms.settle(t, 30*time.Second) // no publication of its own after ours

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sqlite.Open(ctx, w.statePath())
	if err != nil {
		t.Fatal(err)
	}
	latest, err := db.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mf := decodeJSON(t, latest.Manifest)
	emb := object(t, object(t, mf, "resources"), "embedder")
	emb["endpoint_url"], emb["endpoint_urls"] = "http://"+dead, []string{"http://" + dead}
	moved, err := db.Publish(ctx, latest.Version, encodeJSON(t, mf))
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r := mustSend(t, http.MethodPost, ms.url+"/flash/invalidate", apiKey, nil); r.Code != http.StatusOK {
		t.Fatalf("POST /flash/invalidate: %s", r)
	}
	eventually(t, 10*time.Second, "api applied the version with the dead embedder", func() error {
		return ms.synced(ms.status(t), moved.Version)
	})

	// No deadline: api's call gives up on the refusing embedder by itself
	// (after child.DefaultWaitRefused) and answers the error.
	r, err := send(http.MethodPost, apiURL+"/process", apiKey, textIn{Text: sampleText})
	if err != nil {
		t.Fatal(err)
	}
	if r.Code == http.StatusOK || !isJSONError(r) {
		t.Fatalf("POST /process with embedder unreachable: %s, want a JSON error", r)
	}
	if body := string(r.Body); strings.Contains(body, dead) || !strings.Contains(body, "embedder") {
		t.Errorf("POST /process: %s: want the resource named and no internal address", body)
	}
	t.Logf("outside caller saw: %d %s", r.Code, r.Body)

	r, err = send(http.MethodPost, ms.url+"/v2/embedder/runsync", apiKey, envelope("embed", textIn{Text: sampleText}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Code == http.StatusOK || strings.Contains(string(r.Body), dead) {
		t.Errorf("gateway to an unreachable embedder: %s: want an error without the internal address", r)
	}
}
