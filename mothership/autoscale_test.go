package mothership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
)

// replicaServer is one replica of scalingProvider: a loopback server that
// answers /flash/load with the load the test sets, and /health.
type replicaServer struct {
	srv     *httptest.Server
	running atomic.Int64
	// stale is how many /flash/load answers, once the served manifest no
	// longer lists this replica, still report a running call: a caller
	// that picked it just before it was unpublished.
	stale     atomic.Int64
	staleSeen atomic.Int64 // such answers given
}

// scalingProvider is a provider.Scaler whose replicas are replicaServers.
type scalingProvider struct {
	m func() *Mothership

	mu       sync.Mutex
	seq      int
	live     map[string]provider.Endpoint
	replicas map[string]*replicaServer // by URL
	removals []string                  // what RemoveReplicas saw, one line per replica
}

func newScalingProvider() *scalingProvider {
	return &scalingProvider{live: map[string]provider.Endpoint{}, replicas: map[string]*replicaServer{}}
}

func (p *scalingProvider) start() string {
	r := &replicaServer{}
	var url string
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != wire.PathLoad {
			wire.WriteJSON(w, http.StatusOK, map[string]string{"path": req.URL.Path})
			return
		}
		l := wire.Load{Running: int(r.running.Load()), Instance: "i-" + url}
		if mf, _ := p.m().Current(); mf != nil && !slices.Contains(mf.Resources["w"].URLs(), url) && r.stale.Add(-1) >= 0 {
			r.staleSeen.Add(1)
			l.Running++
		}
		wire.WriteJSON(w, http.StatusOK, l)
	}))
	url = r.srv.URL
	p.replicas[url] = r
	return url
}

func (p *scalingProvider) Deploy(_ context.Context, s provider.Spec) (provider.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	e := provider.Endpoint{ID: fmt.Sprintf("app/%s/%d", s.Resource, p.seq), Resource: s.Resource, ConfigHash: s.ConfigHash}
	for range max(1, s.Replicas) {
		e.URLs = append(e.URLs, p.start())
	}
	p.live[e.ID] = e
	return e, nil
}

func (p *scalingProvider) Undeploy(_ context.Context, e provider.Endpoint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.live[e.ID].URLs {
		p.replicas[u].srv.Close()
	}
	delete(p.live, e.ID)
	return nil
}

func (p *scalingProvider) List(context.Context) ([]provider.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Endpoint
	for _, e := range p.live {
		out = append(out, e)
	}
	return out, nil
}

func (p *scalingProvider) AddReplicas(_ context.Context, e provider.Endpoint, n int) (provider.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e = p.live[e.ID]
	for range n {
		e.URLs = append(slices.Clip(e.URLs), p.start())
	}
	p.live[e.ID] = e
	return e, nil
}

func (p *scalingProvider) RemoveReplicas(_ context.Context, e provider.Endpoint, urls []string) (provider.Endpoint, error) {
	mf, _ := p.m().Current()
	p.mu.Lock()
	defer p.mu.Unlock()
	e = p.live[e.ID]
	e.URLs = slices.DeleteFunc(slices.Clone(e.URLs), func(u string) bool { return slices.Contains(urls, u) })
	p.live[e.ID] = e
	for _, u := range urls {
		r := p.replicas[u]
		p.removals = append(p.removals, fmt.Sprintf("published=%v running=%d stale-answers=%d",
			slices.Contains(mf.Resources["w"].URLs(), u), r.running.Load(), r.staleSeen.Load()))
		r.srv.Close()
	}
	return e, nil
}

func (p *scalingProvider) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replicas {
		r.srv.Close()
	}
}

func (p *scalingProvider) replica(u string) *replicaServer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replicas[u]
}

// autoscaled returns a manifest whose QB resource w autoscales with scaling.
func autoscaled(t *testing.T, scaling map[string]any) *manifest.Manifest {
	t.Helper()
	var doc map[string]any
	b, _ := buildManifest(t, res{name: "w"}).MarshalJSON()
	json.Unmarshal(b, &doc)
	w := doc["resources"].(map[string]any)["w"].(map[string]any)
	for k, v := range scaling {
		w[k] = v
	}
	b, _ = json.Marshal(doc)
	mf, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

func newScalingHarness(t *testing.T) (*harness, *scalingProvider) {
	t.Helper()
	p := newScalingProvider()
	t.Cleanup(p.closeAll)
	h := newHarness(t, func(c *Config) { c.Provider = p; c.ScaleTick = 10 * time.Millisecond })
	p.m = func() *Mothership { return h.m }
	return h, p
}

func (h *harness) urlsOf(name string) []string {
	mf, _ := h.m.Current()
	return mf.Resources[name].URLs()
}

// Load on the replicas scales the resource up to what REQUEST_COUNT asks,
// within workersMax; idle replicas above workersMin are drained: unpublished
// first, stopped only once a call that still reached one has ended.
func TestAutoscaleUpAndDrain(t *testing.T) {
	h, p := newScalingHarness(t)
	mustReconcile(t, h.m, autoscaled(t, map[string]any{"scalerType": "REQUEST_COUNT", "scalerValue": 1,
		"workersMin": 1, "workersMax": 3, "idleTimeout": 0.2}))
	h.run(t)
	first := h.urlsOf("w")[0]
	p.replica(first).running.Store(5) // ceil(5/1) = 5, capped at 3
	eventually(t, "w at 3 replicas", func() bool { return len(h.urlsOf("w")) == 3 })
	urls := h.urlsOf("w")
	for _, u := range urls[1:] {
		p.replica(u).stale.Store(3)
	}
	p.replica(first).running.Store(1) // busy: never drained
	eventually(t, "w back at 1 replica", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.removals) == 2
	})
	if got := h.urlsOf("w"); !slices.Equal(got, urls[:1]) {
		t.Fatalf("published %v, want the busy replica %v only", got, urls[:1])
	}
	for _, r := range p.removals {
		if r != "published=false running=0 stale-answers=3" {
			t.Fatalf("removals %q: each replica must be unpublished and drained before it stops", p.removals)
		}
	}
	if st := h.m.Status(t.Context()).Resources["w"]; st.Replicas != 1 || st.Scaling != "REQUEST_COUNT 1, 1-3 replicas, idle 200ms" {
		t.Fatalf("status %+v", st)
	}
}

