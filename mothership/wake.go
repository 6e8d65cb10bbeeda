package mothership

import (
	"sync"
	"time"
)

// wakeGrain is the resolution of a long poll's deadline: polls whose
// deadlines fall in the same grain share one channel and one timer. A wait
// ends up to one grain early, never late; herdWait already shortens it by
// up to 10%.
const wakeGrain = 10 * time.Millisecond

// deadlines hands out channels that close when a deadline passes, one per
// grain for every poll due then, so that a parked poll holds no timer of
// its own: the children a deploy woke come back together and share them.
// There are at most MaxWait/wakeGrain entries.
type deadlines struct {
	mu sync.Mutex
	at map[int64]chan struct{} // grain index → closed when it passes
}

// after returns a channel closed at the start of the grain in which
// now+wait falls.
func (d *deadlines) after(now time.Time, wait time.Duration) <-chan struct{} {
	g := now.Add(wait).UnixNano() / int64(wakeGrain)
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, ok := d.at[g]; ok {
		return ch
	}
	if d.at == nil {
		d.at = make(map[int64]chan struct{})
	}
	ch := make(chan struct{})
	d.at[g] = ch
	time.AfterFunc(time.Unix(0, g*int64(wakeGrain)).Sub(now), func() {
		d.mu.Lock()
		delete(d.at, g)
		d.mu.Unlock()
		close(ch)
	})
	return ch
}
