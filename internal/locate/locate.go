// Package locate finds which of a resource's replica URLs serves a given
// replica id (the prefix of a stateful object's instance id), asking the
// replicas when it does not know: both the mothership's gateway and a
// calling endpoint use it to send an instance's calls to its holder.
package locate

import (
	"context"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// Defaults of a Locator.
const (
	// ProbeTimeout bounds one round of asking the replicas.
	ProbeTimeout = 2 * time.Second
	// Fresh is how long an answer (or a failure to answer) is trusted before
	// a miss asks that replica again; it bounds the probes that calls to a
	// lost instance cause.
	Fresh = time.Second
	// MaxEntries bounds the replicas remembered.
	MaxEntries = 4096
)

// Probe asks the replica at url for its replica id.
type Probe func(ctx context.Context, url string) (string, error)

// Locator remembers the replica id of each URL it has seen. It is safe for
// concurrent use.
type Locator struct {
	now   func() time.Time
	mu    sync.Mutex
	byURL map[string]entry
}

type entry struct {
	id string // "" when the replica did not answer
	at time.Time
}

// New returns an empty Locator; now nil means time.Now.
func New(now func() time.Time) *Locator {
	if now == nil {
		now = time.Now
	}
	return &Locator{now: now, byURL: make(map[string]entry)}
}

// Learn records that the replica at url has id (an answer named it).
func (l *Locator) Learn(url, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byURL) >= MaxEntries {
		if _, ok := l.byURL[url]; !ok {
			clear(l.byURL) // rare: thousands of replicas came and went
		}
	}
	l.byURL[url] = entry{id: id, at: l.now()}
}

// Forget drops what is known of url (its process went away).
func (l *Locator) Forget(url string) {
	l.mu.Lock()
	delete(l.byURL, url)
	l.mu.Unlock()
}

// Find returns the URL among urls of the replica id, or "" when none of
// them is that replica (it stopped, or restarted as another). With a single
// URL it returns it unasked: that replica tells whether it holds the
// instance. Otherwise it asks, at once, every replica it does not know
// freshly, and returns as soon as one names id; ctx bounds the wait.
func (l *Locator) Find(ctx context.Context, id string, urls []string, probe Probe) string {
	if len(urls) == 1 {
		return urls[0]
	}
	var ask []string
	l.mu.Lock()
	now := l.now()
	for _, u := range urls {
		e, ok := l.byURL[u]
		if ok && e.id == id {
			l.mu.Unlock()
			return u
		}
		if !ok || now.Sub(e.at) >= Fresh {
			ask = append(ask, u)
		}
	}
	l.mu.Unlock()
	if len(ask) == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	found := make(chan string, len(ask))
	var wg sync.WaitGroup
	for _, u := range ask {
		wg.Go(func() {
			got, err := probe(ctx, u)
			if err != nil && ctx.Err() != nil {
				return // cut short: says nothing about u
			}
			l.Learn(u, got) // "" for a replica that did not answer
			if got == id {
				found <- u
			}
		})
	}
	go func() { wg.Wait(); close(found) }()
	u := <-found // the first match, or "" once every probe is done
	cancel()
	wg.Wait() // no probe outlives the call
	return u
}

// Gone reports, after a call to replica id at url failed, whether that
// replica is gone: nothing listens at url any more, or another replica
// does (the process restarted). A replica that answers as id, or goes on
// failing otherwise (a reset: maybe a process still dying), until
// ProbeTimeout is not gone: the failure may pass.
func (l *Locator) Gone(ctx context.Context, id, url string, probe Probe) bool {
	l.Forget(url)
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	for {
		got, err := probe(ctx, url)
		switch {
		case err == nil:
			l.Learn(url, got)
			return got != id
		case wire.Refused(err):
			l.Learn(url, "")
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(reprobe):
		}
	}
}

// reprobe is the pause before asking again a replica whose answer failed.
const reprobe = 50 * time.Millisecond