// Calls reach every replica round robin, so under a light steady load each
// replica is busy now and then and none is ever idle for the idle timeout;
// the resource still drains to what the load needs.
func TestAutoscaleDrainsUnderALightSteadyLoad(t *testing.T) {
	h, p := newScalingHarness(t)
	mustReconcile(t, h.m, autoscaled(t, map[string]any{"scalerType": "REQUEST_COUNT", "scalerValue": 1,
		"workersMin": 1, "workersMax": 3, "idleTimeout": 0.2}))
	h.run(t)
	p.replica(h.urlsOf("w")[0]).running.Store(5)
	eventually(t, "w at 3 replicas", func() bool { return len(h.urlsOf("w")) == 3 })
	urls := h.urlsOf("w")
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { // one call at a time, each on the next replica
		defer close(stopped)
		for i := 0; ; i++ {
			for j, u := range urls {
				var running int64
				if j == i%len(urls) {
					running = 1
				}
				p.replica(u).running.Store(running)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-stopped }()
	eventually(t, "w back at 1 replica", func() bool { return len(h.urlsOf("w")) == 1 })
}

// With workersMin 0 an idle resource scales to zero (status idle, no URL);
// a gateway call then starts a replica and is answered by it.
func TestAutoscaleFromZero(t *testing.T) {
	h, _ := newScalingHarness(t)
	mustReconcile(t, h.m, autoscaled(t, map[string]any{"scalerType": "QUEUE_DELAY", "workersMin": 0, "idleTimeout": 0.1}))
	h.run(t)
	eventually(t, "w scaled to zero", func() bool {
		mf, _ := h.m.Current()
		return mf.Resources["w"].Status == manifest.StatusIdle && len(mf.Resources["w"].URLs()) == 0
	})
	resp, body := h.get(t, "/v2/w/health", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"path":"/health"`) {
		t.Fatalf("gateway at zero replicas: %d %s", resp.StatusCode, body)
	}
	if mf, _ := h.m.Current(); mf.Resources["w"].Status != manifest.StatusDeployed || len(mf.Resources["w"].URLs()) != 1 {
		t.Fatalf("after the call: %+v", mf.Resources["w"])
	}
}

// A deploy with autoscaling keys Runpod would refuse is refused whole.
func TestAutoscaleBadConfig(t *testing.T) {
	h, _ := newScalingHarness(t)
	err := h.m.checkDesired(autoscaled(t, map[string]any{"scalerType": "QUEUE_DELAY", "scalerValue": 0.1}))
	var le *LimitError
	if !errors.As(err, &le) || len(le.Problems) != 1 {
		t.Fatalf("checkDesired = %v, want a LimitError naming the scaler value", err)
	}
}

// Status redacts a copy of the endpoint URLs: the served manifest, which
// the gateway reads at the same time, is never written.
func TestStatusLeavesManifestAlone(t *testing.T) {
	h, _ := newScalingHarness(t)
	mustReconcile(t, h.m, autoscaled(t, map[string]any{"scalerType": "REQUEST_COUNT", "workersMin": 2, "workersMax": 2}))
	mf, _ := h.m.Current()
	urls := mf.Resources["w"].URLs()
	u, _ := url.Parse(urls[0])
	u.User = url.UserPassword("user", "secret")
	withCreds := mf.WithRuntime("w", manifest.Runtime{EndpointURLs: []string{u.String(), urls[1]}, Status: manifest.StatusDeployed})
	if _, err := h.m.Publish(t.Context(), withCreds); err != nil {
		t.Fatal(err)
	}
	st := h.m.Status(t.Context()).Resources["w"]
	if strings.Contains(st.EndpointURLs[0], "secret") {
		t.Fatalf("status shows a credential: %v", st.EndpointURLs)
	}
	if cur, _ := h.m.Current(); cur.Resources["w"].URLs()[0] != u.String() {
		t.Fatalf("Status rewrote the served manifest: %v", cur.Resources["w"].URLs())
	}
}
