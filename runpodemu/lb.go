package runpodemu

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// Load-balanced endpoints (RUNPOD.md §5): reachable at URL/lb/{id}/… (and
// at Host {id}.<anything>, as {id}.api.runpod.ai), proxied with path and
// method unchanged to a worker whose health check answers 200.

const (
	maxLBBody       = 30 << 20 // request and response limit
	lbRequestLimit  = 330 * time.Second
	healthTimeout   = 2 * time.Second
	headerWorkerID  = "X-Runpod-Worker-Id"
	noWorkersDetail = "no workers available"
)

// newLBTransport is the pool of connections to load-balanced workers.
func newLBTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
}

// lbHost returns the endpoint a Host header names ({id}.…), if it is a
// load-balanced endpoint.
func (e *Emulator) lbHost(host string) string {
	label, _, ok := strings.Cut(host, ".")
	if !ok || label == "" {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if run := e.runs[label]; run != nil && run.rec.Type == typeLB {
		return label
	}
	return ""
}

func (e *Emulator) serveLB(w http.ResponseWriter, r *http.Request) {
	id, path := e.lbHost(r.Host), r.URL.Path
	if id == "" {
		rest := strings.TrimPrefix(r.URL.Path, "/lb/")
		id, path, _ = strings.Cut(rest, "/")
		path = "/" + path
	}
	if !keyOK(bearerOrRaw(r), e.key) {
		writeJobError(w, errorf(401, "unauthorized: missing or invalid API key"))
		return
	}
	if r.ContentLength > maxLBBody {
		writeJobError(w, errorf(413, "request body over 30 MB"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLBBody)
	wk, perr := e.pickWorker(r.Context(), id, r.Header.Get(headerWorkerID))
	if perr != nil {
		writeJobError(w, perr)
		return
	}
	defer func() {
		e.mu.Lock()
		wk.inflight--
		wk.run.lbInflight--
		wk.lastBusy = time.Now()
		wk.run.wake()
		e.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(r.Context(), lbRequestLimit)
	defer cancel()
	target := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(wk.port)}
	proxy := &httputil.ReverseProxy{
		Transport: e.lbTransport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.URL.Path, pr.Out.URL.RawPath = path, ""
			pr.Out.Host = target.Host
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(headerWorkerID, wk.id)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set(headerWorkerID, wk.id)
			writeJobError(w, errorf(502, "worker did not answer: "+err.Error()))
		},
	}
	defer wire.ProxyFullDuplex(w, r)() // a streamed answer is not cut while the body is sent
	proxy.ServeHTTP(w, r.WithContext(ctx))
}

// pickWorker returns a ready worker of the endpoint, counting the request
// as in flight on it. With none ready it counts the request as waiting (so
// that the scaler starts one: scale from zero) and waits up to LBWait.
// affinity is the X-Runpod-Worker-Id header: "<id>" prefers that worker,
// "strict <id>" (and "strict-resume <id>") takes no other: gone → 404
// affinity_worker_gone, not ready in time → 400 worker_timeout. A worker
// the emulator stopped cannot be resumed, so strict-resume acts as strict.
func (e *Emulator) pickWorker(ctx context.Context, id, affinity string) (*worker, *apiError) {
	prefer, strict := strings.TrimSpace(affinity), false
	for _, p := range []string{"strict-resume ", "strict "} {
		if rest, ok := strings.CutPrefix(prefer, p); ok {
			prefer, strict = strings.TrimSpace(rest), true
			break
		}
	}
	t := time.NewTimer(e.cfg.LBWait)
	defer t.Stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	waiting := false
	defer func() {
		if waiting {
			if run := e.runs[id]; run != nil {
				run.lbWaiting--
			}
		}
	}()
	for {
		run := e.runs[id]
		if run == nil || run.rec.Type != typeLB {
			return nil, errorf(404, "endpoint not found")
		}
		var best *worker
		if strict {
			w := run.workers[prefer]
			if w == nil || w.stopping {
				return nil, errorf(404, "affinity_worker_gone")
			}
			if w.ready {
				best = w
			}
		} else {
			for _, w := range run.workers {
				if w.stopping || !w.ready {
					continue
				}
				if w.id == prefer {
					best = w
					break
				}
				if best == nil || w.inflight < best.inflight {
					best = w
				}
			}
		}
		if best != nil {
			best.inflight++
			run.lbInflight++
			return best, nil
		}
		if !waiting && !strict {
			waiting = true
			run.lbWaiting++
			e.scaleLocked(run, time.Now())
		}
		changed := run.changed
		e.mu.Unlock()
		timedOut := false
		select {
		case <-changed:
		case <-t.C:
			timedOut = true
		case <-ctx.Done():
			timedOut = true
		}
		e.mu.Lock()
		switch {
		case timedOut && strict:
			return nil, errorf(http.StatusBadRequest, "worker_timeout")
		case timedOut:
			return nil, errorf(http.StatusServiceUnavailable, noWorkersDetail)
		}
	}
}

// checkHealth polls a load-balanced worker's health path until it stops:
// 200 = ready (routable), 204 = initializing, anything else = not routable.
func (e *Emulator) checkHealth(w *worker) {
	defer e.loops.Done()
	client := &http.Client{Transport: e.lbTransport, Timeout: healthTimeout}
	url := "http://127.0.0.1:" + strconv.Itoa(w.healthPort) + w.healthPath
	interval := min(e.cfg.Tick, 200*time.Millisecond)
	for {
		select {
		case <-w.stopCh:
			return
		case <-e.ctx.Done():
			return
		case <-time.After(interval):
		}
		ready := false
		if req, err := http.NewRequestWithContext(e.ctx, "GET", url, nil); err == nil {
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
		}
		e.mu.Lock()
		if ready != w.ready {
			w.ready = ready
			if ready && w.firstPoll.IsZero() {
				w.firstPoll = time.Now()
				e.log.Info("worker ready", "endpoint", w.run.rec.ID, "worker", w.id,
					"cold_start_ms", w.firstPoll.Sub(w.started).Milliseconds())
			}
			w.run.wake()
		}
		e.mu.Unlock()
		if ready {
			interval = max(e.cfg.Tick, time.Second)
		}
	}
}
