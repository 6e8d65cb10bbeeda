package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// The propagation baseline: the least a long-poll service can do. A bare
// net/http handler parks GET /manifest?version=V until a newer version is
// set in memory (no store, no auth, no reports) and writes its bytes; bare
// clients (one http.Client each) read the answer, decode it with
// json.Unmarshal and poll again. Measured like the mothership, clients in
// helper processes.

// barePoll is the bare long-poll server's state: the version served and a
// channel closed when it is replaced.
type barePoll struct {
	cur      atomic.Pointer[bareVersion]
	parked   atomic.Int64
	answered atomic.Pointer[func()]
}

type bareVersion struct {
	v       int64
	body    []byte
	changed chan struct{}
}

func newBarePoll(body []byte) *barePoll {
	p := &barePoll{}
	p.cur.Store(&bareVersion{v: 1, body: body, changed: make(chan struct{})})
	return p
}

// publish serves body as the next version and wakes the parked polls.
func (p *barePoll) publish(body []byte) int64 {
	old := p.cur.Load()
	p.cur.Store(&bareVersion{v: old.v + 1, body: body, changed: make(chan struct{})})
	close(old.changed)
	return old.v + 1
}

func (p *barePoll) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen, _ := strconv.ParseInt(r.URL.Query().Get("version"), 10, 64)
	cur := p.cur.Load()
	if cur.v <= seen {
		p.parked.Add(1)
		t := time.NewTimer(time.Minute)
		select {
		case <-cur.changed:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		p.parked.Add(-1)
		cur = p.cur.Load()
	}
	h := w.Header()
	h.Set("Content-Type", wire.ContentTypeJSON)
	h.Set(wire.HeaderManifestVersion, strconv.FormatInt(cur.v, 10))
	h.Set("Content-Length", strconv.Itoa(len(cur.body)))
	w.Write(cur.body)
	if done := p.answered.Load(); done != nil && cur.v > seen {
		(*done)()
	}
}

// runBarePolls runs n bare clients of the bare server at url until ctx ends,
// calling applied with each version decoded and the wall-clock time (unix
// ns). wait waits for them and closes their connections.
func runBarePolls(ctx context.Context, url string, n int, applied func(v, at int64)) (wait func()) {
	var wg sync.WaitGroup
	var closers []func()
	for range n {
		tr := wire.NewTransport()
		closers = append(closers, tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		wg.Go(func() {
			var seen int64
			for ctx.Err() == nil {
				v, err := barePollOnce(ctx, client, url, seen)
				if err != nil {
					select { // the server is starting or stopping
					case <-ctx.Done():
						return
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				if v > seen {
					seen = v
					applied(v, time.Now().UnixNano())
				}
			}
		})
	}
	return func() {
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}
}

// barePollOnce is one long poll of a bare client: the version answered,
// decoded with json.Unmarshal.
func barePollOnce(ctx context.Context, client *http.Client, url string, seen int64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/manifest?version="+strconv.FormatInt(seen, 10), nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return 0, fmt.Errorf("bare poll: %w", err)
	}
	return strconv.ParseInt(resp.Header.Get(wire.HeaderManifestVersion), 10, 64)
}
