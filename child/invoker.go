package child

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
)

// Defaults of the Invoker (SPEC §9).
const (
	DefaultCallTimeout = 60 * time.Second // when the caller's ctx has no deadline
	MaxResponseSize    = 64 << 20         // largest answer read from another endpoint
)

const (
	pollStart     = 50 * time.Millisecond // first wait before GET /status/{id}
	pollCap       = 2 * time.Second
	cancelTimeout = 2 * time.Second // best-effort POST /cancel/{id} when the caller gives up
	maxErrorBody  = 64 << 10
)

// InvokerConfig configures an Invoker. Zero values mean defaults.
type InvokerConfig struct {
	// APIKey is sent as Authorization: Bearer on every call.
	APIKey string
	// RunpodAPIKey, when set, is sent instead of APIKey to endpoints that
	// Runpod hosts, whose gateway checks the Runpod account's key: URLs on
	// api.runpod.ai (queue-based https://api.runpod.ai/v2/{id},
	// load-balanced https://{id}.api.runpod.ai) or under RunpodBaseURL.
	RunpodAPIKey string
	// RunpodBaseURL is another base of Runpod's client API, such as
	// RUNPOD_ENDPOINT_BASE_URL or a local emulator's http://host:port/v2.
	RunpodBaseURL string
	// Client makes the calls; nil → one client on wire.NewTransport().
	Client *http.Client
	// DefaultTimeout bounds calls whose ctx has no deadline; default 60 s.
	DefaultTimeout time.Duration
	// MaxResponse bounds answers read; default MaxResponseSize.
	MaxResponse int64
	// Logger; nil → slog.Default().
	Logger *slog.Logger
	// Retry says which failed sends are repeated; zero → the defaults.
	Retry RetryPolicy
	// Breaker configures the per-URL circuit breakers; zero → the defaults.
	Breaker BreakerPolicy
	// Now is the breakers' clock (tests); nil → time.Now.
	Now func() time.Time
	// Metrics, when not nil, counts calls, retries and breaker changes.
	Metrics *telemetry.Metrics
}

// Invoker makes remote calls to other endpoints (SPEC §5.3). It is safe for
// concurrent use; create one per process so connections are shared.
type Invoker struct {
	key     string
	rpKey   string // for Runpod's URLs (see InvokerConfig.RunpodAPIKey)
	rpBase  string
	client  *http.Client
	timeout time.Duration
	maxResp int64
	log     *slog.Logger
	retry   RetryPolicy
	brk     *breakers
	metrics *telemetry.Metrics
}

// NewInvoker returns an Invoker for cfg.
func NewInvoker(cfg InvokerConfig) *Invoker {
	iv := &Invoker{key: cfg.APIKey, rpKey: cfg.RunpodAPIKey, rpBase: strings.TrimRight(cfg.RunpodBaseURL, "/"),
		client: cfg.Client, timeout: cfg.DefaultTimeout,
		maxResp: cfg.MaxResponse, log: cfg.Logger, retry: cfg.Retry.withDefaults()}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	iv.brk = newBreakers(cfg.Breaker, cfg.Now)
	iv.brk.metrics, iv.metrics = cfg.Metrics, cfg.Metrics
	if iv.client == nil {
		iv.client = &http.Client{Transport: wire.NewTransport()}
	}
	if iv.timeout <= 0 {
		iv.timeout = DefaultCallTimeout
	}
	if iv.maxResp <= 0 {
		iv.maxResp = MaxResponseSize
	}
	if iv.log == nil {
		iv.log = slog.Default()
	}
	return iv
}

// Invoke calls t's function with in (JSON-encoded) and decodes the result
// into out (a pointer, or nil to discard it). ctx's deadline travels as
// X-Flash-Timeout and its cancellation cancels the request. Errors are
// those of package flasherr: *flasherr.RemoteError for a function error,
// ErrTimeout (wrapping context.DeadlineExceeded) when the deadline passes,
// ctx.Err() when ctx is cancelled, ErrFunctionNotFound, ErrLoopDetected,
// ErrOverloaded (as *flasherr.StatusError), ErrSerialization,
// ErrEndpointNotReady when no endpoint answers, and ErrCircuitOpen when the
// endpoints' breakers are open.
//
// Sends that are safe to repeat are retried within ctx's deadline (see
// RetryPolicy); every attempt carries the same X-Request-Id and, for a
// queue-based call, the same Idempotency-Key, so that the endpoint runs
// the function once.
func (iv *Invoker) Invoke(ctx context.Context, t *Target, in, out any) error {
	return iv.invoke(ctx, t, in, out, nil)
}

