package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flash-go/flash/manifest"
)

// devManifest is a two-resource manifest built from binary fp with env on api.
func devManifest(t *testing.T, fp, env string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte(`{"version":"1.0","project_name":"p","resources":{
		"api":{"resource_type":"LiveServerless","source_fingerprint":"` + fp + `","env":{"MODE":"` + env + `"},
			"functions":[{"name":"a","module":"m","is_async":false,"is_class":false}]},
		"db":{"resource_type":"LiveServerless","source_fingerprint":"` + fp + `",
			"functions":[{"name":"b","module":"m","is_async":false,"is_class":false}]}},
		"function_registry":{"a":"api","b":"db"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestKeepFingerprints(t *testing.T) {
	prev := devManifest(t, "sha256:old", "x")
	next := devManifest(t, "sha256:new", "y")
	got, kept, err := keepFingerprints(prev, next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kept, []string{"db"}) {
		t.Errorf("kept %v, want [db]", kept)
	}
	if fp := got.Resources["db"].SourceFingerprint; fp != "sha256:old" {
		t.Errorf("db's fingerprint %q, want the running build's", fp)
	}
	if fp := got.Resources["api"].SourceFingerprint; fp != "sha256:new" {
		t.Errorf("api's fingerprint %q, want the new build's", fp)
	}
	c := manifest.Diff(got, prev)
	if !slices.Equal(c.Changed, []string{"api"}) || !slices.Equal(c.Unchanged, []string{"db"}) {
		t.Errorf("diff against the running manifest: %+v", c)
	}

	// The same config everywhere: every resource keeps running.
	if _, kept, _ := keepFingerprints(prev, devManifest(t, "sha256:new", "x")); !slices.Equal(kept, []string{"api", "db"}) {
		t.Errorf("kept %v, want [api db]", kept)
	}
}

func TestSameCode(t *testing.T) {
	const code = `package main

import "github.com/flash-go/flash"

func main() {
	app := flash.NewApp("p")
	app.Queue("api", flash.ResourceConfig{Env: map[string]string{"MODE": "x"}})
	app.Main()
}
`
	src := func(files map[string]string, mods ...string) *sources {
		s := &sources{content: map[string][]byte{}, inputs: buildInputs{mods: mods}}
		for name, body := range files {
			s.inputs.files = append(s.inputs.files, name)
			s.content[name] = []byte(body)
		}
		slices.Sort(s.inputs.files)
		return s
	}
	base := src(map[string]string{"/a/main.go": code, "/a/go.mod": "module p\n"}, "m@v1")
	config := src(map[string]string{"/a/main.go": strings.Replace(code, `"x"`, `"y"`, 1), "/a/go.mod": "module p\n"}, "m@v1")
	if !sameCode(base, config) {
		t.Error("a config change is a code change")
	}
	for name, other := range map[string]*sources{
		"code":         src(map[string]string{"/a/main.go": strings.Replace(code, `"p"`, `"q"`, 1), "/a/go.mod": "module p\n"}, "m@v1"),
		"go.mod":       src(map[string]string{"/a/main.go": code, "/a/go.mod": "module p\ngo 1.26\n"}, "m@v1"),
		"a module":     src(map[string]string{"/a/main.go": code, "/a/go.mod": "module p\n"}, "m@v2"),
		"a new file":   src(map[string]string{"/a/main.go": code, "/a/go.mod": "module p\n", "/a/b.go": "package main\n"}, "m@v1"),
		"unknown":      nil,
		"not readable": {inputs: base.inputs, content: map[string][]byte{"/a/go.mod": []byte("module p\n")}},
	} {
		if sameCode(base, other) || sameCode(other, base) {
			t.Errorf("%s: counted as the same code", name)
		}
	}
}

// listInputs names the app's own files and go.mod/go.sum, the files of a
// module replaced by a local directory (flash, here), and every other module
// by version; the standard library not at all.
func TestListInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	app := newHelloApp(t)
	in, err := listInputs(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	flashSrc, _ := filepath.Abs("../..")
	for _, want := range []string{filepath.Join(app, "main.go"), filepath.Join(app, "go.mod"), filepath.Join(app, "go.sum"),
		filepath.Join(flashSrc, "flash.go"), filepath.Join(flashSrc, "go.mod")} {
		if !slices.Contains(in.files, want) {
			t.Errorf("%s is not listed", want)
		}
	}
	if slices.Contains(in.files, filepath.Join(app, "main_test.go")) {
		t.Error("a test file is listed")
	}
	if !slices.Equal(in.dirs, []string{app}) {
		t.Errorf("watched directories %v, want the app's", in.dirs)
	}
	if !slices.ContainsFunc(in.mods, func(m string) bool { return strings.HasPrefix(m, "golang.org/x/sync@v") }) {
		t.Errorf("modules from the cache: %v", in.mods)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range in.files {
		if strings.HasPrefix(f, strings.TrimSpace(string(goroot))) || strings.Contains(f, "/pkg/mod/") {
			t.Errorf("a file of the standard library or the module cache is listed: %s", f)
		}
	}
}
