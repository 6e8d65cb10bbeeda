package flash_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/manifest"
)

// counter is the object of these tests: a count, and whether it was closed.
type counter struct {
	n      int
	busy   bool // set while a method runs: two at once would see it
	closed *atomic.Int64
}

type counterInit struct {
	Start int `json:"start"`
}

type incIn struct {
	By int `json:"by"`
}

type incOut struct {
	N       int    `json:"n"`
	Replica string `json:"replica"` // the process that served the call
}

func (c *counter) Close() error {
	c.closed.Add(1)
	return nil
}

type counterApp struct {
	app     *flash.App
	counter *flash.Object[counter, counterInit]
	inc     *flash.MethodFunc[counter, incIn, incOut]
	closed  atomic.Int64
}

// newCounterApp registers the counter on resource keeper (3 replicas in the
// manifest) and a function on front that uses it, as one app would.
func newCounterApp(name string, opts ...flash.ObjectOption) *counterApp {
	c := &counterApp{app: flash.NewApp("objects")}
	keeper := c.app.Queue("keeper", flash.ResourceConfig{WorkersMin: 3})
	c.counter = flash.RegisterObject(keeper, "Counter", func(ctx context.Context, in counterInit) (*counter, error) {
		if in.Start < 0 {
			return nil, flash.Errorf(flash.CodeInvalidArgument, "start %d is negative", in.Start)
		}
		return &counter{n: in.Start, closed: &c.closed}, nil
	}, opts...)
	c.inc = flash.Method(c.counter, "inc", func(ctx context.Context, k *counter, in incIn) (incOut, error) {
		if k.busy {
			return incOut{}, errors.New("two methods ran at once")
		}
		k.busy = true
		defer func() { k.busy = false }()
		if in.By < 0 {
			return incOut{}, flash.Errorf(flash.CodeOutOfRange, "by %d", in.By)
		}
		k.n += in.By
		return incOut{N: k.n, Replica: name}, nil
	})
	front := c.app.Queue("front", flash.ResourceConfig{})
	flash.Register(front, "hello", func(context.Context, struct{}) (string, error) { return "hello", nil })
	return c
}

func TestObjectInProcess(t *testing.T) {
	noLeaks(t)
	c := newCounterApp("here")
	ctx := context.Background()
	h, err := c.counter.New(ctx, counterInit{Start: 10})
	if err != nil {
		t.Fatal(err)
	}
	for want := 11; want <= 13; want++ {
		out, err := c.inc.Call(ctx, h, incIn{By: 1})
		if err != nil || out.N != want {
			t.Fatalf("inc: %+v, %v; want %d", out, err, want)
		}
	}
	// The handle is a plain value: through JSON and back.
	b, _ := json.Marshal(h)
	var back flash.Handle[counter]
	if err := json.Unmarshal(b, &back); err != nil || back.ID != h.ID || back.Object != "Counter" {
		t.Fatalf("handle through JSON: %s → %+v, %v", b, back, err)
	}
	if out, err := c.inc.Call(ctx, back, incIn{By: 1}); err != nil || out.N != 14 {
		t.Fatalf("inc through the decoded handle: %+v, %v", out, err)
	}
	if _, err := c.inc.Call(ctx, h, incIn{By: -1}); flash.CodeOf(err) != flash.CodeOutOfRange {
		t.Errorf("a method's coded error: %v", err)
	}
	if _, err := c.counter.New(ctx, counterInit{Start: -1}); flash.CodeOf(err) != flash.CodeInvalidArgument {
		t.Errorf("a constructor's coded error: %v", err)
	}
	if err := c.counter.Close(ctx, h); err != nil || c.closed.Load() != 1 {
		t.Fatalf("Close: %v, Close called %d times", err, c.closed.Load())
	}
	if _, err := c.inc.Call(ctx, h, incIn{By: 1}); !errors.Is(err, flash.ErrObjectLost) {
		t.Errorf("inc after Close: %v, want ErrObjectLost", err)
	}
	if err := c.counter.Close(ctx, h); !errors.Is(err, flash.ErrObjectLost) {
		t.Errorf("second Close: %v, want ErrObjectLost", err)
	}
	if _, err := c.inc.Call(ctx, flash.Handle[counter]{}, incIn{}); flash.CodeOf(err) != flash.CodeInvalidArgument {
		t.Errorf("zero handle: %v", err)
	}
	if _, err := c.counter.Attach("../../flash/replica"); flash.CodeOf(err) != flash.CodeInvalidArgument {
		t.Errorf("Attach of a bad id: %v", err)
	}
}

