package child

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/manifest"
)

// TestCallerFollowsMovedEndpoint: a call whose endpoint vanished follows
// the function to the URL a newer manifest gives it, woken by the sync's
// change notification.
func TestCallerFollowsMovedEndpoint(t *testing.T) {
	base := mustParse(t, fixture(t, "valid/pipeline-runtime.json"))
	// The old endpoint takes the request and drops the connection: gone.
	hit := make(chan struct{}, 1)
	gone, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hit <- struct{}{}:
		default:
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	moved, client := startServer(t, newFakeChild())

	f := newFakeMothership()
	f.publish(withEmbedderURL(t, base, gone.URL))
	ms, msClient := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: ms.URL, PollWait: 5 * time.Second,
		HTTPClient: msClient, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runSync(t, s)
	r := NewRouter(RouterConfig{Identity: "api", Sync: s, Logger: quietLogger()})
	c := NewCaller(r, newTestInvoker(t, client), s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tg, err := c.Route(ctx, "embed")
	if err != nil || tg == nil || tg.URLs[0] != gone.URL {
		t.Fatalf("route %+v, %v", tg, err)
	}

	done := make(chan error, 1)
	var out embedOut
	go func() { done <- c.Invoke(ctx, tg, embedIn{Text: "four"}, &out) }()
	<-hit
	eventually(t, "a parked long poll", func() bool { return f.parked.Load() == 1 })
	f.publish(withEmbedderURL(t, base, moved.URL))
	if err := <-done; err != nil {
		t.Fatalf("call across the move: %v", err)
	}
	if len(out.Vector) != 1 || out.Vector[0] != 4 {
		t.Fatalf("out %+v", out)
	}
}

// TestSyncChanged: the channel closes at the next apply, and only then.
func TestSyncChanged(t *testing.T) {
	base := mustParse(t, fixture(t, "valid/pipeline-runtime.json"))
	f := newFakeMothership()
	f.publish(mustJSON(t, base))
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, PollWait: 5 * time.Second,
		HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Changed()
	runSync(t, s)
	<-first // version 1 applied
	second := s.Changed()
	eventually(t, "a parked long poll", func() bool { return f.parked.Load() == 1 })
	select {
	case <-second:
		t.Fatal("closed without a new apply")
	default:
	}
	f.publish(withEmbedderURL(t, base, "http://127.0.0.1:1"))
	<-second
	if s.Version() != 2 {
		t.Fatalf("version %d after the second wake-up", s.Version())
	}
}

// TestCallerClosesBreakerOnRestart: an endpoint whose breaker opened is
// called again, without waiting for a probe, as soon as the manifest shows
// it restarted (its status or URLs changed).
func TestCallerClosesBreakerOnRestart(t *testing.T) {
	base := mustParse(t, fixture(t, "valid/pipeline-runtime.json"))
	ep := &scripted{answer: failThen(DefaultBreakerFailures, http.StatusInternalServerError, "")}
	srv, client := startServer(t, ep)
	f := newFakeMothership()
	f.publish(mustJSON(t, base.WithRuntime("embedder", manifest.Runtime{EndpointURLs: []string{srv.URL}, Status: manifest.StatusDeployed})))
	ms, msClient := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: ms.URL, PollWait: 5 * time.Second,
		HTTPClient: msClient, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runSync(t, s)
	clk := &clock{now: time.Unix(1000, 0)} // stands still: no probe ever comes due
	iv := NewInvoker(InvokerConfig{Client: client, Logger: quietLogger(), Now: clk.Now})
	c := NewCaller(NewRouter(RouterConfig{Identity: "api", Sync: s, Logger: quietLogger()}), iv, s)
	ctx := context.Background()
	call := func() error {
		tg, err := c.Route(ctx, "embed")
		if err != nil {
			return err
		}
		return c.Invoke(ctx, tg, embedIn{}, nil)
	}
	for range DefaultBreakerFailures {
		if err := call(); err == nil || errors.Is(err, flasherr.ErrCircuitOpen) {
			t.Fatalf("got %v, want the endpoint's failure", err)
		}
	}
	if err := call(); !errors.Is(err, flasherr.ErrCircuitOpen) {
		t.Fatalf("got %v, want ErrCircuitOpen", err)
	}
	// The mothership reports the endpoint failed, then back (restarted).
	changed := s.Changed()
	f.publish(mustJSON(t, base.WithRuntime("embedder", manifest.Runtime{EndpointURLs: []string{srv.URL}, Status: manifest.StatusUpdated})))
	<-changed
	if err := call(); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}
