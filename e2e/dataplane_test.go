package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/store/sqlite"
)

// TestDataPlaneSurvivesMothership: one request crosses three endpoints; the
// calls keep working with the mothership dead, even through a child that was
// restarted by hand meanwhile and only has its last-known-good manifest
// (SPEC §5.1, §5.2).
func TestDataPlaneSurvivesMothership(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL

	step(t, "one request crosses three endpoints", func(t *testing.T) {
		mustProcess(t, apiURL, pipelineServedBy)
	})

	step(t, "mothership killed", func(t *testing.T) {
		ms.kill(t)
		for range 10 {
			mustProcess(t, apiURL, pipelineServedBy)
		}
	})

	step(t, "child restarted by hand routes from its cached manifest", func(t *testing.T) {
		w.killPID(t, w.endpointOf(t, "api").PID)
		if _, err := process(apiURL); err == nil {
			t.Fatalf("POST /process still answered after api was killed")
		}
		port := strconv.Itoa(freePort(t))
		w.start("api-by-hand", "FLASH_RESOURCE_NAME=api", "FLASH_MOTHERSHIP_URL="+ms.url,
			"FLASH_CACHE_DIR="+w.cacheDir(), "FLASH_API_KEY="+apiKey, "PORT="+port)
		url := "http://127.0.0.1:" + port
		waitPing(t, url, 20*time.Second) // 200 only once some manifest is known
		for range 5 {
			mustProcess(t, url, pipelineServedBy)
		}
	})
}

// TestDataPlaneRejectsInvalidManifest publishes an invalid manifest straight
// into the state store: children must refuse it, keep routing by the one
// they have, and report the rejection (SPEC §5.1).
func TestDataPlaneRejectsInvalidManifest(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	good := st.Version

	// A route on a queue-based resource: invalid (SPEC §2.2), yet decodable.
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
	object(t, mf, "routes")["embedder"] = map[string]any{"POST /embed": "embed"}
	bad, err := db.Publish(ctx, latest.Version, encodeJSON(t, mf))
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	r := mustSend(t, http.MethodPost, ms.url+"/flash/invalidate", apiKey, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("POST /flash/invalidate: %s", r)
	}
	r = mustSend(t, http.MethodGet, ms.url+"/manifest", apiKey, nil)
	if v := r.Header.Get("X-Flash-Manifest-Version"); r.Code != http.StatusOK || v != fmt.Sprint(bad.Version) {
		t.Fatalf("GET /manifest after invalidate: %d, version %q; want the invalid version %d served", r.Code, v, bad.Version)
	}

	eventually(t, 10*time.Second, "every child rejected the invalid version and kept the old one", func() error {
		s := ms.status(t)
		eps, err := w.endpoints()
		if err != nil {
			return err
		}
		for _, e := range eps {
			in, ok := instanceOf(s, e.ID)
			if !ok {
				return fmt.Errorf("no report from %s", e.ID)
			}
			if in.RejectedVersion != bad.Version || in.AppliedVersion != good || in.RejectReason == "" {
				return fmt.Errorf("%s: applied %d, rejected %d (%q); want applied %d, rejected %d with a reason",
					e.ID, in.AppliedVersion, in.RejectedVersion, in.RejectReason, good, bad.Version)
			}
		}
		return nil
	})
	for range 5 {
		mustProcess(t, apiURL, pipelineServedBy)
	}

	// Rejecting must not make a child poll in a loop: count the manifest
	// requests the mothership serves over one second.
	before := manifestRequests(t, ms.url)
	time.Sleep(time.Second) // a measuring window, not a wait for a condition
	if n := manifestRequests(t, ms.url) - before; n > 6 {
		t.Errorf("%d GET /manifest in one second from 3 children after a rejection: the sync loop spins", n)
	}
}

// manifestRequests is the mothership's count of GET /manifest served.
func manifestRequests(t testing.TB, base string) int {
	t.Helper()
	r := mustSend(t, http.MethodGet, base+"/metrics", apiKey, nil)
	if r.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(r.Body)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flash_http_requests_total{") || !strings.Contains(line, `route="GET /manifest"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		n += int(v)
	}
	return n
}

// TestDataPlaneFollowsNewURL redeploys a changed resource on a new URL: every
// child applies the version that publishes it within one long-poll round
// trip, and calls reach the new endpoint (SPEC §4.1, §5.1).
func TestDataPlaneFollowsNewURL(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	oldURL := st.Resources["summarizer"].EndpointURL

	mf := w.appManifest(t)
	object(t, object(t, mf, "resources"), "summarizer")["workersMax"] = 2
	var (
		published int64
		at        time.Time
	)
	rep := ms.deploy(t, encodeJSON(t, mf), func(e event, when time.Time) {
		if e.Resource == "summarizer" && e.Step == "published" {
			published, at = e.Version, when
		}
	})
	if published == 0 {
		t.Fatalf("no published event for summarizer: %+v", rep)
	}
	_, _, _, urls := rep.resource(t, "summarizer")
	if len(urls) != 1 || urls[0] == oldURL {
		t.Fatalf("summarizer redeployed on %v, was %s: want a new URL", urls, oldURL)
	}

	// Follow within one long-poll round trip: bounded at 2 s from publication.
	eventually(t, 2*time.Second-time.Since(at), "every child applied the version with the new URL", func() error {
		return ms.synced(ms.status(t), rep.Version)
	})
	t.Logf("children applied version %d %s after it was published", rep.Version, time.Since(at).Round(time.Millisecond))
	if rec := w.endpointOf(t, "summarizer"); rec.URL != urls[0] {
		t.Errorf("state store records summarizer at %s, the deploy reported %v", rec.URL, urls)
	}
	mustProcess(t, apiURL, pipelineServedBy)
	r, err := send(http.MethodGet, oldURL+"/ping", "", nil)
	if err == nil {
		t.Errorf("the old summarizer at %s still answers: %s", oldURL, r)
	}
}

