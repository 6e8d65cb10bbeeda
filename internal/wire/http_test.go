package wire

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 404, "no such function", "available", []string{"a", "b"}, 7, "x", "dangling")
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["error"] != "no such function" || len(m["available"].([]any)) != 2 || m["!BADKEY"] != "x" || m["dangling"] != nil {
		t.Fatalf("body %v", m)
	}
	if _, ok := m["dangling"]; !ok {
		t.Fatal("dangling key dropped")
	}
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(rec.Body.Len()) {
		t.Fatalf("Content-Length %s for %d bytes", got, rec.Body.Len())
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, 200, map[string]any{"f": func() {}})
	if rec.Code != 500 || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestAuth(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	tests := []struct {
		key, method, path, auth string
		code                    int
	}{
		{"", "POST", "/run", "", 204},
		{"k", "POST", "/run", "", 401},
		{"k", "POST", "/run", "Bearer k", 204},
		{"k", "POST", "/run", "BEARER  k ", 204},
		{"k", "POST", "/run", "Bearer kk", 401},
		{"k", "POST", "/run", "Bearer", 401},
		{"k", "POST", "/run", "Token k", 401},
		{"k", "GET", "/ping", "", 204},
		{"k", "HEAD", "/ping", "", 204},
		{"k", "POST", "/ping", "", 401},
		{"k", "GET", "/ping/x", "", 401},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		Auth(tt.key, ok).ServeHTTP(rec, req)
		if rec.Code != tt.code {
			t.Errorf("key %q %s %s auth %q: %d, want %d", tt.key, tt.method, tt.path, tt.auth, rec.Code, tt.code)
		}
		if rec.Code == 401 && (rec.Header().Get("WWW-Authenticate") == "" || !json.Valid(rec.Body.Bytes())) {
			t.Errorf("401 answer %v %s", rec.Header(), rec.Body)
		}
	}
}

func TestParseHopsAndTimeout(t *testing.T) {
	for s, want := range map[string]int{"": 0, "0": 0, "7": 7, "016": 16} {
		if got, err := ParseHops(s); err != nil || got != want {
			t.Errorf("ParseHops(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"-1", "+1", "1e3", " 1", "x", "1234567"} {
		if _, err := ParseHops(s); err == nil {
			t.Errorf("ParseHops(%q) accepted", s)
		}
	}
	if d, ok, err := ParseTimeout("1500"); err != nil || !ok || d != 1500*time.Millisecond {
		t.Errorf("ParseTimeout(1500) = %v %v %v", d, ok, err)
	}
	if _, ok, err := ParseTimeout(""); ok || err != nil {
		t.Error("empty timeout should mean none")
	}
	for _, s := range []string{"1.5", "-5", "1000000000000000"} {
		if _, _, err := ParseTimeout(s); err == nil {
			t.Errorf("ParseTimeout(%q) accepted", s)
		}
	}
	for d, want := range map[time.Duration]string{0: "0", -time.Second: "0", time.Microsecond: "1", 1500 * time.Millisecond: "1500"} {
		if got := FormatTimeout(d); got != want {
			t.Errorf("FormatTimeout(%v) = %s, want %s", d, got, want)
		}
	}
}

// SetCallHeaders and the receiving parsers agree.
func TestSetCallHeaders(t *testing.T) {
	parent := NewTraceParent()
	ctx := WithMeta(context.Background(), Meta{RequestID: "r-1", TraceParent: parent, Hops: 3})
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h := http.Header{}
	SetCallHeaders(ctx, h, "key")
	if h.Get(HeaderAuthorization) != "Bearer key" || h.Get(HeaderRequestID) != "r-1" {
		t.Fatalf("headers %v", h)
	}
	if hops, err := ParseHops(h.Get(HeaderHops)); err != nil || hops != 4 {
		t.Fatalf("hops %q", h.Get(HeaderHops))
	}
	if d, ok, err := ParseTimeout(h.Get(HeaderTimeout)); err != nil || !ok || d <= 59*time.Second || d > time.Minute {
		t.Fatalf("timeout %q", h.Get(HeaderTimeout))
	}
	pt, _ := ParseTraceParent(parent)
	if ct, ok := ParseTraceParent(h.Get("traceparent")); !ok || ct != pt || h.Get("traceparent") == parent {
		t.Fatalf("traceparent %q from %q", h.Get("traceparent"), parent)
	}
	req := httptest.NewRequest("POST", "/", nil)
	req.Header = h
	if !NewKey("key").Allows(req) {
		t.Fatal("Key.Allows rejects what SetCallHeaders sends")
	}

	h = http.Header{}
	SetCallHeaders(context.Background(), h, "")
	if h.Get(HeaderAuthorization) != "" || h.Get(HeaderTimeout) != "" || h.Get(HeaderHops) != "1" || len(h.Get(HeaderRequestID)) != 32 {
		t.Fatalf("headers without meta %v", h)
	}
}

func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{"", "0", "16", "17", "-1", "1.5", "999999999999", "0001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseHops(s); err == nil {
			if n < 0 || (s != "" && strconv.Itoa(n) != strings.TrimLeft(s, "0") && n != 0) {
				t.Fatalf("ParseHops(%q) = %d", s, n)
			}
		}
		d, ok, err := ParseTimeout(s)
		if err != nil || !ok {
			return
		}
		if d < 0 {
			t.Fatalf("ParseTimeout(%q) = %v", s, d)
		}
		if back, _, _ := ParseTimeout(FormatTimeout(d)); back != d {
			t.Fatalf("round trip %q: %v -> %s -> %v", s, d, FormatTimeout(d), back)
		}
	})
}

