package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Webhook delivery, as on Runpod: a /run request's "webhook" URL gets a POST
// of the job's final status; when it fails, two more attempts 10 s apart.
const (
	webhookAttempts = 3
	webhookPause    = 10 * time.Second
	webhookTimeout  = 10 * time.Second // per attempt
	maxWebhooks     = 1000             // deliveries pending at once; more are dropped with a warning
	maxWebhookURL   = 2048
)

// Bounds of policy.ttl and policy.executionTimeout (Runpod's).
const (
	minJobTTL      = 10 * time.Second
	maxJobTTL      = 7 * 24 * time.Hour
	minExecTimeout = 5 * time.Second
	maxExecTimeout = 7 * 24 * time.Hour
)

// extrasOf returns the request's "webhook" URL ("" when it has none) and
// its policy.ttl (0 when none), and checks its policy.executionTimeout
// against Runpod's bounds (the envelope's decoder read its value). Only
// absolute http(s) URLs are taken.
func extrasOf(body []byte) (hook string, ttl time.Duration, err error) {
	if !bytes.Contains(body, []byte(`"policy"`)) && !bytes.Contains(body, []byte(`"webhook"`)) {
		return "", 0, nil // the common case costs no second decode
	}
	var req struct {
		Webhook any `json:"webhook"`
		Policy  struct {
			TTL  *float64 `json:"ttl"`
			Exec *float64 `json:"executionTimeout"`
		} `json:"policy"`
	}
	json.Unmarshal(body, &req) // the envelope's decoder reported what is malformed
	if ms := req.Policy.Exec; ms != nil && (*ms < float64(minExecTimeout.Milliseconds()) || *ms > float64(maxExecTimeout.Milliseconds())) {
		return "", 0, badRequest(`"policy.executionTimeout" must be milliseconds between %d and %d`, minExecTimeout.Milliseconds(), maxExecTimeout.Milliseconds())
	}
	if ms := req.Policy.TTL; ms != nil {
		if *ms < float64(minJobTTL.Milliseconds()) || *ms > float64(maxJobTTL.Milliseconds()) {
			return "", 0, badRequest(`"policy.ttl" must be milliseconds between %d and %d`, minJobTTL.Milliseconds(), maxJobTTL.Milliseconds())
		}
		ttl = time.Duration(*ms * float64(time.Millisecond))
	}
	hook, err = webhookOf(req.Webhook)
	return hook, ttl, err
}

// webhookOf checks a request's "webhook" value.
func webhookOf(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	hook, ok := v.(string)
	if !ok {
		return "", badRequest(`"webhook" must be a URL string`)
	}
	if hook == "" {
		return "", nil
	}
	if len(hook) > maxWebhookURL {
		return "", badRequest(`"webhook" is longer than %d bytes`, maxWebhookURL)
	}
	u, err := url.Parse(hook)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", badRequest(`"webhook" must be an absolute http or https URL`)
	}
	return hook, nil
}

// webhooks delivers job outcomes. Goroutines exist only while deliveries
// are pending.
type webhooks struct {
	client *http.Client
	log    *slog.Logger
	pause  time.Duration
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pending int
	closed  bool
	wg      sync.WaitGroup
}

func newWebhooks(log *slog.Logger) *webhooks {
	ctx, cancel := context.WithCancel(context.Background())
	return &webhooks{client: &http.Client{Timeout: webhookTimeout}, log: log, pause: webhookPause, ctx: ctx, cancel: cancel}
}

// send posts body to hook in the background, retrying on failure.
func (h *webhooks) send(hook string, body []byte) {
	h.mu.Lock()
	if h.pending >= maxWebhooks || h.closed {
		h.mu.Unlock()
		h.log.Warn("webhook dropped: too many deliveries pending, or shutting down", "pending", maxWebhooks)
		return
	}
	h.pending++
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			h.pending--
			h.mu.Unlock()
			h.wg.Done()
		}()
		for attempt := 1; ; attempt++ {
			err := h.post(hook, body)
			if err == nil {
				return
			}
			if attempt == webhookAttempts {
				h.log.Warn("webhook not delivered", "attempts", attempt, "err", err)
				return
			}
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(h.pause):
			}
		}
	}()
}

func (h *webhooks) post(hook string, body []byte) error {
	req, err := http.NewRequestWithContext(h.ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	return nil
}

// close waits for pending deliveries until ctx ends, then abandons the rest.
func (h *webhooks) close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.cancel()
		<-done
	}
	h.cancel()
}
