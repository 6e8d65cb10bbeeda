package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultAPIBase is Runpod's REST API host; every path carries /v2
// (RUNPOD_REST_V2.md §1).
const DefaultAPIBase = "https://api.runpod.io"

// Errors of the REST client, inspectable with errors.Is on an *APIError.
var (
	ErrNotFound     = errors.New("runpod: not found")
	ErrUnauthorized = errors.New("runpod: the API key was refused")
	ErrRateLimited  = errors.New("runpod: rate limited")
)

// APIError is an answer other than success, decoded from RFC 9457
// problem+json (or Runpod's older {"error"|"message"} shapes).
type APIError struct {
	Method, Path string
	Status       int
	Detail       string
	Errors       []string      // one per validation failure (422)
	RetryAfter   time.Duration // from Retry-After, 0 when absent
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("runpod: %s %s: %d %s", e.Method, e.Path, e.Status, e.Detail)
	if len(e.Errors) > 0 {
		msg += " (" + strings.Join(e.Errors, "; ") + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

// Retryable reports whether the same request may succeed later: 429 and 5xx.
func (e *APIError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Client speaks Runpod's REST API v2 (serverless endpoints, their workers
// and releases, network volumes). The zero value is not usable: set Key.
type Client struct {
	// Base is the API host, default DefaultAPIBase; a trailing /v2 is accepted.
	Base string
	// Key is sent as Authorization: Bearer. It never appears in an error.
	Key string
	// HTTP makes the calls; nil → a client with a 30 s timeout per attempt.
	HTTP *http.Client
	// Attempts bounds the tries of one call on 429/5xx; default 5.
	Attempts int
	// Observe, when set, is called once per HTTP request sent (tests count
	// mutating calls with it).
	Observe func(method, path string, status int)
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

func (c *Client) base() string {
	b := strings.TrimRight(c.Base, "/")
	if b == "" {
		b = DefaultAPIBase
	}
	return strings.TrimSuffix(b, "/v2")
}

// maxAnswer bounds an answer read.
const maxAnswer = 16 << 20

// do sends one call, retrying 429 and 5xx (and, for requests that are safe
// to repeat, network errors) with back-off, honouring Retry-After, within
// ctx. POST (create) is retried on 429 only: a 5xx may have created it.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("runpod: %s %s: encode: %w", method, path, err)
		}
	}
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	var last error
	for try := 0; try < attempts; try++ {
		if try > 0 {
			wait := backoff(try)
			var ae *APIError
			if errors.As(last, &ae) && ae.RetryAfter > 0 {
				wait = ae.RetryAfter
			}
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return fmt.Errorf("%w (not retried: the wait of %s would pass the deadline)", last, wait)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (gave up: %w)", last, ctx.Err())
			case <-t.C:
			}
		}
		err := c.once(ctx, method, path, payload, out)
		if err == nil {
			return nil
		}
		last = err
		var ae *APIError
		switch {
		case ctx.Err() != nil:
			return err
		case errors.As(err, &ae):
			if !ae.Retryable() || (method == http.MethodPost && ae.Status != http.StatusTooManyRequests) {
				return err
			}
		case method == http.MethodPost:
			return err // a create that may have happened is looked up, not repeated
		}
	}
	return last
}