// TestDataPlaneDeadlineCancelsCallee: a deadline on relay (front) reaches
// slow (back) through the remote call, whose context is cancelled (SPEC
// §5.3).
func TestDataPlaneDeadlineCancelsCallee(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, "front", "back")
	front, back := st.Resources["front"].EndpointURL, st.Resources["back"].EndpointURL

	cancelled := func(t testing.TB) int64 {
		var out struct {
			Cancelled int64 `json:"cancelled"`
		}
		runsync(t, back+"/runsync", "cancelled", struct{}{}).result(t, &out)
		return out.Cancelled
	}
	for _, c := range []struct {
		name     string
		body     map[string]any
		hdr      []string
		deadline time.Duration
	}{
		// Runpod's shortest executionTimeout is 5 s.
		{"policy.executionTimeout", withPolicy(envelope("relay", map[string]int{"ms": 60000}), 5000), nil, 5 * time.Second},
		{"X-Flash-Timeout", envelope("relay", map[string]int{"ms": 10000}), []string{"X-Flash-Timeout: 200"}, 200 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := cancelled(t)
			start := time.Now()
			r := mustSend(t, http.MethodPost, front+"/runsync", apiKey, c.body, c.hdr...)
			took := time.Since(start)
			var j job
			r.decode(t, &j)
			if r.Code != http.StatusOK || !timedOut(j) {
				t.Errorf("relay with a %s deadline: %s, want 200 and a timeout", c.deadline, r)
			}
			t.Logf("relay answered %s: %s", j.Status, j.Error)
			if took > c.deadline+3*time.Second {
				t.Errorf("relay with a %s deadline answered after %s", c.deadline, took)
			}
			eventually(t, 5*time.Second, "slow's context cancelled on back", func() error {
				if n := cancelled(t); n <= before {
					return fmt.Errorf("back counts %d cancellations, %d before", n, before)
				}
				return nil
			})
		})
	}
	// The same through the mothership's gateway (SPEC §4.5).
	t.Run("through the gateway", func(t *testing.T) {
		r := mustSend(t, http.MethodPost, ms.url+"/v2/front/runsync", apiKey,
			withPolicy(envelope("relay", map[string]int{"ms": 60000}), 5000))
		var j job
		r.decode(t, &j)
		if !timedOut(j) {
			t.Errorf("relay through the gateway: %s, want a timeout", r)
		}
		// Below Runpod's 5 s the policy is refused, through the gateway too.
		r = mustSend(t, http.MethodPost, ms.url+"/v2/front/runsync", apiKey,
			withPolicy(envelope("relay", map[string]int{"ms": 1}), 200))
		if r.Code != http.StatusBadRequest || !strings.Contains(string(r.Body), "policy.executionTimeout") {
			t.Errorf("executionTimeout 200 through the gateway: %s, want 400 naming it", r)
		}
		var done struct {
			Finished bool   `json:"finished"`
			ServedBy string `json:"served_by"`
		}
		runsync(t, ms.url+"/v2/front/runsync", "relay", map[string]int{"ms": 1}).result(t, &done)
		if !done.Finished || done.ServedBy != "back" {
			t.Errorf("relay without a deadline: %+v, want finished on back", done)
		}
	})
}

// timedOut reports whether j ended on its deadline: TIMED_OUT whether relay's
// own deadline fired first or the timeout of slow's endpoint came back first.
func timedOut(j job) bool { return j.Status == "TIMED_OUT" }

func withPolicy(env map[string]any, timeoutMS int) map[string]any {
	env["policy"] = map[string]any{"executionTimeout": timeoutMS}
	return env
}

// TestDataPlaneLoopDetected: ping (front) calls pong (back) which calls ping:
// the hop limit must end the cycle with a loop error (SPEC §5.3: above 16
// hops the receiver answers 508), not a timeout.
func TestDataPlaneLoopDetected(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  []string
	}{
		// The machine's default worker pool (4 × GOMAXPROCS per endpoint).
		{"default workers", nil},
		// Pools larger than the 9 nested jobs the cycle puts on front.
		{"GOMAXPROCS=4", []string{"GOMAXPROCS=4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, bins.testapp, "testapp")
			ms := w.startMothership(c.env...)
			st := ms.waitDeployed(t, 30*time.Second, "front", "back")
			start := time.Now()
			// The deadline only bounds the test: the loop must be detected
			// long before it.
			r := mustSend(t, http.MethodPost, st.Resources["front"].EndpointURL+"/runsync", apiKey,
				withPolicy(envelope("ping", map[string]int{"n": 0}), 5000))
			took := time.Since(start)
			var j job
			r.decode(t, &j)
			if j.Status != "FAILED" || !strings.Contains(j.Error, "loop") || !strings.Contains(j.Error, "508") {
				t.Errorf("ping-pong cycle after %s: %.600s\nwant FAILED with a loop error (508, hop limit)", took.Round(time.Millisecond), r)
			}
		})
	}
}
