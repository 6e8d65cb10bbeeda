package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// modulePath is the flash module new apps import.
const modulePath = "github.com/flash-go/flash"

func runInit(e *env) int {
	fs := flag.NewFlagSet("flash init", flag.ContinueOnError)
	source := fs.String("flash-source", "", "the flash module's source directory, for a go.mod replace (default: found from the working directory)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash init [--flash-source DIR] DIR\n\nCreates a new flash app in DIR: two resources, an HTTP route calling a queue\nfunction, and a test. Then: flash run DIR")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) != 1 {
		return fail(e, usageError{"init: give the directory to create"})
	}
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return fail(e, err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fail(e, fmt.Errorf("%s already exists and is not empty: choose a new directory", dir))
	}
	name := appName(filepath.Base(dir))
	files := map[string]string{
		"main.go":      strings.ReplaceAll(skeletonMain, "APPNAME", name),
		"main_test.go": skeletonTest,
	}
	// Inside the flash module the app is one more package of it; elsewhere it
	// is a module of its own that points at the flash source.
	if root, err := moduleRoot(dir); err != nil || root == "" {
		src := *source
		if src == "" {
			src, _ = findFlashSource()
		}
		gomod := fmt.Sprintf("module %s\n\ngo 1.26\n\nrequire %s v0.0.0\n", name, modulePath)
		if src != "" {
			gomod += fmt.Sprintf("\nreplace %s => %s\n", modulePath, src)
		} else {
			fmt.Fprintf(e.stderr, "warning: flash's source was not found; edit %s/go.mod to point at it (--flash-source DIR)\n", dir)
		}
		files["go.mod"] = gomod
		if src != "" {
			if sum, err := os.ReadFile(filepath.Join(src, "go.sum")); err == nil {
				files["go.sum"] = string(sum)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(e, err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fail(e, err)
		}
	}
	if _, ok := files["go.mod"]; ok {
		tidy := exec.CommandContext(e.ctx, "go", "mod", "tidy")
		tidy.Dir = dir
		if out, err := tidy.CombinedOutput(); err != nil {
			fmt.Fprintf(e.stderr, "warning: `go mod tidy` in %s failed; run it yourself:\n%s\n", dir, indent(string(out)))
		}
	}
	fmt.Fprintf(e.stdout, "created %s (app %q)\n\nnext:\n  %s run %s     # the whole topology here\n  cd %s && go test ./...\n", dir, name, e.self, args[0], args[0])
	return exitOK
}

// appName turns a directory name into a valid app name.
func appName(base string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-.")
	if s == "" {
		s = "app"
	}
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// moduleRoot returns the module path of the go.mod above dir, or "".
func moduleRoot(dir string) (string, error) {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if mod, err := readModule(filepath.Join(d, "go.mod")); err == nil {
			if mod != modulePath {
				return "", nil
			}
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if d == filepath.Dir(d) {
			return "", nil
		}
	}
}

// findFlashSource walks up from the working directory to flash's go.mod.
func findFlashSource() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if mod, err := readModule(filepath.Join(d, "go.mod")); err == nil && mod == modulePath {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", os.ErrNotExist
		}
	}
}

func readModule(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("%s has no module line", gomod)
}

const skeletonMain = `// Command APPNAME is a flash app: an HTTP route on one endpoint calling a
// queue function on another. Run the whole topology with ` + "`flash run .`" + `.
package main

import (
	"context"
	"errors"
	"strings"

	"github.com/flash-go/flash"
)

// GreetIn is the input of greet and of POST /hello.
type GreetIn struct {
	Name string ` + "`json:\"name\"`" + `
}

// GreetOut is greet's answer.
type GreetOut struct {
	Greeting string ` + "`json:\"greeting\"`" + `
	ServedBy string ` + "`json:\"served_by\"`" + `
}

// HelloOut is POST /hello's answer.
type HelloOut struct {
	Message  string ` + "`json:\"message\"`" + `
	ServedBy string ` + "`json:\"served_by\"`" + `
	GreetBy  string ` + "`json:\"greet_served_by\"`" + `
}

func main() {
	app, _ := newApp()
	app.Main()
}

// handles are the app's functions, for tests and for callers in this package.
type handles struct {
	greet *flash.Func[GreetIn, GreetOut]
	hello *flash.Func[GreetIn, HelloOut]
}

func newApp() (*flash.App, handles) {
	app := flash.NewApp("APPNAME")

	worker := app.Queue("worker", flash.ResourceConfig{})
	var h handles
	h.greet = flash.Register(worker, "greet", func(ctx context.Context, in GreetIn) (GreetOut, error) {
		name := strings.TrimSpace(in.Name)
		if name == "" {
			return GreetOut{}, errors.New("name is empty")
		}
		return GreetOut{Greeting: "Hello, " + name + "!", ServedBy: app.Identity()}, nil
	})

	web := app.LoadBalanced("web", flash.ResourceConfig{})
	h.hello = flash.Route(web, "POST /hello", "hello", func(ctx context.Context, in GreetIn) (HelloOut, error) {
		g, err := h.greet.Call(ctx, in) // in-process or on the worker endpoint, as the manifest says
		if err != nil {
			return HelloOut{}, err
		}
		return HelloOut{Message: g.Greeting, ServedBy: app.Identity(), GreetBy: g.ServedBy}, nil
	})
	return app, h
}
`

const skeletonTest = `package main

import (
	"context"
	"testing"
)

func TestManifestIsValid(t *testing.T) {
	app, _ := newApp()
	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.FunctionRegistry["greet"] != "worker" || m.FunctionRegistry["hello"] != "web" {
		t.Fatalf("registry: %v", m.FunctionRegistry)
	}
}

func TestHelloCallsGreet(t *testing.T) {
	// Before Main or Run, every call runs in this process.
	_, h := newApp()
	out, err := h.hello.Call(context.Background(), GreetIn{Name: "Ada"})
	if err != nil || out.Message != "Hello, Ada!" {
		t.Fatalf("%+v %v", out, err)
	}
	if _, err := h.hello.Call(context.Background(), GreetIn{}); err == nil {
		t.Fatal("an empty name was accepted")
	}
}
`