// backoff is the pause before try n (1, 2, …): 0.5 s doubling to 8 s, ±25 %.
func backoff(n int) time.Duration {
	d := min(500*time.Millisecond<<min(n-1, 4), 8*time.Second)
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (c *Client) once(ctx context.Context, method, path string, payload []byte, out any) error {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base()+path, rd)
	if err != nil {
		return fmt.Errorf("runpod: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		if c.Observe != nil {
			c.Observe(method, path, 0)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		return fmt.Errorf("runpod: %s %s%s: %w", method, c.base(), path, err)
	}
	defer resp.Body.Close()
	if c.Observe != nil {
		c.Observe(method, path, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("runpod: %s %s: reading the answer: %w", method, path, err)
	}
	if len(b) > maxAnswer {
		return fmt.Errorf("runpod: %s %s: answer over %d bytes", method, path, maxAnswer)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(method, path, resp, b)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("runpod: %s %s: undecodable answer: %w", method, path, err)
	}
	return nil
}

// apiError decodes a failure: problem+json's detail or title, else the
// older error/message keys, else the raw text; the key is never echoed.
func (c *Client) apiError(method, path string, resp *http.Response, b []byte) *APIError {
	ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
	var p struct {
		Title, Detail, Error, Message string
		Errors                        []string
	}
	if json.Unmarshal(b, &p) == nil {
		ae.Detail, ae.Errors = firstNonEmpty(p.Detail, p.Title, p.Error, p.Message), p.Errors
	}
	if ae.Detail == "" {
		ae.Detail = strings.TrimSpace(string(b[:min(len(b), 512)]))
	}
	if ae.Detail == "" {
		ae.Detail = http.StatusText(resp.StatusCode)
	}
	if c.Key != "" {
		ae.Detail = strings.ReplaceAll(ae.Detail, c.Key, "***")
		for i := range ae.Errors {
			ae.Errors[i] = strings.ReplaceAll(ae.Errors[i], c.Key, "***")
		}
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 0 {
			ae.RetryAfter = time.Duration(min(n, 3600)) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			ae.RetryAfter = max(time.Until(t), 0)
		}
	}
	return ae
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// ListEndpoints returns every endpoint of the account, following the
// cursor that Runpod's CLI follows when an answer carries one (§9).
func (c *Client) ListEndpoints(ctx context.Context) ([]Endpoint, error) {
	var all []Endpoint
	cursor := ""
	for page := 0; page < 100; page++ {
		path := "/v2/serverless"
		if cursor != "" {
			path += "?cursor=" + url.QueryEscape(cursor)
		}
		var ans struct {
			Endpoints  []Endpoint `json:"endpoints"`
			Pagination struct {
				NextCursor  string `json:"nextCursor"`
				HasNextPage bool   `json:"hasNextPage"`
			} `json:"pagination"`
		}
		if err := c.do(ctx, http.MethodGet, path, nil, &ans); err != nil {
			return nil, err
		}
		all = append(all, ans.Endpoints...)
		if !ans.Pagination.HasNextPage || ans.Pagination.NextCursor == "" || ans.Pagination.NextCursor == cursor {
			return all, nil
		}
		cursor = ans.Pagination.NextCursor
	}
	return all, nil
}

func endpointPath(id string) string { return "/v2/serverless/" + url.PathEscape(id) }

// Endpoint returns one endpoint.
func (c *Client) Endpoint(ctx context.Context, id string) (Endpoint, error) {
	var ep Endpoint
	err := c.do(ctx, http.MethodGet, endpointPath(id), nil, &ep)
	return ep, err
}

// CreateEndpoint creates an endpoint (POST /v2/serverless → 201).
func (c *Client) CreateEndpoint(ctx context.Context, req EndpointRequest) (Endpoint, error) {
	var ep Endpoint
	err := c.do(ctx, http.MethodPost, "/v2/serverless", req, &ep)
	return ep, err
}

// UpdateEndpoint changes the fields patch holds (PATCH, a rolling release
// for container fields) and returns the whole updated endpoint.
func (c *Client) UpdateEndpoint(ctx context.Context, id string, patch map[string]any) (Endpoint, error) {
	var ep Endpoint
	err := c.do(ctx, http.MethodPatch, endpointPath(id), patch, &ep)
	return ep, err
}

// DeleteEndpoint deletes an endpoint, its workers and its jobs (204).
func (c *Client) DeleteEndpoint(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, endpointPath(id), nil, nil)
}

// Workers lists an endpoint's active workers.
func (c *Client) Workers(ctx context.Context, id string) (WorkerList, error) {
	var w WorkerList
	err := c.do(ctx, http.MethodGet, endpointPath(id)+"/workers", nil, &w)
	return w, err
}

// Releases lists an endpoint's releases and its rollout.
func (c *Client) Releases(ctx context.Context, id string) (ReleaseList, error) {
	var r ReleaseList
	err := c.do(ctx, http.MethodGet, endpointPath(id)+"/releases", nil, &r)
	return r, err
}

// NetworkVolumes lists the account's network volumes.
func (c *Client) NetworkVolumes(ctx context.Context) ([]NetworkVolume, error) {
	var ans struct {
		NetworkVolumes []NetworkVolume `json:"networkVolumes"`
	}
	err := c.do(ctx, http.MethodGet, "/v2/network-volumes", nil, &ans)
	return ans.NetworkVolumes, err
}

// CreateNetworkVolume creates a network volume.
func (c *Client) CreateNetworkVolume(ctx context.Context, v NetworkVolume) (NetworkVolume, error) {
	var out NetworkVolume
	err := c.do(ctx, http.MethodPost, "/v2/network-volumes", v, &out)
	return out, err
}
