//go:build load

// Runpod emulator figures (issue 19), not part of CI:
//
//	go test -tags load -run TestLoadRunpod -v -timeout 30m ./e2e/
//
// E2E_RUNPOD_DURATION (default 20s) is the length of each closed-loop run.

package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestLoadRunpodQueueVsDirect drives embed with a closed loop of C clients,
// first through the emulator's queue (POST /v2/{id}/runsync: queue → job-take
// → child → job-done → answer), then straight to the same child's /runsync,
// and logs throughput, p50 and p99 of both and their ratio.
func TestLoadRunpodQueueVsDirect(t *testing.T) {
	e := emulator(t)
	port := freePort(t)
	body := flashEndpoint(bins.pipeline, "embedder", "QUEUE", 1, 1)
	body["env"].(map[string]string)["PORT"] = strconv.Itoa(port) // the worker also serves /runsync there
	body["env"].(map[string]string)["FLASH_LOG_LEVEL"] = "warn"
	ep := createEndpoint(t, e, body)
	queue := e.URL() + "/v2/" + ep["id"].(string) + "/runsync"
	direct := "http://127.0.0.1:" + strconv.Itoa(port) + "/runsync"
	runsync(t, queue, "embed", textIn{Text: "warm up"}) // the worker is up
	waitPing(t, "http://127.0.0.1:"+strconv.Itoa(port), 30*time.Second)
	d := envDuration(t, "E2E_RUNPOD_DURATION", 20*time.Second)
	for _, c := range []int{1, 8} {
		q := closedLoop(t, queue, c, d)
		dr := closedLoop(t, direct, c, d)
		t.Logf("C=%d queue:  %6.0f jobs/s  p50 %s  p99 %s  (%d jobs)", c, q.rate, msOf(q.p50), msOf(q.p99), q.n)
		t.Logf("C=%d direct: %6.0f jobs/s  p50 %s  p99 %s  (%d jobs)", c, dr.rate, msOf(dr.p50), msOf(dr.p99), dr.n)
		t.Logf("C=%d ratio queue/direct: throughput %.2f, p50 %.2f, p99 %.2f", c, q.rate/dr.rate,
			float64(q.p50)/float64(dr.p50), float64(q.p99)/float64(dr.p99))
	}
}

type loopResult struct {
	n        int
	rate     float64
	p50, p99 time.Duration
}

// closedLoop sends embed to url from c clients for d; every call must complete.
func closedLoop(t *testing.T, url string, c int, d time.Duration) loopResult {
	t.Helper()
	client := loadClient(c)
	defer client.CloseIdleConnections()
	payload, _ := json.Marshal(envelope("embed", textIn{Text: sampleText}))
	var mu sync.Mutex
	var lat []time.Duration
	var failed error
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for time.Since(start) < d {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
				req.Header.Set("Authorization", "Bearer "+apiKey)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					var j job
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if json.Unmarshal(b, &j) != nil || j.Status != "COMPLETED" {
						err = &jobError{string(b)}
					}
				}
				mu.Lock()
				if err != nil {
					failed = err
				}
				lat = append(lat, time.Since(t0))
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if failed != nil {
		t.Fatalf("%s: %v", url, failed)
	}
	slices.Sort(lat)
	return loopResult{n: len(lat), rate: float64(len(lat)) / time.Since(start).Seconds(), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99)}
}

type jobError struct{ body string }

func (e *jobError) Error() string { return "job not COMPLETED: " + e.body }

// TestLoadRunpodColdStart measures a worker's cold start: a job submitted to
// an endpoint with no worker starts one; the job's delayTime (submission →
// taken) is process start → first job taken, plus the spawn.
func TestLoadRunpodColdStart(t *testing.T) {
	e := emulator(t)
	var delays []time.Duration
	for range 10 {
		ep := createEndpoint(t, e, flashEndpoint(bins.pipeline, "embedder", "QUEUE", 0, 1))
		id := ep["id"].(string)
		r := mustSend(t, http.MethodPost, e.URL()+"/v2/"+id+"/runsync", apiKey, envelope("embed", textIn{Text: "cold"}))
		var ans struct {
			Status    string `json:"status"`
			DelayTime int64  `json:"delayTime"`
		}
		r.decode(t, &ans)
		if ans.Status != "COMPLETED" {
			t.Fatalf("cold job: %s", r)
		}
		delays = append(delays, time.Duration(ans.DelayTime)*time.Millisecond)
		mustSend(t, http.MethodDelete, e.URL()+"/v2/serverless/"+id, apiKey, nil)
	}
	slices.Sort(delays)
	t.Logf("cold start (process start → first job taken), 10 runs: min %s  p50 %s  max %s",
		msOf(delays[0]), msOf(quantile(delays, 0.5)), msOf(delays[len(delays)-1]))
}
