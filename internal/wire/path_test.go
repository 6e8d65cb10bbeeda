package wire

import (
	"slices"
	"strings"
	"testing"
)

func TestFillPathJSON(t *testing.T) {
	tests := []struct{ path, in, want string }{
		{"/a", `{}`, "/a"},
		{"/w/{window}", `{"window":"x y"}`, "/w/x%20y"},
		{"/w/{Window}", `{"window":"k"}`, "/w/k"},
		{"/n/{n}/{b}", `{"n":1.5,"b":true}`, "/n/1.5/true"},
		{"/f/{rest...}", `{"rest":"a b/c"}`, "/f/a%20b/c"},
		{"/e/{$}", `{}`, "/e/"},
	}
	for _, tt := range tests {
		got, err := FillPathJSON(tt.path, []byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("FillPathJSON(%q, %s) = %q, %v; want %q", tt.path, tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []struct{ path, in string }{
		{"/w/{x}", `[1]`}, {"/w/{x}", `{"x":null}`}, {"/w/{x}", `{"x":{"a":1}}`}, {"/w/{x", `{"x":1}`},
	} {
		if _, err := FillPathJSON(bad.path, []byte(bad.in)); err == nil {
			t.Errorf("FillPathJSON(%q, %s): no error", bad.path, bad.in)
		}
	}
}

func TestPathParams(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"/a", nil},
		{"/items/{id}", []string{"id"}},
		{"/w/{window}/items/{n}", []string{"window", "n"}},
		{"/f/{rest...}", []string{"rest"}},
		{"/e/{$}", nil},
		{"/bad/{x", nil},
	}
	for _, tt := range tests {
		if got := PathParams(tt.path); !slices.Equal(got, tt.want) {
			t.Errorf("PathParams(%q) = %q; want %q", tt.path, got, tt.want)
		}
	}
}

// FuzzFillPath: filling never panics, never grows beyond escaping, and
// leaves no wildcard behind.
func FuzzFillPath(f *testing.F) {
	f.Add("/w/{window}", []byte(`{"window":"a/b"}`))
	f.Add("/f/{rest...}", []byte(`{"rest":1}`))
	f.Add("/{$}", []byte(`[]`))
	f.Add("/{", []byte(`{"":null}`))
	f.Fuzz(func(t *testing.T, path string, arg []byte) {
		p, err := FillPathJSON(path, arg)
		if err != nil {
			return
		}
		if len(p) > 3*len(path)+3*len(arg)+16 {
			t.Fatalf("path grew to %d bytes", len(p))
		}
		for _, name := range PathParams(path) {
			if strings.Contains(p, "{"+name+"}") && !strings.Contains(string(arg), "{"+name+"}") {
				t.Fatalf("%q left {%s} in %q", path, name, p)
			}
		}
	})
}
