package child

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/manifest"
)

// routingManifest has an LB api, a QB embedder with two replicas, a failed
// summarizer and a pending resource with no URL.
func routingManifest(t testing.TB) *manifest.Manifest {
	m := mustParse(t, fixture(t, "valid/pipeline-runtime.json"))
	m = m.WithRuntime("embedder", manifest.Runtime{
		EndpointURLs: []string{"http://127.0.0.1:7001/", "http://127.0.0.1:7002"}, Status: manifest.StatusDeployed})
	m = m.WithResourceFrom(mustParse(t, []byte(`{"resources":{"ranker":{"resource_type":"ServerlessResource",
		"functions":[{"name":"rank"}],"status":"pending"}},"function_registry":{"rank":"ranker"}}`)), "ranker")
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRouterRules(t *testing.T) {
	m := routingManifest(t)
	r := NewRouter(RouterConfig{Identity: "api", Logger: quietLogger()})
	r.Apply(m, 3)

	tests := []struct {
		name     string
		fn       string
		local    bool
		resource string
		lb       bool
		method   string
		path     string
		urls     []string
		notReady string // resource named by a NotReadyError
	}{
		{name: "rule 2: not in the registry", fn: "nobody", local: true},
		{name: "rule 3: mine", fn: "process", local: true},
		{name: "rule 4: QB elsewhere, replicas", fn: "embed", resource: "embedder",
			urls: []string{"http://127.0.0.1:7001", "http://127.0.0.1:7002"}},
		{name: "rule 4: failed deploy", fn: "summarize", notReady: "summarizer"},
		{name: "rule 4: no URL yet", fn: "rank", notReady: "ranker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := r.Route(context.Background(), tt.fn)
			switch {
			case tt.notReady != "":
				var nr *flasherr.NotReadyError
				if !errors.As(err, &nr) || nr.Resource != tt.notReady || nr.Function != tt.fn ||
					!errors.Is(err, flasherr.ErrEndpointNotReady) || !flasherr.Retryable(err) {
					t.Fatalf("got %v, %v; want not-ready for %s", tg, err, tt.notReady)
				}
				if !strings.Contains(err.Error(), tt.notReady) {
					t.Errorf("error %q does not name the resource", err)
				}
			case tt.local:
				if tg != nil || err != nil {
					t.Fatalf("got %+v, %v; want local", tg, err)
				}
			default:
				if err != nil || tg == nil {
					t.Fatalf("got %v, %v", tg, err)
				}
				if tg.Resource != tt.resource || tg.LB != tt.lb || tg.Function != tt.fn ||
					strings.Join(tg.URLs, ",") != strings.Join(tt.urls, ",") {
					t.Fatalf("target %+v", tg)
				}
			}
		})
	}

	// The failed resource's recorded error travels in the message.
	_, err := r.Route(context.Background(), "summarize")
	if !strings.Contains(err.Error(), "deploy timed out") {
		t.Errorf("error %q lacks the deploy error", err)
	}

	// From another endpoint, the LB function is remote with its route.
	r2 := NewRouter(RouterConfig{Identity: "embedder", Logger: quietLogger()})
	r2.Apply(m, 3)
	tg, err := r2.Route(context.Background(), "process")
	if err != nil || !tg.LB || tg.Method != "POST" || tg.Path != "/process" || tg.URLs[0] != "https://k2r9x0api.api.runpod.ai" {
		t.Fatalf("LB target %+v, %v", tg, err)
	}
	if tg, err := r2.Route(context.Background(), "embed"); tg != nil || err != nil {
		t.Fatalf("embedder's own function: %+v %v", tg, err)
	}
}

func TestRouterStandaloneWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	r := NewRouter(RouterConfig{Identity: "api", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 5 {
		tg, err := r.Route(context.Background(), "anything") // rule 1
		if tg != nil || err != nil {
			t.Fatalf("standalone: %+v %v", tg, err)
		}
	}
	if n := strings.Count(logs.String(), "standalone"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
	// A second router warns on its own: the once is not global.
	logs.Reset()
	NewRouter(RouterConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))}).Route(context.Background(), "x")
	if !strings.Contains(logs.String(), "standalone") {
		t.Fatal("second router did not warn")
	}
}

