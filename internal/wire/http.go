package wire

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names used between flash endpoints.
const (
	HeaderRequestID       = "X-Request-Id"
	HeaderTraceParent     = "Traceparent"
	HeaderTimeout         = "X-Flash-Timeout"
	HeaderHops            = "X-Flash-Hops"
	HeaderResource        = "X-Flash-Resource"
	HeaderInstance        = "X-Flash-Instance"
	HeaderAppliedVersion  = "X-Flash-Applied-Version"
	HeaderRejectedVersion = "X-Flash-Rejected-Version"
	HeaderRejectedReason  = "X-Flash-Rejected-Reason" // why, next to HeaderRejectedVersion
	HeaderManifestVersion = "X-Flash-Manifest-Version"
	HeaderAuthorization   = "Authorization"
	HeaderWWWAuthenticate = "WWW-Authenticate"
	HeaderRetryAfter      = "Retry-After"
	HeaderIdempotencyKey  = "Idempotency-Key"
	HeaderReplayed        = "Idempotent-Replayed"
	ContentTypeJSON       = "application/json"
	headerContentType     = "Content-Type"
	headerContentLength   = "Content-Length"
)

// HeaderGet is h.Get(key) for a key in canonical form (every Header
// constant above but HeaderWWWAuthenticate): one map lookup, without
// canonicalising the key first. A server's request headers are canonical.
func HeaderGet(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// MaxHops is the highest X-Flash-Hops a receiver accepts; above it the call
// is answered 508 as a routing loop.
const MaxHops = 16

// WriteJSON writes v as a JSON answer with the given status. v is encoded
// before anything is written, so an encoding failure still yields a
// well-formed 500 answer instead of a truncated body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(map[string]string{"error": "encoding response: " + err.Error()})
	}
	WriteRawJSON(w, status, body)
}

// WriteRawJSON writes body, which must already be JSON, with the given status.
func WriteRawJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	// Keys are canonical already; assigning skips Set's canonicalisation.
	h[headerContentType] = []string{ContentTypeJSON}
	h[headerContentLength] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// WriteError writes {"error": msg} with the given status. kv adds more keys
// to the body as alternating key/value pairs, as in log/slog
// (WriteError(w, 404, "no such function", "available", names)); a non-string
// key is written as "!BADKEY" and a missing last value as null.
func WriteError(w http.ResponseWriter, status int, msg string, kv ...any) {
	body := make(map[string]any, 1+len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = "!BADKEY"
		}
		var val any
		if i+1 < len(kv) {
			val = kv[i+1]
		}
		body[key] = val
	}
	body["error"] = msg
	WriteJSON(w, status, body)
}

// Key is an API key ready to check requests against: its digest is taken
// once, not at every request.
type Key struct {
	sum [32]byte
	set bool
}

// NewKey prepares key; the empty key allows every request.
func NewKey(key string) Key { return Key{sum: sha256.Sum256([]byte(key)), set: key != ""} }

// Allows reports whether r carries "Authorization: Bearer <key>" (always,
// for the empty key). Digests are compared in constant time, so neither the
// key nor its length leaks through timing.
func (k Key) Allows(r *http.Request) bool {
	if !k.set {
		return true
	}
	got, ok := bearerToken(HeaderGet(r.Header, HeaderAuthorization))
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1
}

func bearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// AuthExempt reports whether r may skip the bearer-key check: only the
// health probe GET (or HEAD) /ping, which load balancers call without keys.
func AuthExempt(r *http.Request) bool {
	return r.URL.Path == "/ping" && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// Auth wraps next so that, when key is not empty, every request except
// GET /ping must carry the bearer key; others get 401 with a JSON body and
// WWW-Authenticate.
func Auth(key string, next http.Handler) http.Handler {
	if key == "" {
		return next
	}
	k := NewKey(key)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if AuthExempt(r) || k.Allows(r) {
			next.ServeHTTP(w, r)
			return
		}
		Unauthorized(w)
	})
}

// Unauthorized writes the 401 answer Auth gives.
func Unauthorized(w http.ResponseWriter) {
	w.Header().Set(HeaderWWWAuthenticate, `Bearer realm="flash"`)
	WriteError(w, http.StatusUnauthorized, "missing or wrong API key (Authorization: Bearer <key>)")
}

// ParseHops parses an X-Flash-Hops value: a decimal integer ≥ 0; empty means 0.
func ParseHops(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := parseDigits(s, 6)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: want an integer >= 0", HeaderHops, s)
	}
	return int(n), nil
}

// ParseTimeout parses an X-Flash-Timeout value (milliseconds remaining of
// the caller's deadline). ok is false when s is empty (no deadline).
func ParseTimeout(s string) (d time.Duration, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	n, err := parseDigits(s, 12)
	if err != nil {
		return 0, false, fmt.Errorf("invalid %s %q: want milliseconds as an integer >= 0", HeaderTimeout, s)
	}
	return time.Duration(n) * time.Millisecond, true, nil
}

// FormatTimeout renders a remaining duration as an X-Flash-Timeout value,
// rounding up so that a caller with time left never sends 0.
func FormatTimeout(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(ms), 10)
}