// TestObjectMethodsSerialized: concurrent calls to one instance run one at
// a time (the method detects an overlap, and -race a data race on k.n).
func TestObjectMethodsSerialized(t *testing.T) {
	c := newCounterApp("here", flash.WithMaxWaiting(100))
	ctx := context.Background()
	h, err := c.counter.New(ctx, counterInit{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 50 {
		wg.Go(func() {
			if _, err := c.inc.Call(ctx, h, incIn{By: 2}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out, err := c.inc.Call(ctx, h, incIn{}); err != nil || out.N != 100 {
		t.Errorf("after 50 calls of +2: %+v, %v", out, err)
	}
}

func TestObjectLimits(t *testing.T) {
	c := newCounterApp("here", flash.WithMaxInstances(2), flash.WithIdleTimeout(20*time.Millisecond))
	ctx := context.Background()
	a, err := c.counter.New(ctx, counterInit{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.counter.New(ctx, counterInit{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.counter.New(ctx, counterInit{}); flash.CodeOf(err) != flash.CodeResourceExhausted {
		t.Fatalf("third instance of 2: %v, want resource_exhausted", err)
	}
	// Idle instances go, and make room.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.inc.Call(ctx, a, incIn{})
		if errors.Is(err, flash.ErrObjectLost) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance never evicted: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // calls keep it alive; let it idle
	}
	for c.closed.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := c.closed.Load(); n != 2 {
		t.Errorf("Close called %d times on eviction, want 2", n)
	}
	if _, err := c.counter.New(ctx, counterInit{}); err != nil {
		t.Errorf("New after eviction: %v", err)
	}
}

func TestObjectInManifest(t *testing.T) {
	c := newCounterApp("here")
	m, err := c.app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := m.Resources["keeper"].Function("Counter")
	if !ok || !f.IsClass || m.FunctionRegistry["Counter"] != "keeper" {
		t.Fatalf("Counter in the manifest: %+v %v, registry %q", f, ok, m.FunctionRegistry["Counter"])
	}
	// On a load-balanced resource too: an object needs no route.
	app := flash.NewApp("lbobj")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	flash.RegisterObject(api, "Session", func(context.Context, struct{}) (*counter, error) { return &counter{}, nil })
	flash.Route(api, "GET /x", "x", func(context.Context, struct{}) (int, error) { return 1, nil })
	if _, err := app.Manifest(); err != nil {
		t.Fatal(err)
	}
	bad := flash.NewApp("bad")
	q := bad.Queue("q", flash.ResourceConfig{})
	flash.Register(q, "Counter", func(context.Context, struct{}) (int, error) { return 1, nil })
	o := flash.RegisterObject(q, "Counter", func(context.Context, struct{}) (*counter, error) { return &counter{}, nil }, flash.WithMaxInstances(-1))
	flash.Method(o, "bad-name", func(context.Context, *counter, struct{}) (int, error) { return 1, nil })
	_, err = bad.Manifest()
	for _, want := range []string{"name is taken", "instance bound", "bad-name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad registrations: %v, want %q", err, want)
		}
	}
}

// replicaSet runs the counter app as 3 children of resource keeper and one
// of front, without a mothership: each routes by a manifest file that lists
// the 3 keepers' URLs.
type replicaSet struct {
	keepers []*counterApp
	cancel  []context.CancelFunc
	done    []chan error
	urls    []string
	front   *counterApp
	file    string
}

func startReplicas(t *testing.T) *replicaSet {
	t.Helper()
	rs := &replicaSet{}
	var lns []net.Listener
	for range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		rs.urls = append(rs.urls, "http://"+ln.Addr().String())
	}
	base := newCounterApp("")
	m, err := base.app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.WithRuntime("keeper", manifest.Runtime{EndpointURLs: rs.urls[:3], Status: manifest.StatusDeployed})
	rs.file = filepath.Join(t.TempDir(), "flash_manifest.json")
	if err := os.WriteFile(rs.file, m.Pretty(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(c *counterApp, resource string, ln net.Listener) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- c.app.Run(ctx, flash.Config{Role: flash.Child, Resource: resource, Listener: ln, APIKey: "k",
				ManifestPath: rs.file, Logger: slog.New(slog.DiscardHandler)})
		}()
		rs.cancel = append(rs.cancel, cancel)
		rs.done = append(rs.done, done)
	}
	for i := range 3 {
		k := newCounterApp(fmt.Sprint("keeper-", i))
		rs.keepers = append(rs.keepers, k)
		run(k, "keeper", lns[i])
	}
	rs.front = newCounterApp("front")
	run(rs.front, "front", lns[3])
	t.Cleanup(func() {
		for i := range rs.cancel {
			rs.stop(t, i)
		}
	})
	for _, u := range rs.urls {
		waitPing(t, u)
	}
	return rs
}

// stop ends process i (0-2 keepers, 3 front); a second stop does nothing.
func (rs *replicaSet) stop(t *testing.T, i int) {
	if rs.cancel[i] == nil {
		return
	}
	rs.cancel[i]()
	rs.cancel[i] = nil
	if err := <-rs.done[i]; err != nil {
		t.Errorf("process %d: %v", i, err)
	}
}

func waitPing(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/ping")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered /ping: %v", base, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestObjectAffinityAcrossReplicas: instances made from front land on the
// keepers, each call reaches the keeper that holds its instance, and one
// whose keeper stopped fails with ErrObjectLost while the others go on.
func TestObjectAffinityAcrossReplicas(t *testing.T) {
	rs := startReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type inst struct {
		h       flash.Handle[counter]
		n       int
		replica string
	}
	byReplica := map[string][]*inst{}
	var all []*inst
	for i := 0; i < 30 && len(byReplica) < 3; i++ {
		h, err := rs.front.counter.New(ctx, counterInit{Start: 100 * i})
		if err != nil {
			t.Fatal(err)
		}
		out, err := rs.front.inc.Call(ctx, h, incIn{By: 1})
		if err != nil {
			t.Fatal(err)
		}
		in := &inst{h: h, n: out.N, replica: out.Replica}
		if out.N != 100*i+1 || !strings.HasPrefix(out.Replica, "keeper-") {
			t.Fatalf("first inc of instance %d: %+v", i, out)
		}
		byReplica[in.replica] = append(byReplica[in.replica], in)
		all = append(all, in)
	}
	if len(byReplica) < 2 {
		t.Fatalf("30 instances all on %v: no spread to test affinity with", byReplica)
	}
	for round := range 3 {
		for _, in := range all {
			out, err := rs.front.inc.Call(ctx, in.h, incIn{By: 2})
			if err != nil || out.N != in.n+2 || out.Replica != in.replica {
				t.Fatalf("round %d: inc of an instance of %s with %d: %+v, %v", round, in.replica, in.n, out, err)
			}
			in.n = out.N
		}
	}
	// A keeper calling an instance another keeper holds: the same route.
	in := all[0]
	out, err := rs.keepers[(keeperIndex(in.replica)+1)%3].inc.Call(ctx, in.h, incIn{By: 1})
	if err != nil || out.Replica != in.replica || out.N != in.n+1 {
		t.Fatalf("inc from another keeper: %+v, %v", out, err)
	}
	in.n = out.N

	victim := all[len(all)-1].replica
	rs.stop(t, keeperIndex(victim))
	for _, in := range all {
		out, err := rs.front.inc.Call(ctx, in.h, incIn{By: 1})
		if in.replica == victim {
			if !errors.Is(err, flash.ErrObjectLost) {
				t.Errorf("instance on the stopped %s: %+v, %v; want ErrObjectLost", victim, out, err)
			}
			continue
		}
		if err != nil || out.N != in.n+1 || out.Replica != in.replica {
			t.Errorf("instance on %s after %s stopped: %+v, %v", in.replica, victim, out, err)
		}
	}
}

func keeperIndex(replica string) int {
	var i int
	fmt.Sscanf(replica, "keeper-%d", &i)
	return i
}

// TestObjectThroughClient: a bound Object makes and calls instances over
// HTTP at /{resource}/flash/objects/…, as through the gateway (here a
// Handler mounted under /keeper), and the answers carry the codes.
func TestObjectThroughClient(t *testing.T) {
	served := newCounterApp("served", flash.WithMaxInstances(2))
	h, err := served.app.Handler("keeper", flash.Config{APIKey: "k", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/keeper/", http.StripPrefix("/keeper", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer h.Shutdown(context.Background())

	client, err := flash.NewClient(srv.URL, "k")
	if err != nil {
		t.Fatal(err)
	}
	local := newCounterApp("caller") // another program's declaration
	counterC := flash.BindObject(client, local.counter)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := counterC.New(ctx, counterInit{Start: 5})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := local.inc.Call(ctx, a, incIn{By: 3}); err != nil || out.N != 8 || out.Replica != "served" {
		t.Fatalf("inc through the client: %+v, %v", out, err)
	}
	if _, err := local.inc.Call(ctx, a, incIn{By: -1}); flash.CodeOf(err) != flash.CodeOutOfRange {
		t.Errorf("coded error through the client: %v", err)
	}
	// An id that went through JSON, attached again.
	again, err := counterC.Attach(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := local.inc.Call(ctx, again, incIn{By: 1}); err != nil || out.N != 9 {
		t.Fatalf("inc of the attached handle: %+v, %v", out, err)
	}
	if _, err := counterC.New(ctx, counterInit{}); err != nil {
		t.Fatal(err)
	}
	_, err = counterC.New(ctx, counterInit{})
	var re *flash.RemoteError
	if !errors.As(err, &re) || re.Code != flash.CodeResourceExhausted {
		t.Errorf("New beyond the bound: %v, want a resource_exhausted RemoteError", err)
	}
	if err := counterC.Close(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := local.inc.Call(ctx, a, incIn{By: 1}); !errors.Is(err, flash.ErrObjectLost) {
		t.Errorf("inc after Close through the client: %v, want ErrObjectLost", err)
	}
	// The answer an outside caller sees.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/keeper/flash/objects/Counter/"+a.ID+"/inc", strings.NewReader(`{"by":1}`))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"error_type":"ObjectLost"`) || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Errorf("lost instance over HTTP: %d %s", resp.StatusCode, body)
	}
}
