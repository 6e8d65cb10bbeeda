package serve

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunHealth: an LB endpoint on Runpod answers HEALTH_CHECK_PATH without
// a key, 204 while initialising and 200 once ready, on the main port and on
// PORT_HEALTH.
func TestRunHealth(t *testing.T) {
	var ready atomic.Bool
	s, err := New(Config{APIKey: "k", Logger: discard(), Ready: ready.Load}, testFuncs(newGate()))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	healthPort := free.Addr().(*net.TCPAddr).Port
	free.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, ln, Runpod{HealthPort: healthPort, HealthPath: "/healthz"}, 5*time.Second, s.Shutdown)
	}()
	main := "http://" + ln.Addr().String()
	side := "http://127.0.0.1:" + strconv.Itoa(healthPort)
	get := func(url string) int {
		t.Helper()
		var resp *http.Response
		eventually(t, "GET "+url, func() bool {
			var err error
			resp, err = http.Get(url)
			return err == nil
		})
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, base := range []string{main, side} {
		if code := get(base + "/healthz"); code != 204 {
			t.Errorf("%s/healthz while initialising: %d, want 204", base, code)
		}
	}
	ready.Store(true)
	for _, base := range []string{main, side} {
		if code := get(base + "/healthz"); code != 200 {
			t.Errorf("%s/healthz when ready: %d, want 200", base, code)
		}
	}
	if code := get(side + "/runsync"); code != 404 {
		t.Errorf("health port serves other paths: %d", code)
	}
	if code := get(main + "/health"); code != 401 {
		t.Errorf("main port without key: %d, want 401", code)
	}
	cancel()
	if err := wait(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
}

// TestRunWorker: with worker variables, Run takes jobs from the queue, and a
// job taken as the endpoint stops still runs and is answered before the job
// pool closes.
func TestRunWorker(t *testing.T) {
	q := newFakeQueue(t)
	g := newGate()
	q.add("job-take", answer{status: 200, body: jobJSON("j", "block", map[string]string{"tag": "j"})})
	s := newServer(t, Config{Workers: 1, Logger: discard()}, g)
	cfg := q.config(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln, Runpod{Worker: &cfg}, 10*time.Second, s.Shutdown) }()
	wait(t, g.started, "job start")
	cancel()
	close(g.release)
	if err := wait(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
	if d := q.got("job-done"); len(d) != 1 || !equalJSON(decodeBody(t, d[0].Body), `{"output":{"success":true,"json_result":{"released":"j"}}}`) {
		t.Fatalf("job-done %v", d)
	}
}