// parseDigits accepts only ASCII digits (no sign, no spaces) and at most max of them.
func parseDigits(s string, max int) (int64, error) {
	if len(s) == 0 || len(s) > max {
		return 0, strconv.ErrRange
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// SetCallHeaders sets on h the headers of an endpoint-to-endpoint call made
// while serving ctx (SPEC §5.3): the bearer key (when not empty), a child
// traceparent of the incoming one (or a new trace), the incoming request id
// (or a new one), X-Flash-Timeout from ctx's deadline, and X-Flash-Hops one
// above the incoming count.
func SetCallHeaders(ctx context.Context, h http.Header, apiKey string) {
	m, _ := MetaFrom(ctx)
	SetMetaHeaders(ctx, h, apiKey, m)
}

// SetMetaHeaders is SetCallHeaders with the call's metadata given: a caller
// that sends one call several times (retries) fixes m.RequestID once, so
// that every attempt carries the same X-Request-Id. An empty m.RequestID
// gets a new id.
func SetMetaHeaders(ctx context.Context, h http.Header, apiKey string, m Meta) {
	if m.RequestID == "" {
		m.RequestID = NewRequestID()
	}
	// One array holds every value (the keys are canonical: no Set needed).
	vals := make([]string, 0, 5)
	set := func(key, v string) {
		vals = append(vals, v)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if apiKey != "" {
		set(HeaderAuthorization, "Bearer "+apiKey)
	}
	set(HeaderRequestID, m.RequestID)
	set(HeaderTraceParent, ChildTraceParent(m.TraceParent))
	set(HeaderHops, strconv.Itoa(m.Hops+1))
	if dl, ok := ctx.Deadline(); ok {
		set(HeaderTimeout, FormatTimeout(time.Until(dl)))
	}
}

// maxRetryAfter bounds a parsed Retry-After; longer waits are not worth
// representing (callers compare them with their own, shorter, budgets).
const maxRetryAfter = 24 * time.Hour

// ParseRetryAfter parses a Retry-After value: delay seconds ("120") or an
// HTTP date, counted from now. ok is false when s is empty or malformed; a
// date in the past is a zero wait.
func ParseRetryAfter(s string, now time.Time) (d time.Duration, ok bool) {
	if s == "" {
		return 0, false
	}
	if n, err := parseDigits(s, 9); err == nil {
		return min(time.Duration(n)*time.Second, maxRetryAfter), true
	}
	if len(s) > 64 {
		return 0, false
	}
	t, err := http.ParseTime(s)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}

// MaxJobIDLen bounds the job ids accepted in paths (/status/{id},
// /cancel/{id}); flash's own are 22 characters, Runpod's about 40.
const MaxJobIDLen = 128

// ValidJobID reports whether s can be a job id: 1 to MaxJobIDLen characters
// from [A-Za-z0-9._-]. Anything else is answered as an unknown job without
// a lookup, and never echoed back.
func ValidJobID(s string) bool {
	if len(s) == 0 || len(s) > MaxJobIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// ProxyFullDuplex readies w for a reverse proxy that sends r's body on to
// another server, and returns the function to call (defer) when the handler
// ends.
//
// The transport may still read that body (once more past its
// Content-Length, to check for extra bytes) when the other server's answer
// starts; net/http's HTTP/1 server closes an unread body when a handler
// writes its answer's headers, so that read fails and the transport drops
// the connection mid-answer (golang/go#40747): a streamed answer cut short
// with "use of closed network connection". Full duplex leaves the body open
// until the handler returns. But then two reads could race the server's
// read of the connection's next request ("invalid concurrent Body.Read
// call", a panic that drops the connection): one the transport still has in
// progress, and the background read the server starts when the body reaches
// its end, which, in full duplex, its own close of an unread body does after
// it stopped such reads. So the returned function ends a read in progress,
// refuses later ones, and reads the body to its end while the handler still
// runs (at most maxDrain bytes, for at most drainWait).
func ProxyFullDuplex(w http.ResponseWriter, r *http.Request) (done func()) {
	if r.ContentLength == 0 {
		return func() {}
	}
	rc := http.NewResponseController(w)
	if rc.EnableFullDuplex() != nil {
		return func() {} // HTTP/2 is full duplex already
	}
	g := &guardedBody{body: r.Body}
	r.Body = g
	return func() {
		if !g.mu.TryLock() {
			// A read waits for the client: end it (the connection then
			// closes, as its request was not read whole).
			_ = rc.SetReadDeadline(time.Now())
			g.mu.Lock()
		}
		g.done = true
		_ = rc.SetReadDeadline(time.Now().Add(drainWait))
		_, _ = io.Copy(io.Discard, io.LimitReader(g.body, maxDrain))
		_ = rc.SetReadDeadline(time.Time{})
		g.mu.Unlock()
	}
}

// The bounds of ProxyFullDuplex's last read of a body: past them the server
// closes the connection rather than read on.
const (
	maxDrain  = 256 << 10
	drainWait = time.Second
)

// guardedBody is a request body that refuses reads once its handler ended.
type guardedBody struct {
	mu   sync.Mutex
	body io.ReadCloser
	done bool
}

// errHandlerDone is what a read of a proxied body gets after its handler returned.
var errHandlerDone = errors.New("wire: the request's handler has returned")

func (g *guardedBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, errHandlerDone
	}
	return g.body.Read(p)
}

func (g *guardedBody) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return nil // the server closes it itself
	}
	return g.body.Close()
}