// outcome is the flash_outgoing_calls_total label of a call's error.
func outcome(err error) string {
	var remote *flasherr.RemoteError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &remote):
		return "function_error"
	case errors.Is(err, flasherr.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, flasherr.ErrCircuitOpen):
		return "circuit_open"
	case errors.Is(err, flasherr.ErrEndpointNotReady):
		return "not_ready"
	}
	return "error"
}

// invoke is Invoke that gives up waiting for a refusing endpoint when
// moved is closed (see send).
func (iv *Invoker) invoke(ctx context.Context, t *Target, in, out any, moved <-chan struct{}) (err error) {
	if err := t.callable(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, iv.timeout)
		defer cancel()
	}
	if iv.metrics != nil {
		start := time.Now()
		defer func() { iv.metrics.Call(t.Resource, t.Function, outcome(err), time.Since(start)) }()
	}
	c := newCall(ctx, t, moved)
	defer c.release()
	if t.LB {
		return iv.callLB(ctx, &c, in, out)
	}
	return iv.callQB(ctx, &c, in, out)
}

// callable says why t cannot be called, or nil.
func (t *Target) callable() error {
	if t == nil {
		return errors.New("child: a call with a nil target")
	}
	if len(t.URLs) == 0 {
		return &flasherr.NotReadyError{Function: t.Function, Resource: t.Resource, Status: string(t.Status), Reason: t.Error}
	}
	return nil
}

// newCall starts a call of t made while serving ctx.
func newCall(ctx context.Context, t *Target, moved <-chan struct{}) call {
	c := call{t: t, idx: -1, moved: moved}
	c.meta, _ = wire.MetaFrom(ctx)
	// Fixed here, not per send: every attempt is the same call (one
	// request id, one trace; each attempt is a span of its own).
	if c.meta.RequestID == "" {
		c.meta.RequestID = wire.NewRequestID()
	}
	if c.meta.TraceParent == "" {
		c.meta.TraceParent = wire.NewTraceParent()
	}
	if !t.LB {
		// The incoming request id may be shared by several calls of one
		// parent (a function calling g twice); the key names this call alone.
		c.idem = wire.NewRequestID()
	}
	return c
}

// submit posts a job running t's function with in to path (/runsync or
// /run) and decodes the answer; base is the replica that took the job.
func (iv *Invoker) submit(ctx context.Context, c *call, path string, in any) (job wire.JobAnswer, base string, err error) {
	t := c.t
	head := t.qbHead
	if head == nil {
		head = wire.JobRequestHead(t.Function)
	}
	var body bytes.Buffer
	body.Grow(len(head) + len(wire.JobRequestTail) + 256)
	body.Write(head)
	if err := encodeJSON(&body, in); err != nil {
		return job, "", t.errorf("%w: encoding the argument: %w", flasherr.ErrSerialization, err)
	}
	body.WriteString(wire.JobRequestTail)
	a, err := iv.send(ctx, c, http.MethodPost, path, body.Bytes())
	if err != nil {
		return job, "", err
	}
	c.idem = "" // polls and cancels are not the job's submission
	if a.status < 200 || a.status > 299 {
		return job, c.base, iv.statusError(t, c.base+path, a.status, a.data)
	}
	if job, err = wire.DecodeJobAnswer(a.data); err != nil {
		return job, c.base, t.errorf("%w: decoding the %s answer: %w", flasherr.ErrSerialization, path, err)
	}
	return job, c.base, nil
}