func TestRouterWaitsForFirstManifest(t *testing.T) {
	f := newFakeMothership() // nothing published yet
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(s)
	r := NewRouter(RouterConfig{Identity: "api", Sync: s, Logger: quietLogger()})

	// No manifest yet and the caller's deadline passes: manifest unavailable.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = r.Route(ctx, "embed")
	if !errors.Is(err, flasherr.ErrManifestUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !flasherr.Retryable(err) {
		t.Fatalf("got %v", err)
	}

	// Published while the call waits: it routes by it.
	runSync(t, s)
	f.publish(mustJSON(t, routingManifest(t)))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	tg, err := r.Route(ctx2, "embed")
	if err != nil || tg == nil || tg.Resource != "embedder" {
		t.Fatalf("got %+v, %v", tg, err)
	}
}

// TestRouterFollowsSync: a new manifest applied by the Sync swaps the table.
func TestRouterFollowsSync(t *testing.T) {
	f := newFakeMothership()
	m := routingManifest(t)
	f.publish(mustJSON(t, m))
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, PollWait: 5 * time.Second,
		HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(RouterConfig{Identity: "api", Sync: s, Logger: quietLogger()})
	runSync(t, s)
	if _, err := r.Route(context.Background(), "rank"); !errors.Is(err, flasherr.ErrEndpointNotReady) {
		t.Fatalf("rank before deploy: %v", err)
	}
	f.publish(mustJSON(t, m.WithRuntime("ranker", manifest.Runtime{EndpointURLs: []string{"http://127.0.0.1:7003"}, Status: manifest.StatusDeployed})))
	eventually(t, "rank routed", func() bool {
		tg, err := r.Route(context.Background(), "rank")
		return err == nil && tg != nil && tg.URLs[0] == "http://127.0.0.1:7003"
	})
}

func TestRouteAllocatesNothing(t *testing.T) {
	r := NewRouter(RouterConfig{Identity: "api", Logger: quietLogger()})
	r.Apply(routingManifest(t), 1)
	ctx := context.Background()
	for _, fn := range []string{"process", "embed", "summarize", "nobody"} {
		if n := testing.AllocsPerRun(1000, func() { r.Route(ctx, fn) }); n != 0 {
			t.Errorf("Route(%q): %v allocations", fn, n)
		}
	}
}

// localFunc stands in for calling the user's function directly.
//
//go:noinline
func localFunc(ctx context.Context, fn string) (*Target, error) { return nil, nil }

func BenchmarkRoute(b *testing.B) {
	r := NewRouter(RouterConfig{Identity: "api", Logger: quietLogger()})
	r.Apply(routingManifest(b), 1)
	ctx := context.Background()
	b.Run("direct-call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			localFunc(ctx, "process")
		}
	})
	b.Run("bare-map-lookup", func(b *testing.B) {
		m := map[string]route{"process": {}, "embed": {}, "summarize": {}, "rank": {}}
		b.ReportAllocs()
		for b.Loop() {
			_ = m["process"].target
		}
	})
	b.Run("route-local", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Route(ctx, "process")
		}
	})
	b.Run("route-remote", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Route(ctx, "embed")
		}
	})
	b.Run("route-local-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Route(ctx, "process")
			}
		})
	})
}

// A resource scaled to zero (status idle, no URL) is called through the
// motherships' gateways, which start a replica; without a mothership it is
// not ready.
func TestRouteScaledToZero(t *testing.T) {
	m := routingManifest(t).WithRuntime("embedder", manifest.Runtime{Status: manifest.StatusIdle})
	tb := buildTable(m, 4, "api", []string{"http://ms1:8080", "http://ms2:8080"})
	tg, err := tb.Route("embed")
	if err != nil || tg == nil || tg.LB || strings.Join(tg.URLs, " ") != "http://ms1:8080/v2/embedder http://ms2:8080/v2/embedder" {
		t.Fatalf("Route(embed) = %+v, %v; want the gateways' /v2/embedder", tg, err)
	}
	lb := m.WithRuntime("api", manifest.Runtime{Status: manifest.StatusIdle})
	if tg, err := buildTable(lb, 4, "embedder", []string{"http://ms1:8080"}).Route("process"); err != nil || !tg.LB ||
		strings.Join(tg.URLs, " ") != "http://ms1:8080/api" {
		t.Fatalf("Route(process) = %+v, %v; want the gateway's /api", tg, err)
	}
	if _, err := buildTable(m, 4, "api", nil).Route("embed"); !errors.Is(err, flasherr.ErrEndpointNotReady) {
		t.Fatalf("without a mothership: %v, want not ready", err)
	}
}
