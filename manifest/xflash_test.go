package manifest

import (
	"errors"
	"strings"
	"testing"
)

func TestExtensions(t *testing.T) {
	const head = `{"version":"1.0","function_registry":{"f":"r","g":"r"},"resources":{"r":{"resource_type":"LiveServerless",`
	for _, tc := range []struct {
		name, entry string
		f, g        string // want ExampleInput of f and g
		problem     string // want an invalid manifest naming this location
	}{
		{name: "x_flash", entry: `"x_flash":{"example_inputs":{"f":{"a":1}}},"functions":[{"name":"f","module":"m","is_async":false,"is_class":false},{"name":"g","module":"m","is_async":false,"is_class":false}]`,
			f: `{"a":1}`},
		{name: "legacy function key", entry: `"functions":[{"name":"f","module":"m","is_async":false,"is_class":false,"example_input":[2]},{"name":"g","module":"m","is_async":false,"is_class":false}]`,
			f: `[2]`},
		{name: "x_flash wins", entry: `"x_flash":{"example_inputs":{"g":"new"}},"functions":[{"name":"f","module":"m","is_async":false,"is_class":false},{"name":"g","module":"m","is_async":false,"is_class":false,"example_input":"old"}]`,
			g: `"new"`},
		{name: "x_flash with other keys", entry: `"x_flash":{"later":true,"example_inputs":null},"functions":[{"name":"f","module":"m","is_async":false,"is_class":false},{"name":"g","module":"m","is_async":false,"is_class":false}]`},
		{name: "x_flash not an object", entry: `"x_flash":[1],"functions":[]`, problem: "resources.r.x_flash"},
		{name: "example_inputs not an object", entry: `"x_flash":{"example_inputs":"f"},"functions":[]`, problem: "resources.r.x_flash.example_inputs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(head + tc.entry + `}}}`))
			if tc.problem != "" {
				var inv *InvalidError
				if !errors.As(err, &inv) || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("Parse = %v, want a problem at %s", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := m.Resources["r"]
			for name, want := range map[string]string{"f": tc.f, "g": tc.g} {
				f, _ := r.Function(name)
				if string(f.ExampleInput) != want {
					t.Errorf("%s.ExampleInput = %s, want %s", name, f.ExampleInput, want)
				}
			}
			if !strings.Contains(string(m.Pretty()), `"x_flash"`) && strings.Contains(tc.entry, "x_flash") {
				t.Error("x_flash is not preserved")
			}
		})
	}
}