func (iv *Invoker) callQB(ctx context.Context, c *call, in, out any) error {
	t := c.t
	job, base, err := iv.submit(ctx, c, "/runsync", in)
	if err != nil {
		return err
	}
	delay := pollStart
	for {
		switch job.Status {
		case wire.StatusCompleted:
			return iv.cleanRemote(t.decodeResult(job, out))
		case wire.StatusFailed:
			return iv.cleanRemote(t.remoteError(job))
		case wire.StatusTimedOut: // expired in the queue, or ran past its execution timeout
			if job.Error != "" {
				return t.errorf("%w: the endpoint reported TIMED_OUT: %s", flasherr.ErrTimeout, iv.clean(truncate(job.Error, maxReasonLen)))
			}
			return t.errorf("%w: the endpoint reported TIMED_OUT", flasherr.ErrTimeout)
		case wire.StatusCancelled:
			return &flasherr.RemoteError{Function: t.Function, Resource: t.Resource, Type: "Cancelled",
				Message: "the job was cancelled on the endpoint"}
		case wire.StatusInQueue, wire.StatusInProgress:
		default:
			return t.errorf("%w: unknown job status %q", flasherr.ErrSerialization, truncate(job.Status, 40))
		}
		if job.ID == "" {
			return t.errorf("%w: job %s without an id", flasherr.ErrSerialization, job.Status)
		}
		// Still running (Runpod answers so after ~90 s): poll its status.
		if !sleep(ctx, delay) {
			iv.cancelJob(ctx, c, base, job.ID)
			return t.ctxError(ctx)
		}
		delay = min(delay*2, pollCap)
		statusURL := base + "/status/" + url.PathEscape(job.ID)
		a, err := iv.do(ctx, c, http.MethodGet, statusURL, nil)
		if err != nil {
			if ctx.Err() != nil {
				iv.cancelJob(ctx, c, base, job.ID)
			}
			return err
		}
		if a.status < 200 || a.status > 299 {
			if a.status == http.StatusNotFound { // the job, not the function, is unknown
				return t.errorf("%w", &flasherr.StatusError{URL: redactURL(statusURL), Code: a.status,
					Message: "job " + truncate(job.ID, 64) + " not found"})
			}
			return iv.statusError(t, statusURL, a.status, a.data)
		}
		id := job.ID
		if job, err = wire.DecodeJobAnswer(a.data); err != nil {
			return t.errorf("%w: decoding the /status answer: %w", flasherr.ErrSerialization, err)
		}
		if job.ID == "" {
			job.ID = id
		}
	}
}

