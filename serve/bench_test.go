package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

type benchIn struct{ A, B int }
type benchOut struct{ Sum int }

//go:noinline
func benchAdd(_ context.Context, in benchIn) (benchOut, error) { return benchOut{in.A + in.B}, nil }

var benchBody = []byte(`{"input":{"function_name":"add","execution_type":"function","args":[{"A":2,"B":3}],"kwargs":{},"serialization_format":"json"}}`)

// BenchmarkRunsync compares a /runsync round trip through Server.ServeHTTP
// with calling the function directly and with a bare handler doing the same
// JSON decode and encode (no pool, ids, auth, logs or metrics).
func BenchmarkRunsync(b *testing.B) {
	b.Run("server", func(b *testing.B) {
		s, err := New(Config{Logger: discard()}, []Func{{Name: "add", Bind: bindJSON(func(ctx context.Context, in benchIn) (any, error) {
			return benchAdd(ctx, in)
		})}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Shutdown(context.Background()) })
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("POST", "/runsync", bytes.NewReader(benchBody)))
			if rec.Code != 200 {
				b.Fatal(rec.Code, rec.Body)
			}
		}
	})
	b.Run("server-keyed", func(b *testing.B) {
		// As flash callers send it: a new Idempotency-Key per call, so every
		// request runs and its answer is kept (the table's cost).
		s, err := New(Config{Logger: discard()}, []Func{{Name: "add", Bind: bindJSON(func(ctx context.Context, in benchIn) (any, error) {
			return benchAdd(ctx, in)
		})}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Shutdown(context.Background()) })
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/runsync", bytes.NewReader(benchBody))
			req.Header.Set("Idempotency-Key", "k"+strconv.Itoa(i))
			s.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code, rec.Body)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if out, _ := benchAdd(ctx, benchIn{i, 3}); out.Sum != i+3 {
				b.Fatal(out)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		h := bareRunsync("")
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/runsync", bytes.NewReader(benchBody)))
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
		}
	})
}

// bareRunsync is the baseline /runsync handler: the key checked (when not
// empty), the envelope decoded, add run, the answer encoded; nothing else.
func bareRunsync(key string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key != "" && r.Header.Get("Authorization") != "Bearer "+key {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var env struct {
			Input struct {
				FunctionName string    `json:"function_name"`
				Args         []benchIn `json:"args"`
			} `json:"input"`
		}
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil || len(env.Input.Args) != 1 {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		out, _ := benchAdd(r.Context(), env.Input.Args[0])
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "x", "status": "COMPLETED",
			"output": map[string]any{"success": true, "json_result": out}, "delayTime": 0, "executionTime": 0})
	})
}

