package wire

import (
	"context"
	"strings"
	"testing"
)

func TestWithMetaFrom(t *testing.T) {
	if _, ok := MetaFrom(context.Background()); ok {
		t.Fatal("From on empty context reported ok")
	}
	m := Meta{RequestID: "r1", TraceParent: NewTraceParent(), Hops: 3}
	got, ok := MetaFrom(WithMeta(context.Background(), m))
	if !ok || got != m {
		t.Fatalf("From = %+v, %v; want %+v", got, ok, m)
	}
}

func TestParseTraceParent(t *testing.T) {
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		in   string
		ok   bool
		want string
	}{
		{"00-" + trace + "-00f067aa0ba902b7-01", true, trace},
		{"00-" + trace + "-00f067aa0ba902b7-00", true, trace},
		{"01-" + trace + "-00f067aa0ba902b7-01-extra", true, trace},
		{"01-" + trace + "-00f067aa0ba902b7-01", true, trace},
		{"00-" + trace + "-00f067aa0ba902b7-01-extra", false, ""},
		{"01-" + trace + "-00f067aa0ba902b7-01x", false, ""},
		{"ff-" + trace + "-00f067aa0ba902b7-01", false, ""},
		{"00-" + strings.ToUpper(trace) + "-00f067aa0ba902b7-01", false, ""},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, ""},
		{"00-" + trace + "-0000000000000000-01", false, ""},
		{"00-" + trace + "_00f067aa0ba902b7-01", false, ""},
		{"00-" + trace + "-00f067aa0ba902b7-0g", false, ""},
		{"", false, ""},
		{"garbage", false, ""},
	}
	for _, tt := range tests {
		got, ok := ParseTraceParent(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseTraceParent(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNewAndChild(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tp := NewTraceParent()
		trace, ok := ParseTraceParent(tp)
		if !ok {
			t.Fatalf("NewTraceParent() = %q does not parse", tp)
		}
		if seen[trace] {
			t.Fatalf("trace id %s repeated", trace)
		}
		seen[trace] = true
		child := ChildTraceParent(tp)
		ct, ok := ParseTraceParent(child)
		if !ok || ct != trace {
			t.Fatalf("ChildTraceParent(%q) = %q: trace %q ok %v", tp, child, ct, ok)
		}
		if child[36:52] == tp[36:52] {
			t.Fatalf("child kept the parent span id: %q", child)
		}
		if child[53:] != tp[53:] {
			t.Fatalf("child changed flags: %q -> %q", tp, child)
		}
	}
	if _, ok := ParseTraceParent(ChildTraceParent("bogus")); !ok {
		t.Fatal("ChildTraceParent of an invalid parent should start a valid new trace")
	}
	if id := NewRequestID(); len(id) != 32 || id == NewRequestID() {
		t.Fatalf("NewRequestID() = %q", id)
	}
}

func FuzzParseTraceParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		trace, ok := ParseTraceParent(s)
		if !ok {
			return
		}
		if len(trace) != 32 || trace != s[3:35] {
			t.Fatalf("trace %q from %q", trace, s)
		}
		child := ChildTraceParent(s)
		if ct, ok := ParseTraceParent(child); !ok || ct != trace {
			t.Fatalf("child %q of %q", child, s)
		}
	})
}