func (t *Target) decodeResult(job wire.JobAnswer, out any) error {
	o := job.Output
	if o != nil && o.Failed() {
		return t.remoteError(job)
	}
	if o == nil || len(o.JSONResult) == 0 {
		return &flasherr.OutputError{Function: t.Function, Resource: t.Resource, Output: excerpt(job.RawOutput)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(o.JSONResult, out); err != nil {
		return t.errorf("%w: decoding the result: %w", flasherr.ErrSerialization, err)
	}
	return nil
}

// maxExcerpt bounds the part of an unreadable output an error shows.
const maxExcerpt = 120

// excerpt is the start of raw, printable, marked when cut.
func excerpt(raw []byte) string {
	if len(raw) <= maxExcerpt {
		return truncate(string(raw), maxExcerpt)
	}
	return truncate(string(raw), maxExcerpt) + "..."
}

func (t *Target) remoteError(job wire.JobAnswer) error {
	e := &flasherr.RemoteError{Function: t.Function, Resource: t.Resource}
	if job.Output != nil {
		e.Type, e.Message, e.Code = job.Output.ErrorType, job.Output.Error, knownCode(job.Output.Code)
	}
	if e.Message == "" {
		typ, msg := wire.JobError(job.Error)
		e.Message = msg
		if e.Type == "" {
			e.Type = typ
		}
	}
	if e.Type == "" {
		e.Type = "Error"
	}
	return e
}

// routeRequest is the path (its parameters filled from in) and body of a
// request to t's route.
func (t *Target) routeRequest(in any) (path string, body []byte, err error) {
	if in != nil {
		var buf bytes.Buffer
		if err := encodeJSON(&buf, in); err != nil {
			return "", nil, t.errorf("%w: encoding the argument: %w", flasherr.ErrSerialization, err)
		}
		body = buf.Bytes()
	}
	if path, err = wire.FillPathJSON(t.Path, body); err != nil {
		return "", nil, t.errorf("%w: %w", flasherr.ErrSerialization, err)
	}
	if t.Method == http.MethodGet {
		body = nil
	}
	return path, body, nil
}

func (iv *Invoker) callLB(ctx context.Context, c *call, in, out any) error {
	t := c.t
	path, payload, err := t.routeRequest(in)
	if err != nil {
		return err
	}
	a, err := iv.send(ctx, c, t.Method, path, payload)
	if err != nil {
		return err
	}
	if a.status < 200 || a.status > 299 {
		return iv.statusError(t, c.base+path, a.status, a.data)
	}
	if out == nil || len(bytes.TrimSpace(a.data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(a.data, out); err != nil {
		return t.errorf("%w: decoding the answer: %w", flasherr.ErrSerialization, err)
	}
	return nil
}

// answer is what one request got back.
type answer struct {
	status     int
	data       []byte
	retryAfter time.Duration // from a Retry-After header; 0 when absent
	body       io.ReadCloser // a streaming call's 2xx answer, unread (data is nil)
}

// do sends one request with the call headers and reads the answer. Error
// texts name the URL without its password, and never the API key.
func (iv *Invoker) do(ctx context.Context, c *call, method, target string, body []byte) (answer, error) {
	c.attempt++
	ctx, span := telemetry.StartCall(ctx, c.t.Resource, c.t.Function, c.attempt)
	a, err := iv.doHTTP(ctx, c, method, target, body)
	telemetry.End(span, a.status, err)
	return a, err
}

// doHTTP is do without its span.
func (iv *Invoker) doHTTP(ctx context.Context, c *call, method, target string, body []byte) (answer, error) {
	t := c.t
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return answer{}, t.errorf("build request: %w", iv.scrub(err))
	}
	wire.SetMetaHeaders(ctx, req.Header, iv.keyFor(target), c.meta)
	telemetry.Inject(ctx, req.Header)
	if c.idem != "" {
		req.Header[wire.HeaderIdempotencyKey] = []string{c.idem}
	}
	if body != nil {
		req.Header["Content-Type"] = jsonValue
	}
	if c.stream {
		req.Header["Accept"] = ndjsonValue
	} else {
		req.Header["Accept"] = jsonValue
	}
	resp, err := iv.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, t.ctxError(ctx)
		}
		iv.log.Debug("endpoint unreachable", "function", t.Function, "url", redactURL(target), "err", iv.scrub(err))
		return answer{}, t.errorf("%w: unreachable: %w", flasherr.ErrEndpointNotReady, iv.scrub(err))
	}
	a := answer{status: resp.StatusCode}
	if c.stream && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		a.body = resp.Body // the caller reads the stream, and closes it
		return a, nil
	}
	defer func() {
		// Drain a little so the connection goes back to the pool.
		io.CopyN(io.Discard, resp.Body, maxErrorBody)
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		a.retryAfter, _ = wire.ParseRetryAfter(resp.Header.Get(wire.HeaderRetryAfter), time.Now())
		// Only the error text matters; a cut one is fine.
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil && ctx.Err() != nil {
			return answer{}, t.ctxError(ctx)
		}
		a.data = data
		return a, nil
	}
	a.data, err = readBounded(resp.Body, iv.maxResp, resp.ContentLength)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, t.ctxError(ctx)
		}
		if errors.Is(err, errTooLarge) {
			return answer{}, t.errorf("%w: reading the answer: %w", flasherr.ErrSerialization, err)
		}
		return answer{}, t.errorf("reading the answer: %w", iv.scrub(err))
	}
	return a, nil
}

// Header values every call shares (read only): assigning them allocates nothing.
var (
	jsonValue   = []string{wire.ContentTypeJSON}
	ndjsonValue = []string{wire.ContentTypeNDJSON}
)

// scrub keeps the API key and the endpoint's address out of an error's
// text, whatever produced it, while errors.Is and errors.As still see the
// original: error texts travel to callers outside the app (an LB route's
// answer, a job's error), who must not learn internal URLs.
func (iv *Invoker) scrub(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbed{err: err, msg: iv.clean(addressless(err))}
}