// BenchmarkLB is an LB route through the server.
func BenchmarkLB(b *testing.B) {
	s, err := New(Config{Logger: discard()}, []Func{{Name: "add", Method: "POST", Path: "/add/{x}", Bind: bindJSON(func(ctx context.Context, in benchIn) (any, error) {
		return benchAdd(ctx, in)
	})}})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"A":2,"B":3}`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("POST", "/add/1", bytes.NewReader(body)))
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
	}
}

// BenchmarkOverload is the 429 answer of a full pool (through the whole
// handler: ids, auth, metrics), next to an accepted /runsync for scale.
func BenchmarkOverload(b *testing.B) {
	c := newCounted()
	s, err := New(Config{Logger: discard(), Workers: 1, QueueSize: 1, APIKey: "k"}, c.funcs())
	if err != nil {
		b.Fatal(err)
	}
	held := make(chan struct{}, 2)
	post := func(body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/runsync", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	hold := []byte(envelopeFor("hold", nil))
	go func() { post(hold); held <- struct{}{} }()
	<-c.started
	go func() { post(hold); held <- struct{}{} }()
	for !s.jobs.full() {
		runtime.Gosched()
	}
	b.Cleanup(func() {
		close(c.release)
		<-held
		<-held
		s.Shutdown(context.Background())
	})
	body := []byte(envelopeFor("count", map[string]int{"a": 1}))
	if rec := post(body); rec.Code != http.StatusTooManyRequests {
		b.Fatal(rec.Code, rec.Body)
	}
	// One request, reused (the refusal never reads its body), and a writer
	// that keeps nothing: what is measured is the server's own work.
	req := httptest.NewRequest("POST", "/runsync", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	w := &nullWriter{h: http.Header{}}
	b.Run("server-429", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			s.ServeHTTP(w, req)
			if w.code != http.StatusTooManyRequests {
				b.Fatal(w.code)
			}
		}
	})
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		wire.WriteError(w, http.StatusTooManyRequests, "job queue full, retry later")
	})
	b.Run("bare-429", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			bare.ServeHTTP(w, req)
		}
	})
}

// nullWriter is a ResponseWriter that records the status and drops the rest.
type nullWriter struct {
	h    http.Header
	code int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkMiddleware is the cost of the endpoint middleware (ids, trace
// context, auth, header checks, routing, metrics) around a handler that
// writes a fixed answer, against that handler alone.
func BenchmarkMiddleware(b *testing.B) {
	body := []byte(`{"ok":true}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		wire.WriteRawJSON(w, http.StatusOK, body)
	})
	s, err := New(Config{Logger: discard(), APIKey: "k"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	s.Handle("GET /thing", h)
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"server", s}, {"bare", h}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/thing", nil)
			req.Header.Set(wire.HeaderAuthorization, "Bearer k")
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				c.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkRunsyncLoopback is a /runsync over real loopback HTTP, the server
// behind Serve (as endpoints run it), against the bare handler of
// BenchmarkRunsync. The client is the same plain net/http client for both;
// "flash-headers" sends what a flash caller sends (request id, traceparent,
// hops, timeout, idempotency key), "plain" only the key. The difference
// between a server's rows and bare's is the server's own cost per call.
func BenchmarkRunsyncLoopback(b *testing.B) {
	s, err := New(Config{Logger: discard(), APIKey: "k"}, []Func{{Name: "add", Bind: bindJSON(func(ctx context.Context, in benchIn) (any, error) {
		return benchAdd(ctx, in)
	})}})
	if err != nil {
		b.Fatal(err)
	}
	urls := map[string]string{"server": serveLoopback(b, s), "bare": serveLoopback(b, bareRunsync("k"))}
	tr := wire.NewTransport()
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	var seq atomic.Int64
	post := func(b *testing.B, url string, flashHeaders bool) {
		req, _ := http.NewRequest("POST", url+"/runsync", bytes.NewReader(benchBody))
		req.Header["Authorization"] = []string{"Bearer k"}
		req.Header["Content-Type"] = []string{"application/json"}
		if flashHeaders {
			rid, tp := wire.NewRequestIDAndTraceParent()
			req.Header["X-Request-Id"] = []string{rid}
			req.Header["Traceparent"] = []string{tp}
			req.Header["X-Flash-Hops"] = []string{"1"}
			req.Header["X-Flash-Timeout"] = []string{"30000"}
			req.Header["Idempotency-Key"] = []string{"k" + strconv.FormatInt(seq.Add(1), 10)}
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.StatusCode)
		}
	}
	for _, srv := range []string{"server", "bare"} {
		for _, hdr := range []string{"plain", "flash-headers"} {
			for _, c := range []int{1, 64} {
				b.Run(srv+"/"+hdr+"/c"+strconv.Itoa(c), func(b *testing.B) {
					b.ReportAllocs()
					b.SetParallelism(max(1, c/runtime.GOMAXPROCS(0)))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							post(b, urls[srv], hdr == "flash-headers")
						}
					})
				})
			}
		}
	}
}

// serveLoopback runs h with Serve on a loopback port until the benchmark ends.
func serveLoopback(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, ln, h, time.Second); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}
