package srcdiff

import (
	"strings"
	"testing"
)

const base = `package main

import (
	"os"

	"github.com/flash-go/flash"
)

// greeting is what greet answers.
const greeting = "Hello, "

func newApp() *flash.App {
	app := flash.NewApp("demo")
	worker := app.Queue("worker", flash.ResourceConfig{})
	web := app.LoadBalanced("web", flash.ResourceConfig{WorkersMin: 2, Env: map[string]string{"MODE": "a"}})
	_, _ = worker, web
	return app
}

func greet(name string) string { return greeting + name + os.Getenv("SUFFIX") }
`

// edit replaces old with new in base, failing when old is not there.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base does not contain %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestConfigOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		want     bool
	}{
		{"env of one resource", `"MODE": "a"`, `"MODE": "b", "X": "1"`, true},
		{"workersMin", `flash.ResourceConfig{}`, `flash.ResourceConfig{WorkersMin: 3, WorkersMax: 1 + 2}`, true},
		{"config over several lines", `flash.ResourceConfig{}`, "flash.ResourceConfig{\n\t\tEnv: map[string]string{\n\t\t\t\"A\": \"b\",\n\t\t},\n\t}", true},
		{"layout only", "\treturn app\n", "\n\treturn app\n\n", true},
		{"function body", `greeting + name`, `name + greeting`, false},
		{"constant the code reads", `"Hello, "`, `"Howdy, "`, false},
		{"comment", `// greeting is what`, `// greeting, what`, false},
		{"resource name", `"worker"`, `"worker2"`, false},
		{"config that calls", `flash.ResourceConfig{}`, `flash.ResourceConfig{Env: map[string]string{"A": os.Getenv("A")}}`, false},
		{"config with a function", `flash.ResourceConfig{}`, `flash.ResourceConfig{Extra: map[string]any{"f": func() {}}}`, false},
		{"config kept in a variable", `app.Queue("worker", flash.ResourceConfig{})`, `cfg := flash.ResourceConfig{}; app.Queue("worker", cfg)`, false},
		{"another method", `app.Queue("worker", flash.ResourceConfig{})`, `app.Other("worker", flash.ResourceConfig{WorkersMin: 1})`, false},
		{"syntax error", `flash.ResourceConfig{}`, `flash.ResourceConfig{`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			changed := edit(t, tc.old, tc.new)
			if got := ConfigOnly([]byte(base), []byte(changed)); got != want {
				t.Errorf("ConfigOnly = %v, want %v", got, want)
			}
			if got := ConfigOnly([]byte(changed), []byte(base)); got != want {
				t.Errorf("reversed: ConfigOnly = %v, want %v", got, want)
			}
		})
	}
}

// The literal is a config literal only under the name flash is imported as.
func TestConfigOnlyImportName(t *testing.T) {
	renamed := strings.Replace(base, `"github.com/flash-go/flash"`, `fl "github.com/flash-go/flash"`, 1)
	renamed = strings.ReplaceAll(renamed, "flash.", "fl.")
	a := strings.Replace(renamed, `"MODE": "a"`, `"MODE": "b"`, 1)
	if !ConfigOnly([]byte(renamed), []byte(a)) {
		t.Error("a renamed import's config literal is not recognised")
	}
	other := strings.Replace(base, `"github.com/flash-go/flash"`, `"example.com/flash"`, 1)
	b := strings.Replace(other, `"MODE": "a"`, `"MODE": "b"`, 1)
	if ConfigOnly([]byte(other), []byte(b)) {
		t.Error("another package's ResourceConfig counts as flash's")
	}
	dot := strings.Replace(base, `"github.com/flash-go/flash"`, `. "github.com/flash-go/flash"`, 1)
	dot = strings.ReplaceAll(dot, "flash.", "")
	c := strings.Replace(dot, `"MODE": "a"`, `"MODE": "b"`, 1)
	if !ConfigOnly([]byte(dot), []byte(c)) {
		t.Error("a dot-imported config literal is not recognised")
	}
}

func FuzzConfigOnly(f *testing.F) {
	f.Add([]byte(base), []byte(strings.Replace(base, `"a"`, `"b"`, 1)))
	f.Add([]byte(base), []byte(strings.Replace(base, "Hello", "Howdy", 1)))
	f.Add([]byte("package p"), []byte("package p;"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if ConfigOnly(a, b) != ConfigOnly(b, a) {
			t.Fatalf("not symmetric:\n%q\n%q", a, b)
		}
		if _, ok := tokens(a); ok && !ConfigOnly(a, append([]byte(nil), a...)) {
			t.Fatalf("a parsable file differs from itself: %q", a)
		}
	})
}
