//go:build load

// Load runs (issue 8), not part of CI:
//
//	go test -tags load -run TestLoad -v -timeout 30m ./e2e/
//
// E2E_LOAD_DURATION (a Go duration, default 60s) is the length of each
// closed-loop run of TestLoadProcess; E2E_OVERLOAD_DURATION (default 20s)
// the overloads of TestLoadOverload and TestLoadOverloadLB;
// E2E_RUN_DURATION (default 30s) the /run load of TestLoadRun;
// E2E_LOAD_LOG_LEVEL, when set, becomes every process's FLASH_LOG_LEVEL.

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// envDuration reads a Go duration from the environment variable name.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive Go duration", name, v)
	}
	return d
}

// logLevelEnv passes E2E_LOAD_LOG_LEVEL on as FLASH_LOG_LEVEL.
func logLevelEnv() []string {
	if v := os.Getenv("E2E_LOAD_LOG_LEVEL"); v != "" {
		return []string{"FLASH_LOG_LEVEL=" + v}
	}
	return nil
}

// rssKB is pid's resident set size (VmRSS) in KiB, -1 when unreadable.
func rssKB(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// loadClient is an HTTP client whose pool keeps a connection per client.
func loadClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns * 2
	tr.MaxIdleConnsPerHost = conns * 2
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// rank is the q-quantile (q in [0, 1]) of sorted durations, unrounded
// (ha_test.go's quantile rounds to milliseconds).
func rank(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func msOf(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// TestLoadProcess drives POST /process through the deployed demo (api →
// embedder, summarizer) with a closed loop of C concurrent clients, for C = 8
// and 32, each for E2E_LOAD_DURATION: no call may fail. It logs latency
// quantiles, throughput and every process's RSS before and after.
func TestLoadProcess(t *testing.T) {
	dur := envDuration(t, "E2E_LOAD_DURATION", 60*time.Second)
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership(logLevelEnv()...)
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	procs := map[string]int{"mothership": ms.proc.pid}
	for _, r := range pipelineResources {
		procs[r] = w.endpointOf(t, r).PID
	}
	names := []string{"mothership", "api", "embedder", "summarizer"}
	body, err := json.Marshal(textIn{Text: sampleText})
	if err != nil {
		t.Fatal(err)
	}

	var rows []string
	for _, c := range []int{8, 32} {
		hc := loadClient(c)
		call := func() (time.Duration, error) {
			start := time.Now()
			req, err := http.NewRequest(http.MethodPost, apiURL+"/process", strings.NewReader(string(body)))
			if err != nil {
				return 0, err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := hc.Do(req)
			if err != nil {
				return 0, err
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if err != nil {
				return took, err
			}
			var out processOut
			if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &out) != nil || out.Words != 13 {
				return took, fmt.Errorf("%d %s", resp.StatusCode, data)
			}
			return took, nil
		}
		// Warm the pools and the JIT-less caches for a moment; not measured.
		warm := time.Now().Add(2 * time.Second)
		var wg sync.WaitGroup
		for range c {
			wg.Go(func() {
				for time.Now().Before(warm) {
					call()
				}
			})
		}
		wg.Wait()

		before := map[string]int64{}
		for _, n := range names {
			before[n] = rssKB(procs[n])
		}
		const maxCalls = 10_000_000
		var (
			count    atomic.Int64
			failed   atomic.Int64
			mu       sync.Mutex
			all      []time.Duration
			failures []string
		)
		start := time.Now()
		deadline := start.Add(dur)
		for range c {
			wg.Go(func() {
				lat := make([]time.Duration, 0, 1<<16)
				for time.Now().Before(deadline) && count.Add(1) <= maxCalls {
					took, err := call()
					if err != nil {
						if failed.Add(1) <= 5 {
							mu.Lock()
							failures = append(failures, err.Error())
							mu.Unlock()
						}
						continue
					}
					lat = append(lat, took)
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		hc.CloseIdleConnections()
		slices.Sort(all)
		rps := float64(len(all)) / elapsed.Seconds()
		var rss []string
		for _, n := range names {
			rss = append(rss, fmt.Sprintf("%s %d→%d MiB", n, before[n]/1024, rssKB(procs[n])/1024))
		}
		row := fmt.Sprintf("| %d | %s | %d | %d | %.0f/s | %s | %s | %s | %s | %s |", c, elapsed.Round(time.Second), len(all), failed.Load(),
			rps, msOf(rank(all, 0.5)), msOf(rank(all, 0.9)), msOf(rank(all, 0.99)), msOf(rank(all, 1)), strings.Join(rss, ", "))
		t.Log(row)
		rows = append(rows, row)
		if n := failed.Load(); n > 0 {
			t.Errorf("C=%d: %d of %d calls failed, want none:\n%s", c, n, int64(len(all))+n, strings.Join(failures, "\n"))
		}
	}
	t.Logf("\n| C | time | calls | failed | throughput | p50 | p90 | p99 | max | RSS start→end |\n|---|---|---|---|---|---|---|---|---|---|\n%s",
		strings.Join(rows, "\n"))
}

// histogram429 reads, from an endpoint's /metrics, how many 429 answers it
// gave and how many of them took at most 0.5 ms (the first bucket of
// flash_http_request_duration_seconds).
func histogram429(t *testing.T, base string) (fast, total float64) {
	t.Helper()
	r := mustSend(t, http.MethodGet, base+"/metrics", apiKey, nil)
	for line := range strings.SplitSeq(string(r.Body), "\n") {
		if !strings.Contains(line, `code="429"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "flash_http_request_duration_seconds_bucket") && strings.Contains(line, `le="0.0005"`):
			fast += v
		case strings.HasPrefix(line, "flash_http_request_duration_seconds_count"):
			total += v
		}
	}
	return fast, total
}

// metricWorkers reads flash_workers from an endpoint's /metrics.
func metricWorkers(t *testing.T, base string) int {
	t.Helper()
	for line := range strings.SplitSeq(string(mustSend(t, http.MethodGet, base+"/metrics", apiKey, nil).Body), "\n") {
		if strings.HasPrefix(line, "flash_workers{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v)
		}
	}
	t.Fatal("no flash_workers in /metrics")
	return 0
}

// TestLoadOverload offers a lone queue-based endpoint (testapp's back, its
// worker pool and queue at their defaults) ten times the jobs it can run:
// /runsync of slow (500 ms) at 10 × workers / 0.5 s per second.
func TestLoadOverload(t *testing.T) {
	w := newWorld(t, bins.testapp, "testapp")
	port := strconv.Itoa(freePort(t))
	p := w.start("back", append([]string{"FLASH_RESOURCE_NAME=back", "PORT=" + port, "FLASH_API_KEY=" + apiKey}, logLevelEnv()...)...)
	base := "http://127.0.0.1:" + port
	waitPing(t, base, 20*time.Second)
	workers := metricWorkers(t, base)
	body, _ := json.Marshal(envelope("slow", map[string]int{"ms": 500}))
	t.Logf("workers %d", workers)
	overload(t, p.pid, base, base+"/runsync", body, float64(workers)/0.5)
}

// TestLoadOverloadLB does the same to a load-balanced route: testapp's edge
// alone, POST /sleep of 500 ms, admission FLASH_LB_CONCURRENCY=16 running and
// FLASH_LB_QUEUE=16 waiting, offered 10 × 16 / 0.5 s per second.
func TestLoadOverloadLB(t *testing.T) {
	const conc = 16
	w := newWorld(t, bins.testapp, "testapp")
	port := strconv.Itoa(freePort(t))
	p := w.start("edge", append([]string{"FLASH_RESOURCE_NAME=edge", "PORT=" + port, "FLASH_API_KEY=" + apiKey,
		"FLASH_LB_CONCURRENCY=" + strconv.Itoa(conc), "FLASH_LB_QUEUE=" + strconv.Itoa(conc)}, logLevelEnv()...)...)
	base := "http://127.0.0.1:" + port
	waitPing(t, base, 20*time.Second)
	body, _ := json.Marshal(map[string]int{"ms": 500})
	overload(t, p.pid, base, base+"/sleep", body, conc/0.5)
}

// overload posts body to url at 10 × capacity per second, open loop, for
// E2E_OVERLOAD_DURATION, against the endpoint at base run by pid. The
// excess must be refused at once with 429 (server side within 0.5 ms), no
// other error may occur, and memory must stay flat while the overload lasts
// (at most 16 MiB more at its end than half-way).
func overload(t *testing.T, pid int, base, url string, body []byte, capacity float64) {
	dur := envDuration(t, "E2E_OVERLOAD_DURATION", 20*time.Second)
	rate := 10 * capacity
	hc := loadClient(2048)

	rssStart := rssKB(pid)
	var (
		ok, refused, other atomic.Int64
		mu                 sync.Mutex
		lat429             []time.Duration
		others             []string
		wg                 sync.WaitGroup
		inflight           atomic.Int64
		rssFull, rssPeak   atomic.Int64
	)
	const maxInflight = 4096 // the client's own bound
	start := time.Now()
	deadline := start.Add(dur)
	interval := time.Duration(float64(time.Second) / rate)
	next, sampled := start, start
	var rssSeries []string // MiB, every 2 s
	sent := 0
	for time.Now().Before(deadline) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // pacing the open loop
		}
		next = next.Add(interval)
		if time.Since(sampled) >= 250*time.Millisecond {
			sampled = time.Now()
			rss := rssKB(pid)
			rssPeak.Store(max(rssPeak.Load(), rss))
			if len(rssSeries) == 0 || sampled.Sub(start) >= time.Duration(len(rssSeries))*2*time.Second {
				rssSeries = append(rssSeries, strconv.FormatInt(rss/1024, 10))
			}
			if sampled.Sub(start) > dur/2 && rssFull.Load() == 0 {
				rssFull.Store(rss) // the queue has been full for a while
			}
		}
		if inflight.Load() >= maxInflight {
			other.Add(1)
			continue
		}
		sent++
		inflight.Add(1)
		wg.Go(func() {
			defer inflight.Add(-1)
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+apiKey)
			t0 := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				other.Add(1)
				mu.Lock()
				if len(others) < 5 {
					others = append(others, err.Error())
				}
				mu.Unlock()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took := time.Since(t0)
			switch resp.StatusCode {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
				mu.Lock()
				lat429 = append(lat429, took)
				mu.Unlock()
			default:
				other.Add(1)
				mu.Lock()
				if len(others) < 5 {
					others = append(others, resp.Status)
				}
				mu.Unlock()
			}
		})
	}
	rssEnd := rssKB(pid)
	offered := time.Since(start)
	wg.Wait() // the accepted calls drain
	drained := time.Since(start)
	hc.CloseIdleConnections()
	rssDrained := rssKB(pid)
	fast, total := histogram429(t, base)

	slices.Sort(lat429)
	t.Logf("capacity %.0f calls/s; offered %.0f/s for %s (%d requests)", capacity, float64(sent)/offered.Seconds(), offered.Round(time.Second), sent)
	t.Logf("answers: %d × 200 (%.0f/s until drained at %s), %d × 429, %d other", ok.Load(), float64(ok.Load())/drained.Seconds(), drained.Round(time.Second), refused.Load(), other.Load())
	t.Logf("429 latency at the client: p50 %s, p99 %s, max %s; server side: %.0f of %.0f (%.2f%%) within 0.5 ms",
		msOf(rank(lat429, 0.5)), msOf(rank(lat429, 0.99)), msOf(rank(lat429, 1)), fast, total, 100*fast/max(total, 1))
	t.Logf("RSS: start %d MiB, half-way %d MiB, end of overload %d MiB, peak %d MiB, drained %d MiB; every 2 s: %s",
		rssStart/1024, rssFull.Load()/1024, rssEnd/1024, rssPeak.Load()/1024, rssDrained/1024, strings.Join(rssSeries, " "))

	if n := other.Load(); n > 0 {
		t.Errorf("%d answers neither 200 nor 429: %v", n, others)
	}
	if refused.Load() < int64(sent)/2 {
		t.Errorf("only %d of %d requests refused with 429 at 10× capacity", refused.Load(), sent)
	}
	if total == 0 || fast/total < 0.99 {
		t.Errorf("server side, %.0f of %.0f 429 answers took at most 0.5 ms, want 99%%", fast, total)
	}
	if grow := rssEnd - rssFull.Load(); grow > 16<<10 {
		t.Errorf("RSS grew by %d MiB in the second half of the overload (from %d to %d MiB)", grow/1024, rssFull.Load()/1024, rssEnd/1024)
	}
}

// TestLoadRun keeps 64 connections posting /run (slow, 0 ms) to a lone
// queue-based endpoint (testapp's back) for E2E_RUN_DURATION, its retained
// results bounded by FLASH_MAX_RESULTS=20000: once the bound is reached new
// jobs get 429, memory stays flat. It samples the RSS every 2 s.
func TestLoadRun(t *testing.T) {
	const conns, maxResults = 64, 20_000
	dur := envDuration(t, "E2E_RUN_DURATION", 30*time.Second)
	w := newWorld(t, bins.testapp, "testapp")
	port := strconv.Itoa(freePort(t))
	p := w.start("back", append([]string{"FLASH_RESOURCE_NAME=back", "PORT=" + port, "FLASH_API_KEY=" + apiKey,
		"FLASH_MAX_RESULTS=" + strconv.Itoa(maxResults)}, logLevelEnv()...)...)
	base := "http://127.0.0.1:" + port
	waitPing(t, base, 20*time.Second)
	body, _ := json.Marshal(envelope("slow", map[string]int{"ms": 0}))
	hc := loadClient(conns)

	const maxCalls = 10_000_000
	var (
		calls, ok, refused, other atomic.Int64
		mu                        sync.Mutex
		others                    []string
		wg                        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) && calls.Add(1) <= maxCalls {
				req, _ := http.NewRequest(http.MethodPost, base+"/run", strings.NewReader(string(body)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+apiKey)
				resp, err := hc.Do(req)
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				switch code {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					other.Add(1)
					mu.Lock()
					if len(others) < 5 {
						others = append(others, fmt.Sprint(code, err))
					}
					mu.Unlock()
				}
			}
		})
	}
	rssStart := rssKB(p.pid)
	series := []string{strconv.FormatInt(rssStart/1024, 10)}
	var firstRefusal time.Duration
	for time.Now().Before(deadline) {
		time.Sleep(min(2*time.Second, time.Until(deadline)))
		series = append(series, fmt.Sprintf("%d(%d/%d)", rssKB(p.pid)/1024, ok.Load(), refused.Load()))
		if firstRefusal == 0 && refused.Load() > 0 {
			firstRefusal = time.Since(start).Round(time.Second)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	hc.CloseIdleConnections()
	rssEnd := rssKB(p.pid)
	t.Logf("%d conns, %s: %d × 200 (%.0f/s), %d × 429 (first seen by %s), %d other",
		conns, elapsed.Round(time.Second), ok.Load(), float64(ok.Load())/elapsed.Seconds(), refused.Load(), firstRefusal, other.Load())
	t.Logf("RSS %d → %d MiB; every 2 s, MiB(200s/429s so far): %s", rssStart/1024, rssEnd/1024, strings.Join(series, " "))
	if n := other.Load(); n > 0 {
		t.Errorf("%d answers neither 200 nor 429: %v", n, others)
	}
	if ok.Load() > maxResults {
		t.Errorf("%d jobs accepted, want at most FLASH_MAX_RESULTS=%d within the result TTL", ok.Load(), maxResults)
	}
}

// TestLoadRecovery kills (SIGKILL) the embedder of the deployed demo under a
// steady POST /process load (8 clients, one call per 20 ms each) and logs
// how long after the kill calls succeed again and how many failed. The local
// provider restarts the child; callers wait for it within their deadline.
func TestLoadRecovery(t *testing.T) {
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership(logLevelEnv()...)
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL

	type result struct {
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	c := startCaller("process", 8, 20*time.Millisecond, 30*time.Second, 100_000, func() error {
		t0 := time.Now()
		_, err := processWith(apiURL)
		mu.Lock()
		results = append(results, result{t0, time.Now(), err})
		mu.Unlock()
		return err
	})
	time.Sleep(3 * time.Second)
	victim := w.endpointOf(t, "embedder").PID
	killed := time.Now()
	w.signal(t, victim, syscall.SIGKILL)
	time.Sleep(7 * time.Second)
	c.finish()
	newPID := w.endpointOf(t, "embedder").PID

	mu.Lock()
	defer mu.Unlock()
	var (
		recovered         time.Duration = -1
		before, after     int
		failed            int
		slowest           time.Duration
		spanning, okAfter int
	)
	for _, r := range results {
		if r.end.Before(killed) {
			before++
			continue
		}
		after++
		if r.err != nil {
			failed++
		} else {
			okAfter++
		}
		if r.start.Before(killed) {
			spanning++
		}
		slowest = max(slowest, r.end.Sub(r.start))
		if r.err == nil && !r.start.Before(killed) && (recovered < 0 || r.end.Sub(killed) < recovered) {
			recovered = r.end.Sub(killed)
		}
	}
	t.Logf("embedder pid %d killed, restarted as %d; calls before the kill %d, after %d (%d spanning it): %d failed, %d ok; "+
		"first success of a call started after the kill: +%s; slowest call after the kill %s",
		victim, newPID, before, after, spanning, failed, okAfter, msOf(recovered), msOf(slowest))
	if failed > 0 {
		t.Logf("failures:\n%s", c.failureList())
	}
	if recovered < 0 {
		t.Errorf("no call succeeded in the 7 s after the kill")
	}
}
