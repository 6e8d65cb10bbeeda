package serve

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// answerMeta is what an LB function asked of its answer: a status and
// headers. A function may set them from any goroutine.
type answerMeta struct {
	mu     sync.Mutex
	status int         // 0: the default (200)
	header http.Header // added to the answer, success or error
}

type answerMetaKey struct{}

// reservedHeaders are the headers a function may not set: the server
// writes them itself, and a wrong one would break the answer's framing.
var reservedHeaders = map[string]bool{
	"Content-Length": true, "Content-Type": true, "Transfer-Encoding": true, "Connection": true,
	"Trailer": true, "Upgrade": true, "Keep-Alive": true,
}

// SetStatus sets the status of the answer of the LB call running in ctx:
// 200–399 (an error's status comes from its code). It fails outside an LB
// call and for another status.
func SetStatus(ctx context.Context, code int) error {
	m, _ := ctx.Value(answerMetaKey{}).(*answerMeta)
	switch {
	case m == nil:
		return fmt.Errorf("set status %d: not in a load-balanced route's call", code)
	case code < 200 || code > 399:
		return fmt.Errorf("set status %d: want 200-399; an error's status comes from its code (flash.Errorf)", code)
	}
	m.mu.Lock()
	m.status = code
	m.mu.Unlock()
	return nil
}

// SetHeader adds a header to the answer of the LB call running in ctx. It
// fails outside an LB call and for the headers the server writes itself
// (Content-Type, Content-Length, …).
func SetHeader(ctx context.Context, key, value string) error {
	m, _ := ctx.Value(answerMetaKey{}).(*answerMeta)
	key = http.CanonicalHeaderKey(key)
	switch {
	case m == nil:
		return fmt.Errorf("set header %s: not in a load-balanced route's call", key)
	case reservedHeaders[key]:
		return fmt.Errorf("set header %s: the server writes it", key)
	case !validHeader(key, value):
		return fmt.Errorf("set header %q: not a valid header field", key)
	}
	m.mu.Lock()
	if m.header == nil {
		m.header = http.Header{}
	}
	m.header.Add(key, value)
	m.mu.Unlock()
	return nil
}

// validHeader checks a field name (a token) and value (no control bytes
// but tab), so that a function cannot split the answer's header.
func validHeader(key, value string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '(' || c == ')' || c == '"' || c == ',' || c == ';' || c == '/' || c == '\\' {
			return false
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// apply writes m's headers into h and returns the status to answer
// (def when the function set none).
func (m *answerMeta) apply(h http.Header, def int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, vs := range m.header {
		h[k] = append(h[k], vs...)
	}
	if m.status != 0 {
		return m.status
	}
	return def
}
