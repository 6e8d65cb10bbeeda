package wire

import (
	"context"
	"math/rand/v2"
)

// Meta is the metadata of one call as received by this endpoint (request
// id, W3C trace context, hop count). It travels in a context.Context from
// the server that received a call to the invoker that makes the next one.
type Meta struct {
	// RequestID is the X-Request-Id of the call (taken from the caller or generated).
	RequestID string
	// TraceParent is the W3C traceparent header of the call (taken or generated).
	TraceParent string
	// Hops is the X-Flash-Hops value received; an outgoing call sends Hops+1.
	Hops int
}

type ctxKey struct{}

// metaContext is a context carrying a Meta: one allocation, where
// context.WithValue takes two (the node and the boxed Meta).
type metaContext struct {
	context.Context
	meta Meta
}

// Value returns c itself for the Meta's key, and asks the parent otherwise.
func (c *metaContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// WithMeta returns a copy of ctx carrying m.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return &metaContext{ctx, m}
}

// MetaFrom returns the Meta carried by ctx, if any.
func MetaFrom(ctx context.Context) (Meta, bool) {
	if c, ok := ctx.Value(ctxKey{}).(*metaContext); ok {
		return c.meta, true
	}
	return Meta{}, false
}

// Ids need to be unique, not secret, so the runtime's fast ChaCha8-backed
// generator (seeded from the OS) is enough; job ids that guard access use
// crypto/rand instead.
func randomHex(dst []byte) {
	for i := 0; i < len(dst); i += 16 {
		v := rand.Uint64()
		for j := min(len(dst), i+16) - 1; j >= i; j-- {
			dst[j] = hexDigits[v&0xf]
			v >>= 4
		}
	}
}

const hexDigits = "0123456789abcdef"

// NewRequestID returns a fresh request id: 32 lower-case hex digits.
func NewRequestID() string {
	var b [32]byte
	randomHex(b[:])
	return string(b[:])
}

// NewRequestIDAndTraceParent returns NewRequestID() and NewTraceParent() in
// one allocation, for a request that brought neither.
func NewRequestIDAndTraceParent() (rid, traceParent string) {
	var b [32 + traceParentLen]byte
	randomHex(b[:32])
	putNewTraceParent(b[32:])
	s := string(b[:])
	return s[:32], s[32:]
}

// NewTraceParent returns a traceparent for a new trace: version 00, random
// trace id and span id, sampled flag set.
func NewTraceParent() string {
	var b [traceParentLen]byte
	putNewTraceParent(b[:])
	return string(b[:])
}

// traceParentLen is the length of a version-00 traceparent.
const traceParentLen = 55

// putNewTraceParent writes a new trace's traceparent into b[:55].
func putNewTraceParent(b []byte) {
	copy(b, "00-")
	randomNonZeroHex(b[3:35])
	b[35] = '-'
	randomNonZeroHex(b[36:52])
	copy(b[52:], "-01")
}

// randomNonZeroHex fills dst with random hex digits, never all zeros (which
// W3C reserves as invalid).
func randomNonZeroHex(dst []byte) {
	for {
		randomHex(dst)
		if !allZero(dst) {
			return
		}
	}
}

func allZero[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// TraceID returns the trace id of a valid traceparent (one made here, or
// that ParseTraceParent accepted) without checking it again.
func TraceID(traceParent string) string { return traceParent[3:35] }

// ParseTraceParent validates a W3C traceparent header value and returns its
// trace id. It accepts version 00 exactly and, as the recommendation asks,
// higher versions whose first four fields parse (anything after is ignored).
func ParseTraceParent(s string) (traceID string, ok bool) {
	if len(s) < 55 || (len(s) > 55 && s[0] == '0' && s[1] == '0') || (len(s) > 55 && s[55] != '-') {
		return "", false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return "", false
	}
	version, trace, span, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(trace) || !lowerHex(span) || !lowerHex(flags) {
		return "", false
	}
	if allZero(trace) || allZero(span) {
		return "", false
	}
	return trace, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ChildTraceParent returns the traceparent for an outgoing call made while
// serving parent: same trace id and flags, a new span id. An invalid or
// empty parent starts a new trace.
func ChildTraceParent(parent string) string {
	trace, ok := ParseTraceParent(parent)
	if !ok {
		return NewTraceParent()
	}
	var b [traceParentLen]byte
	copy(b[:], "00-")
	copy(b[3:35], trace)
	b[35] = '-'
	randomNonZeroHex(b[36:52])
	b[52] = '-'
	copy(b[53:55], parent[53:55])
	return string(b[:])
}