func TestSetMetaHeadersFixedID(t *testing.T) {
	m := Meta{RequestID: "call-1", TraceParent: NewTraceParent(), Hops: 2}
	trace, _ := ParseTraceParent(m.TraceParent)
	for range 3 { // one call sent three times: same id and trace, one span each
		h := http.Header{}
		SetMetaHeaders(context.Background(), h, "", m)
		if h.Get(HeaderRequestID) != "call-1" || h.Get(HeaderHops) != "3" || h.Get(HeaderAuthorization) != "" {
			t.Fatalf("headers %v", h)
		}
		if got, ok := ParseTraceParent(h.Get(HeaderTraceParent)); !ok || got != trace {
			t.Fatalf("traceparent %q, want trace %s", h.Get(HeaderTraceParent), trace)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"2", 2 * time.Second, true},
		{"999999999", 24 * time.Hour, true},
		{"1234567890", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"tomorrow", 0, false},
		{strings.Repeat("9", 100), 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestValidJobID(t *testing.T) {
	for _, ok := range []string{"a", "AAAAAAAAAAAAAAAAAAAAAA", "b0d4d1a8-7c21-4f1e-9a3b-1d2c3e4f5a6b-u1", "x.y_z", strings.Repeat("a", MaxJobIDLen)} {
		if !ValidJobID(ok) {
			t.Errorf("ValidJobID(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", strings.Repeat("a", MaxJobIDLen+1), "a/b", "a b", "a%2F", "ü", "a\x00"} {
		if ValidJobID(bad) {
			t.Errorf("ValidJobID(%q) = true", bad)
		}
	}
}

// FuzzJobIDAndRetryAfter: neither parser panics, a valid job id is short
// and plain, and a Retry-After wait is never negative nor above a day.
func FuzzJobIDAndRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "AAAAAAAAAAAAAAAAAAAAAA", "Wed, 21 Oct 2015 07:28:00 GMT", "-5", "a/../b", strings.Repeat("z", 200)} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		if ValidJobID(s) {
			if len(s) > MaxJobIDLen || strings.ContainsAny(s, "/?#% \"\\") {
				t.Fatalf("accepted job id %q", s)
			}
		}
		if d, ok := ParseRetryAfter(s, now); d < 0 || d > maxRetryAfter || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}

// TestHeaderGetKeysAreCanonical: HeaderGet skips canonicalisation, so the
// keys it is given must be canonical already.
func TestHeaderGetKeysAreCanonical(t *testing.T) {
	for _, k := range []string{HeaderRequestID, HeaderTraceParent, HeaderTimeout, HeaderHops, HeaderResource,
		HeaderInstance, HeaderAppliedVersion, HeaderRejectedVersion, HeaderRejectedReason, HeaderManifestVersion,
		HeaderAuthorization, HeaderRetryAfter, HeaderIdempotencyKey, HeaderReplayed} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
		h := http.Header{}
		h.Set(strings.ToLower(k), "v")
		if got := HeaderGet(h, k); got != "v" {
			t.Errorf("HeaderGet(%q) = %q after Set of its lower-case form", k, got)
		}
	}
}
