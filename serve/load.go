package serve

import (
	"net/http"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// load answers GET /flash/load: the jobs and load-balanced calls this
// endpoint holds now, which the mothership's autoscaler polls.
func (s *Server) load(w http.ResponseWriter, _ *http.Request) {
	l := s.jobs.load(s.cfg.Now())
	l.Running += len(s.lb.slots)
	l.Queued += int(s.lb.waiting.Load())
	l.Instance = s.cfg.Instance
	wire.WriteJSON(w, http.StatusOK, l)
}

// load reports the queue, the busy slots and the age of the oldest queued job.
func (t *jobTable) load(now time.Time) wire.Load {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := wire.Load{Queued: len(t.queue), Running: t.busy}
	if len(t.queue) > 0 {
		l.OldestWaitMs = now.Sub(t.queue[0].queued).Milliseconds()
	}
	return l
}