// addressless describes a transport error without the URL and addresses
// net/http and net put in its text ("dial: connect: connection refused").
func addressless(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + addressless(op.Err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "lookup: " + dns.Err
	}
	return err.Error()
}

type scrubbed struct {
	err error
	msg string
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// cancelJob asks the endpoint to cancel a job this caller gave up on, so
// it does not run on for nobody. Best effort, briefly.
func (iv *Invoker) cancelJob(ctx context.Context, c *call, base, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	if _, err := iv.do(cctx, c, http.MethodPost, base+"/cancel/"+url.PathEscape(id), []byte("{}")); err != nil {
		iv.log.Debug("cancel abandoned job", "function", c.t.Function, "job", truncate(id, 64), "err", err)
	}
}

// statusError maps a non-2xx answer to the flasherr vocabulary.
func (iv *Invoker) statusError(t *Target, target string, code int, body []byte) error {
	var e wire.ErrorBody
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		msg = iv.clean(e.Error)
	}
	if t.LB && (code == http.StatusInternalServerError && e.ErrorType != "" || codedAnswer(body)) {
		return &flasherr.RemoteError{Function: t.Function, Resource: t.Resource, Type: e.ErrorType, Message: msg, Code: knownCode(e.Code)}
	}
	if msg == "" {
		msg = iv.clean(strings.TrimSpace(truncate(string(body), maxReasonLen)))
	}
	if msg == "" {
		msg = http.StatusText(code)
	}
	var kind error
	switch code {
	case http.StatusNotFound:
		kind = flasherr.ErrFunctionNotFound
	case http.StatusLoopDetected:
		kind = flasherr.ErrLoopDetected
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		kind = flasherr.ErrOverloaded
	}
	return t.errorf("%w", &flasherr.StatusError{URL: redactURL(target), Code: code, Message: msg, Kind: kind})
}

// keyFor is the key a request to target carries: the Runpod key for
// Runpod's URLs when one is set, the app's key otherwise.
func (iv *Invoker) keyFor(target string) string {
	if iv.rpKey != "" && runpodURL(target, iv.rpBase) {
		return iv.rpKey
	}
	return iv.key
}

// runpodURL reports whether target is on Runpod's client API: host
// api.runpod.ai or one of its subdomains, or under base.
func runpodURL(target, base string) bool {
	if base != "" && strings.HasPrefix(target, base) && (len(target) == len(base) || target[len(base)] == '/') {
		return true
	}
	rest, ok := strings.CutPrefix(target, "https://")
	if !ok {
		return false
	}
	host, _, _ := strings.Cut(rest, "/")
	host, _, _ = strings.Cut(host, ":")
	host = strings.ToLower(host)
	return host == "api.runpod.ai" || strings.HasSuffix(host, ".api.runpod.ai")
}

// clean keeps the API keys out of a text an endpoint sent back (an endpoint
// that echoes headers must not put a key into our errors and logs).
func (iv *Invoker) clean(s string) string {
	for _, k := range [...]string{iv.key, iv.rpKey} {
		if k != "" && strings.Contains(s, k) {
			s = strings.ReplaceAll(s, k, "***")
		}
	}
	return s
}

// cleanRemote is clean for a function error's message.
func (iv *Invoker) cleanRemote(err error) error {
	if re, ok := err.(*flasherr.RemoteError); ok {
		re.Message = iv.clean(re.Message)
	}
	return err
}

// ctxError is the error of a call whose ctx ended: ErrTimeout for a passed
// deadline, the cancellation itself otherwise.
func (t *Target) ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return t.errorf("%w: %w", flasherr.ErrTimeout, err)
	}
	return t.errorf("%w", err)
}

func (t *Target) errorf(format string, args ...any) error {
	return fmt.Errorf("call %s on %s: "+format, append([]any{t.Function, t.Resource}, args...)...)
}

// encodeJSON writes v as JSON without HTML escaping and without the
// encoder's trailing newline.
func encodeJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1)
	return nil
}

// redactURL hides a password in a URL's user info, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
