package runpod

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const secret = "rpa_SECRETKEY123"

// replay is a management API that answers each request with the next
// scripted answer and records what it was sent.
type replay struct {
	mu      sync.Mutex
	answers []answer
	got     []string // "METHOD /path body"
	auth    []string
}

type answer struct {
	status int
	header map[string]string
	body   string
}

func (rp *replay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.got = append(rp.got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
	rp.auth = append(rp.auth, r.Header.Get("Authorization"))
	a := answer{status: 500, body: `{"title":"Internal Server Error","status":500,"detail":"script ran out"}`}
	if len(rp.answers) > 0 {
		a, rp.answers = rp.answers[0], rp.answers[1:]
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if strings.HasPrefix(a.body, "{") && a.status >= 400 {
		w.Header().Set("Content-Type", "application/problem+json")
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func newReplay(t *testing.T, answers ...answer) (*Client, *replay) {
	rp := &replay{answers: answers}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return &Client{Base: srv.URL + "/v2", Key: secret}, rp
}

const epJSON = `{"id":"k7w2p9x4","name":"flash-shop-gpu","type":"QUEUE",
 "requestUrls":{"runSync":"https://api.runpod.ai/v2/k7w2p9x4/runsync"},
 "image":"r/app@sha256:ab","env":{"FLASH_APP":"shop","FLASH_RESOURCE_NAME":"gpu"},
 "gpu":{"pools":["ADA_24"],"count":1},"workers":{"min":0,"max":3,"idleTimeout":5},
 "scaling":{"type":"QUEUE_DELAY","queueDelay":4},"dataCenterIds":[],"networkVolumes":[],"timeout":600000,
 "flashboot":"OFF","createdAt":"2026-09-02T10:15:00Z","someFutureField":{"x":1}}`

func TestClientCalls(t *testing.T) {
	ctx := t.Context()
	c, rp := newReplay(t,
		answer{status: 200, body: `{"endpoints":[` + epJSON + `],"pagination":{"hasNextPage":true,"nextCursor":"c2"}}`},
		answer{status: 200, body: `{"endpoints":[{"id":"second"}],"pagination":{"hasNextPage":false}}`},
		answer{status: 201, body: epJSON},
		answer{status: 200, body: epJSON},
		answer{status: 204},
		answer{status: 200, body: `{"endpointVersion":3,"summary":{"idle":1,"total":1},"workers":[{"id":"w1","status":"IDLE","isStale":false,"version":3,"gpuCount":1}]}`},
	)
	eps, err := c.ListEndpoints(ctx)
	if err != nil || len(eps) != 2 || eps[0].ID != "k7w2p9x4" || eps[1].ID != "second" {
		t.Fatalf("ListEndpoints = %+v, %v; want both pages", eps, err)
	}
	if eps[0].Env["FLASH_APP"] != "shop" || eps[0].Workers.IdleTimeout == nil || *eps[0].Workers.IdleTimeout != 5 || *eps[0].Scaling.QueueDelay != 4 {
		t.Errorf("decoded %+v", eps[0])
	}
	two := int64(2)
	ep, err := c.CreateEndpoint(ctx, EndpointRequest{Name: "flash-shop-gpu", Type: TypeQueue, Image: "r/app@sha256:ab",
		GPU: &GPU{Pools: []string{"ADA_24"}, Count: 1}, Workers: Workers{Max: 3}, Scaling: Scaling{Type: ScaleRequests, RequestCount: &two}})
	if err != nil || ep.ID != "k7w2p9x4" {
		t.Fatalf("CreateEndpoint = %+v, %v", ep, err)
	}
	if _, err := c.UpdateEndpoint(ctx, "k7w2p9x4", map[string]any{"image": "r/app@sha256:cd"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteEndpoint(ctx, "k7w2p9x4"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Workers(ctx, "a/b")
	if err != nil || *w.EndpointVersion != 3 || w.Workers[0].Status != "IDLE" {
		t.Fatalf("Workers = %+v, %v", w, err)
	}
	want := []string{
		"GET /v2/serverless",
		"GET /v2/serverless?cursor=c2",
		`POST /v2/serverless {"name":"flash-shop-gpu","type":"QUEUE","image":"r/app@sha256:ab","gpu":{"pools":["ADA_24"],"count":1},"workers":{"min":0,"max":3},"scaling":{"type":"REQUEST_COUNT","requestCount":2}}`,
		`PATCH /v2/serverless/k7w2p9x4 {"image":"r/app@sha256:cd"}`,
		"DELETE /v2/serverless/k7w2p9x4",
		"GET /v2/serverless/a%2Fb/workers",
	}
	if strings.Join(rp.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(rp.got, "\n"), strings.Join(want, "\n"))
	}
	for _, a := range rp.auth {
		if a != "Bearer "+secret {
			t.Errorf("Authorization %q", a)
		}
	}
}

func TestClientErrors(t *testing.T) {
	problem := func(status int, detail string) answer {
		b, _ := json.Marshal(map[string]any{"title": http.StatusText(status), "status": status, "detail": detail,
			"errors": []string{"$: additional properties 'workersMax' not allowed"}})
		return answer{status: status, body: string(b)}
	}
	for _, tc := range []struct {
		name     string
		answers  []answer
		method   string
		is       error
		calls    int
		contains string
	}{
		{"400 not retried", []answer{problem(400, "specify exactly one of gpu or cpu")}, "PATCH", nil, 1, "specify exactly one"},
		{"401", []answer{problem(401, "missing bearer token")}, "GET", ErrUnauthorized, 1, "missing bearer token"},
		{"403", []answer{problem(403, "access denied")}, "GET", ErrUnauthorized, 1, "access denied"},
		{"404", []answer{problem(404, "endpoint not found")}, "DELETE", ErrNotFound, 1, "endpoint not found"},
		{"422 lists the errors", []answer{problem(422, "Request validation failed.")}, "POST", nil, 1, "workersMax"},
		{"v1 message shape", []answer{{status: 400, body: `{"message":"bad input"}`}}, "GET", nil, 1, "bad input"},
		{"plain text", []answer{{status: 400, body: "nope"}}, "GET", nil, 1, "nope"},
		{"key echoed is hidden", []answer{problem(400, "bad key "+secret)}, "GET", nil, 1, "bad key ***"},
		{"5xx retried then ok", []answer{problem(502, "bad gateway"), problem(503, "down"), {status: 200, body: `{"endpoints":[]}`}}, "GET", nil, 3, ""},
		{"5xx until the end", []answer{problem(500, "a"), problem(500, "b"), problem(500, "c")}, "GET", nil, 3, "500 c"},
		{"5xx on create not repeated", []answer{problem(500, "boom")}, "POST", nil, 1, "boom"},
		{"429 on create retried", []answer{{status: 429, header: map[string]string{"Retry-After": "0"}, body: `{"detail":"slow down"}`}, {status: 201, body: epJSON}}, "POST", nil, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rp := newReplay(t, tc.answers...)
			c.Attempts = 3
			var err error
			switch tc.method {
			case "GET":
				_, err = c.ListEndpoints(t.Context())
			case "POST":
				_, err = c.CreateEndpoint(t.Context(), EndpointRequest{Name: "x"})
			case "PATCH":
				_, err = c.UpdateEndpoint(t.Context(), "id", map[string]any{"name": "x"})
			case "DELETE":
				err = c.DeleteEndpoint(t.Context(), "id")
			}
			if len(rp.got) != tc.calls {
				t.Errorf("%d calls, want %d: %v", len(rp.got), tc.calls, rp.got)
			}
			if tc.contains == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err = %v, want it to say %q", err, tc.contains)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the key is in the error: %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Errorf("%v is not an *APIError", err)
			}
		})
	}
}

// TestClientRetryAfter: a 429's Retry-After is waited for, and a wait that
// would pass the caller's deadline is not started.
func TestClientRetryAfter(t *testing.T) {
	limited := answer{status: 429, header: map[string]string{"Retry-After": "1"}, body: `{"title":"Too Many Requests","status":429,"detail":"rate limit exceeded for the minute window"}`}
	c, rp := newReplay(t, limited, answer{status: 200, body: `{"endpoints":[]}`})
	start := time.Now()
	if _, err := c.ListEndpoints(t.Context()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("retried after %s, before Retry-After's second", waited)
	}
	if len(rp.got) != 2 {
		t.Errorf("calls %v", rp.got)
	}

	c, rp = newReplay(t, answer{status: 429, header: map[string]string{"Retry-After": "120"}, body: `{"detail":"later"}`})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := c.ListEndpoints(ctx)
	if !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "deadline") || len(rp.got) != 1 {
		t.Errorf("err = %v after %d calls; want ErrRateLimited at once, naming the deadline", err, len(rp.got))
	}
}

func TestClientUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	c := &Client{Base: base, Key: secret, Attempts: 2}
	_, err := c.ListEndpoints(t.Context())
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), base) {
		t.Errorf("err = %v; want the URL named and no key", err)
	}
}
