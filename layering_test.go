package flash

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The layers of ARCHITECTURE.md, top to bottom. A package imports only
// packages of lower layers, its own directory's packages (provider/local →
// provider) and the pairs in sideways; nothing imports upward.
var layers = [][]string{
	{"cmd", "bench", "e2e", "examples"}, // programs, tools and their tests
	{""},                                // the root package flash
	{"mothership", "child", "serve", "runpodemu"}, // runpodemu itself imports only internal (layerViolation)
	{"manifest", "store", "provider", "image"},
	{"internal", "flasherr"}, // leaves: the standard library and chosen modules only
}

// sideways are the imports allowed within one layer, "from → to" by top directory.
var sideways = map[string]bool{
	"cmd → bench":      true, // flash bench runs the benchmark package
	"provider → store": true, // providers record endpoints in the state store
}

const module = "github.com/flash-go/flash"

// topDir is the first path element of pkg inside the module ("" for the root).
func topDir(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	dir, _, _ := strings.Cut(rel, "/")
	return dir
}

// rank is the layer of a top directory, -1 when it has none.
func rank(dir string) int {
	for i, l := range layers {
		for _, d := range l {
			if d == dir {
				return i
			}
		}
	}
	return -1
}

// layerViolation explains why from may not import to, or returns "".
func layerViolation(from, to string) string {
	if to != module && !strings.HasPrefix(to, module+"/") {
		return "" // the standard library and modules
	}
	fd, td := topDir(from), topDir(to)
	if fd == "runpodemu" {
		if td != "internal" {
			return "the Runpod emulator imports only internal/... of flash"
		}
		return ""
	}
	fr, tr := rank(fd), rank(td)
	switch {
	case fr < 0:
		return "package " + from + " is in no layer: add its directory to layers in layering_test.go"
	case tr < 0:
		return "package " + to + " is in no layer"
	case fd == td || tr > fr || sideways[fd+" → "+td]:
		return ""
	case tr == fr:
		return "sideways import within one layer (" + fd + " → " + td + ")"
	}
	return "upward import (" + fd + " is below " + td + ")"
}

func TestLayerViolation(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"cmd/flash", "", true},
		{"cmd/flash", "bench", true},
		{"", "mothership", true},
		{"mothership", "store", true},
		{"provider/local", "provider", true},
		{"provider", "store", true},
		{"provider/local", "internal/layout", true},
		{"runpodemu", "internal/httpx", true},
		{"manifest", "flasherr", true},
		{"store", "mothership", false},
		{"mothership", "", false},
		{"mothership", "child", false},
		{"store", "provider", false},
		{"internal/layout", "manifest", false},
		{"flasherr", "manifest", false},
		{"runpodemu", "store", false},
		{"runpodemu", "", false},
		{"bench", "cmd/flash", false},
		{"newdir", "store", false},
	} {
		pkg := func(p string) string { return strings.TrimSuffix(module+"/"+p, "/") }
		if got := layerViolation(pkg(tc.from), pkg(tc.to)); (got == "") != tc.ok {
			t.Errorf("%s → %s: %q, want ok=%v", tc.from, tc.to, got, tc.ok)
		}
	}
	if layerViolation(module+"/store", "net/http") != "" {
		t.Error("the standard library is always allowed")
	}
}

// TestLayering fails on any import, in code or tests, against the layers.
func TestLayering(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Error", "./...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if why := layerViolation(p.ImportPath, imp); why != "" && imp != p.ImportPath {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list found only %d packages", n)
	}
}
