package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// counted is a function set that counts its runs.
type counted struct {
	runs    atomic.Int64
	release chan struct{} // "hold" waits on it (or its context)
	started chan struct{}
}

func newCounted() *counted {
	return &counted{release: make(chan struct{}), started: make(chan struct{}, 64)}
}

func (c *counted) funcs() []Func {
	return []Func{
		{Name: "count", Bind: bindJSON(func(_ context.Context, in any) (any, error) {
			return map[string]any{"run": c.runs.Add(1), "in": in}, nil
		})},
		{Name: "other", Bind: bindJSON(func(_ context.Context, in any) (any, error) {
			return map[string]any{"run": c.runs.Add(1)}, nil
		})},
		{Name: "countfail", Bind: bindJSON(func(_ context.Context, in any) (any, error) {
			return nil, &valueError{fmt.Sprintf("run %d failed", c.runs.Add(1))}
		})},
		{Name: "hold", Bind: bindJSON(func(ctx context.Context, in any) (any, error) {
			n := c.runs.Add(1)
			c.started <- struct{}{}
			select {
			case <-c.release:
				return map[string]any{"run": n}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})},
		{Name: "big", Bind: bindJSON(func(_ context.Context, in any) (any, error) {
			c.runs.Add(1)
			return strings.Repeat("x", 4096), nil
		})},
	}
}

func newCountedServer(t *testing.T, cfg Config) (*Server, *counted) {
	t.Helper()
	c := newCounted()
	if cfg.Logger == nil {
		cfg.Logger = discard()
	}
	s, err := New(cfg, c.funcs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-c.release:
		default:
			close(c.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s, c
}

// TestIdempotentRunsync: a repeated keyed /runsync runs the function once
// and answers the same bytes; anything that makes it another call (another
// key, function or body, or no explicit key) runs again.
func TestIdempotentRunsync(t *testing.T) {
	s, c := newCountedServer(t, Config{})
	body := envelopeFor("count", map[string]int{"a": 1})
	for _, hdr := range []string{"X-Request-Id: req-1", "Idempotency-Key: call-1"} {
		t.Run(hdr, func(t *testing.T) {
			before := c.runs.Load()
			first := do(t, s, "POST", "/runsync", body, hdr)
			second := do(t, s, "POST", "/runsync", body, hdr)
			if first.Code != 200 || second.Code != 200 || !bytes.Equal(first.Body, second.Body) {
				t.Fatalf("answers differ:\n%s\n%s", first.Body, second.Body)
			}
			if c.runs.Load() != before+1 {
				t.Fatalf("ran %d times", c.runs.Load()-before)
			}
			if first.Header.Get(wire.HeaderReplayed) != "" || second.Header.Get(wire.HeaderReplayed) != "true" {
				t.Fatalf("Idempotent-Replayed %q, %q", first.Header.Get(wire.HeaderReplayed), second.Header.Get(wire.HeaderReplayed))
			}
		})
	}
	others := []struct {
		name, body string
		headers    []string
	}{
		{"no request id", body, nil},
		{"generated request id (invalid one sent)", body, []string{"X-Request-Id: " + strings.Repeat("x", 200)}},
		{"same id, other function", envelopeFor("other", map[string]int{"a": 1}), []string{"X-Request-Id: req-1"}},
		{"same id, other argument", envelopeFor("count", map[string]int{"a": 2}), []string{"X-Request-Id: req-1"}},
		{"same id, other key", body, []string{"X-Request-Id: req-1", "Idempotency-Key: call-2"}},
	}
	for _, o := range others {
		t.Run(o.name, func(t *testing.T) {
			before := c.runs.Load()
			for range 2 {
				if r := do(t, s, "POST", "/runsync", o.body, o.headers...); r.Code != 200 {
					t.Fatalf("%d %s", r.Code, r.Body)
				}
			}
			if o.headers == nil || strings.Contains(o.name, "generated") {
				if c.runs.Load() != before+2 {
					t.Fatalf("ran %d times, want 2", c.runs.Load()-before)
				}
			} else if c.runs.Load() != before+1 { // a new call once, then its repeat
				t.Fatalf("ran %d times, want 1", c.runs.Load()-before)
			}
		})
	}
	t.Run("a function's failure is kept", func(t *testing.T) {
		before := c.runs.Load()
		fb := envelopeFor("countfail", nil)
		a := do(t, s, "POST", "/runsync", fb, "Idempotency-Key: f-1")
		b := do(t, s, "POST", "/runsync", fb, "Idempotency-Key: f-1")
		if a.json(t)["status"] != StatusFailed || !bytes.Equal(a.Body, b.Body) || c.runs.Load() != before+1 {
			t.Fatalf("ran %d times: %s / %s", c.runs.Load()-before, a.Body, b.Body)
		}
	})
}

// TestIdempotentRunsyncConcurrent: repeats that arrive while the first runs
// wait for it and answer its outcome; the function runs once.
func TestIdempotentRunsyncConcurrent(t *testing.T) {
	s, c := newCountedServer(t, Config{})
	const n = 8
	body := envelopeFor("hold", nil)
	answers := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = do(t, s, "POST", "/runsync", body, "X-Request-Id: same") })
	}
	wait(t, c.started, "the first run")
	eventually(t, "the repeats waiting", func() bool { return s.idem.waiting.Load() == n-1 })
	close(c.release)
	wg.Wait()
	if c.runs.Load() != 1 {
		t.Fatalf("ran %d times", c.runs.Load())
	}
	replayed := 0
	for i, a := range answers {
		if a.Code != 200 || !bytes.Equal(a.Body, answers[0].Body) || a.json(t)["status"] != StatusCompleted {
			t.Fatalf("answer %d: %d %s (first %s)", i, a.Code, a.Body, answers[0].Body)
		}
		if a.Header.Get(wire.HeaderReplayed) == "true" {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Fatalf("%d replayed answers, want %d", replayed, n-1)
	}
}

// TestIdempotentNotKept: a first attempt that timed out, or was refused
// because the queue was full, leaves nothing: its repeat runs the function.
func TestIdempotentNotKept(t *testing.T) {
	t.Run("timed out", func(t *testing.T) {
		s, c := newCountedServer(t, Config{})
		body := envelopeFor("hold", nil)
		r := do(t, s, "POST", "/runsync", body, "X-Request-Id: t-1", "X-Flash-Timeout: 20")
		if r.json(t)["status"] != StatusTimedOut {
			t.Fatalf("first: %s", r.Body)
		}
		close(c.release)
		r = do(t, s, "POST", "/runsync", body, "X-Request-Id: t-1")
		if r.json(t)["status"] != StatusCompleted || c.runs.Load() != 2 {
			t.Fatalf("repeat: %s after %d runs", r.Body, c.runs.Load())
		}
	})
	t.Run("a waiting repeat runs when the first is cancelled", func(t *testing.T) {
		s, c := newCountedServer(t, Config{})
		body := envelopeFor("hold", nil)
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan response, 1)
		go func() {
			req := httptest.NewRequestWithContext(ctx, "POST", "/runsync", strings.NewReader(body))
			req.Header.Set("X-Request-Id", "c-1")
			first <- serveRequest(s, req)
		}()
		wait(t, c.started, "the first run")
		second := make(chan response, 1)
		go func() { second <- do(t, s, "POST", "/runsync", body, "X-Request-Id: c-1") }()
		eventually(t, "the repeat waiting", func() bool { return s.idem.waiting.Load() == 1 })
		cancel() // the first caller leaves: its job is cancelled, nothing kept
		wait(t, c.started, "the repeat's own run")
		close(c.release)
		if r := wait(t, second, "the repeat"); r.json(t)["status"] != StatusCompleted || c.runs.Load() != 2 {
			t.Fatalf("repeat: %s after %d runs", r.Body, c.runs.Load())
		}
		<-first
	})
	t.Run("queue full", func(t *testing.T) {
		s, c := newCountedServer(t, Config{Workers: 1, QueueSize: 1})
		hold := envelopeFor("hold", nil)
		held := make(chan response, 2)
		go func() { held <- do(t, s, "POST", "/runsync", hold) }()
		wait(t, c.started, "the worker busy")
		go func() { held <- do(t, s, "POST", "/runsync", hold) }()
		eventually(t, "the queue full", s.jobs.full)
		body := envelopeFor("count", nil)
		if r := do(t, s, "POST", "/runsync", body, "X-Request-Id: q-1"); r.Code != http.StatusTooManyRequests {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		close(c.release)
		wait(t, held, "held 1")
		wait(t, held, "held 2")
		r := do(t, s, "POST", "/runsync", body, "X-Request-Id: q-1")
		if r.json(t)["status"] != StatusCompleted || r.Header.Get(wire.HeaderReplayed) != "" {
			t.Fatalf("repeat after 429: %s", r.Body)
		}
	})
}

// TestIdempotentRun: a repeated keyed /run answers the first job's id and
// queues nothing new.
func TestIdempotentRun(t *testing.T) {
	s, c := newCountedServer(t, Config{})
	body := envelopeFor("count", nil)
	a := do(t, s, "POST", "/run", body, "Idempotency-Key: run-1").json(t)
	waitStatus(t, s, a["id"].(string), StatusCompleted)
	b := do(t, s, "POST", "/run", body, "Idempotency-Key: run-1")
	if b.json(t)["id"] != a["id"] || b.json(t)["status"] != StatusCompleted || b.Header.Get(wire.HeaderReplayed) != "true" {
		t.Fatalf("first %v, repeat %s", a, b.Body)
	}
	// The same key on /runsync is another route: not confused with the job.
	if r := do(t, s, "POST", "/runsync", body, "Idempotency-Key: run-1"); r.json(t)["status"] != StatusCompleted {
		t.Fatalf("runsync: %s", r.Body)
	}
	if c.runs.Load() != 2 {
		t.Fatalf("ran %d times, want 2 (one /run, one /runsync)", c.runs.Load())
	}
}

// TestIdempotencyBounds: entries expire after the TTL, the table holds at
// most IdempotencyEntries, large answers are not kept, and a negative TTL
// turns the feature off.
func TestIdempotencyBounds(t *testing.T) {
	t.Run("ttl", func(t *testing.T) {
		clk := &fakeClock{t: time.Unix(1e9, 0)}
		s, c := newCountedServer(t, Config{Now: clk.Now})
		body := envelopeFor("count", nil)
		do(t, s, "POST", "/runsync", body, "X-Request-Id: ttl")
		clk.Advance(DefaultIdempotencyTTL - time.Second)
		do(t, s, "POST", "/runsync", body, "X-Request-Id: ttl")
		if c.runs.Load() != 1 {
			t.Fatalf("ran %d times within the TTL", c.runs.Load())
		}
		clk.Advance(time.Second)
		do(t, s, "POST", "/runsync", body, "X-Request-Id: ttl")
		if n, _ := s.idem.size(); c.runs.Load() != 2 || n != 1 {
			t.Fatalf("after the TTL: %d runs, %d entries", c.runs.Load(), n)
		}
	})
	t.Run("entries", func(t *testing.T) {
		s, c := newCountedServer(t, Config{IdempotencyEntries: 3})
		body := envelopeFor("count", nil)
		for i := range 10 {
			do(t, s, "POST", "/runsync", body, fmt.Sprintf("X-Request-Id: e-%d", i))
			if n, _ := s.idem.size(); n > 3 {
				t.Fatalf("%d entries", n)
			}
		}
		do(t, s, "POST", "/runsync", body, "X-Request-Id: e-9") // newest: kept
		do(t, s, "POST", "/runsync", body, "X-Request-Id: e-0") // oldest: evicted
		if c.runs.Load() != 11 {
			t.Fatalf("ran %d times, want 11", c.runs.Load())
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s, c := newCountedServer(t, Config{IdempotencyMaxBytes: 16 << 10}) // answers above 1 KiB are not kept
		body := envelopeFor("big", nil)
		do(t, s, "POST", "/runsync", body, "X-Request-Id: big")
		do(t, s, "POST", "/runsync", body, "X-Request-Id: big")
		if n, b := s.idem.size(); c.runs.Load() != 2 || n != 0 || b != 0 {
			t.Fatalf("%d runs, %d entries, %d bytes", c.runs.Load(), n, b)
		}
		small := envelopeFor("count", nil)
		for i := range 100 {
			do(t, s, "POST", "/runsync", small, fmt.Sprintf("X-Request-Id: s-%d", i))
		}
		if _, b := s.idem.size(); b > 16<<10 {
			t.Fatalf("%d answer bytes kept, limit %d", b, 16<<10)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s, c := newCountedServer(t, Config{IdempotencyTTL: -1})
		body := envelopeFor("count", nil)
		do(t, s, "POST", "/runsync", body, "X-Request-Id: off")
		do(t, s, "POST", "/runsync", body, "X-Request-Id: off")
		if c.runs.Load() != 2 || s.idem != nil {
			t.Fatalf("ran %d times", c.runs.Load())
		}
	})
}

// TestOverloadBeforeBody: with the pool full, /run and /runsync answer 429
// with Retry-After without reading the body.
func TestOverloadBeforeBody(t *testing.T) {
	s, c := newCountedServer(t, Config{Workers: 1, QueueSize: 1})
	hold := envelopeFor("hold", nil)
	held := make(chan response, 2)
	go func() { held <- do(t, s, "POST", "/runsync", hold) }()
	wait(t, c.started, "the worker busy")
	go func() { held <- do(t, s, "POST", "/run", hold) }()
	eventually(t, "the queue full", s.jobs.full)
	for _, path := range []string{"/runsync", "/run", "/v2/x/runsync"} {
		body := &countingReader{r: strings.NewReader(envelopeFor("count", nil))}
		req := httptest.NewRequest("POST", path, body)
		r := serveRequest(s, req)
		if r.Code != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" || !json.Valid(r.Body) {
			t.Fatalf("%s: %d %v %s", path, r.Code, r.Header, r.Body)
		}
		if body.n.Load() != 0 {
			t.Fatalf("%s: %d body bytes read before refusing", path, body.n.Load())
		}
	}
	close(c.release)
	wait(t, held, "held 1")
	wait(t, held, "held 2")
}

type countingReader struct {
	r *strings.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestJobIDBounds: an id that cannot be a job id gets 404 without a lookup
// and without being echoed back.
func TestJobIDBounds(t *testing.T) {
	s, _ := newCountedServer(t, Config{})
	long := strings.Repeat("A", 10000)
	for _, path := range []string{"/status/" + long, "/cancel/" + long, "/status/a%20b", "/v2/x/status/" + long} {
		method := "GET"
		if strings.Contains(path, "cancel") {
			method = "POST"
		}
		r := do(t, s, method, path, "")
		if r.Code != http.StatusNotFound || len(r.Body) > 200 || bytes.Contains(r.Body, []byte("AAAAAAAAAA")) {
			t.Fatalf("%s %.40s…: %d %.200s", method, path, r.Code, r.Body)
		}
	}
}

// TestLogsHideKey: request logs at Debug, failures and panics never show
// the bearer key, whether it was right or wrong.
func TestLogsHideKey(t *testing.T) {
	const key = "sk-live-0123456789-SECRET"
	var buf bytes.Buffer
	var mu sync.Mutex
	h := slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug})
	g := newGate()
	s := newServer(t, Config{APIKey: key, Logger: slog.New(h)}, g)
	auth := "Authorization: Bearer " + key
	reqs := []struct{ method, path, body, auth string }{
		{"GET", "/ping", "", auth},
		{"GET", "/health", "", auth},
		{"POST", "/runsync", envelopeFor("add", map[string]int{"A": 1}), auth},
		{"POST", "/runsync", envelopeFor("fail", nil), auth},
		{"POST", "/runsync", envelopeFor("boom", nil), auth},
		{"POST", "/runsync", `{"input":`, auth},
		{"PUT", "/panic", `{}`, auth},
		{"POST", "/fail", `{}`, auth},
		{"GET", "/status/nope", "", auth},
		{"GET", "/health", "", "Authorization: Bearer " + key + "-wrong"},
		{"GET", "/health", "", "Authorization: " + key},
	}
	for _, r := range reqs {
		do(t, s, r.method, r.path, r.body, r.auth, "X-Request-Id: req-"+r.method)
	}
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, "job failed") {
		t.Fatalf("the logs do not show the requests: %s", logs)
	}
	if strings.Contains(logs, key) || strings.Contains(logs, "Bearer") {
		t.Fatalf("logs show the key:\n%s", logs)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestIdemTableList drives the table with random claims, keeps, drops and
// clock steps, and checks after each that its list and map agree: every
// entry once, linked both ways, in expiry order, bytes counted, bounds
// kept, and a waiter's channel closed exactly when its entry is settled.
func TestIdemTableList(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	tb := newIdemTable(time.Minute, 8, 2048, clk.Now)
	rng := rand.New(rand.NewPCG(1, 2))
	var open []*idemEntry // claimed, not yet settled
	waits := map[*idemEntry]<-chan struct{}{}
	for i := range 5000 {
		switch op := rng.IntN(10); {
		case op < 5:
			k := idemKey{byte(rng.IntN(16))}
			e, wait := tb.claim(k)
			if wait == nil {
				open = append(open, e)
			} else {
				waits[e] = wait
			}
		case op < 8 && len(open) > 0:
			j := rng.IntN(len(open))
			e := open[j]
			open = slices.Delete(open, j, j+1)
			if op == 7 {
				tb.drop(e)
			} else {
				tb.keep(e, make([]byte, rng.IntN(200)), "")
			}
		default:
			clk.Advance(time.Duration(rng.IntN(20)) * time.Second)
		}
		tb.mu.Lock()
		n, bytes := 0, 0
		var prev *idemEntry
		for e := tb.head; e != nil; prev, e = e, e.next {
			n++
			bytes += len(e.answer)
			if e.prev != prev || tb.byKey[e.key] != e {
				t.Fatalf("step %d: entry %d badly linked", i, n)
			}
			if prev != nil && e.expires.Before(prev.expires) {
				t.Fatalf("step %d: entry %d expires before the one ahead of it", i, n)
			}
		}
		if prev != tb.tail || n != len(tb.byKey) || bytes != tb.bytes || n > 8 || bytes > 2048 {
			t.Fatalf("step %d: %d listed, %d mapped, %d bytes (counted %d)", i, n, len(tb.byKey), bytes, tb.bytes)
		}
		for e, wait := range waits {
			select {
			case <-wait:
				if !e.settled {
					t.Fatalf("step %d: a waiter woke before its entry settled", i)
				}
				delete(waits, e)
			default:
				if e.settled {
					t.Fatalf("step %d: a settled entry's waiter still waits", i)
				}
			}
		}
		tb.mu.Unlock()
	}
}
