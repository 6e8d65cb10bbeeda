package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flash-go/flash/flasherr"
)

// fixtureDirs are the project's copy of the shared fixtures and, when present,
// the shared folder itself, so that cases added there reach the suite.
func fixtureDirs(t *testing.T) []string {
	dirs := []string{"../testdata"}
	if _, err := os.Stat("../../shared/fixtures"); err == nil {
		dirs = append(dirs, "../../shared/fixtures")
	}
	return dirs
}

func TestValidFixtures(t *testing.T) {
	for _, dir := range fixtureDirs(t) {
		files, _ := filepath.Glob(filepath.Join(dir, "manifests/valid/*.json"))
		if len(files) == 0 {
			t.Fatalf("no valid fixtures in %s", dir)
		}
		for _, f := range files {
			t.Run(f, func(t *testing.T) {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				m, err := Parse(data)
				if err != nil {
					t.Fatalf("valid fixture rejected: %v", err)
				}
				// Round trip: serialise → parse → serialise is byte-stable, and
				// every key of the original survives (unknown ones included).
				first, _ := m.MarshalJSON()
				m2, err := Parse(first)
				if err != nil {
					t.Fatalf("re-parse: %v", err)
				}
				second, _ := m2.MarshalJSON()
				if string(first) != string(second) {
					t.Fatalf("round trip not byte-stable:\n%s\n%s", first, second)
				}
				var orig, back any
				json.Unmarshal(data, &orig)
				json.Unmarshal(first, &back)
				if !jsonEqual(orig, back) {
					t.Fatalf("round trip lost or changed content:\n%s\n%s", data, first)
				}
			})
		}
	}
}

// invalidProblemCount is how many problems each invalid fixture has.
var invalidProblemCount = map[string]int{
	"bad-method":                2, // the function's method and the routes key
	"bad-resource-name":         1,
	"duplicate-route":           1,
	"function-twice":            1,
	"lb-no-path":                1,
	"not-an-object":             1,
	"not-json":                  1,
	"path-no-slash":             2, // the function's path and the routes key
	"registry-unknown-resource": 1,
	"reserved-path-variant":     2,
	"reserved-path":             2,
	"resources-missing":         1,
	"resources-wrong-type":      1,
	"route-on-queue":            1,
	"version-unsupported":       1,
	"wrong-field-type":          1,
}

func TestInvalidFixtures(t *testing.T) {
	for _, dir := range fixtureDirs(t) {
		files, _ := filepath.Glob(filepath.Join(dir, "manifests/invalid/*.json"))
		if len(files) == 0 {
			t.Fatalf("no invalid fixtures in %s", dir)
		}
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			t.Run(f, func(t *testing.T) {
				data, _ := os.ReadFile(f)
				expect, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".expect")
				if err != nil {
					t.Fatal(err)
				}
				_, err = Parse(data)
				var inv *InvalidError
				if !errors.As(err, &inv) {
					t.Fatalf("accepted or wrong error type: %v", err)
				}
				want := strings.ToLower(strings.TrimSpace(string(expect)))
				if !strings.Contains(strings.ToLower(err.Error()), want) {
					t.Errorf("report does not mention %q:\n%v", want, err)
				}
				if n, ok := invalidProblemCount[name]; ok && len(inv.Problems) != n {
					t.Errorf("%d problems, want %d:\n%v", len(inv.Problems), n, err)
				}
			})
		}
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	doc := `{"version":"9","resources":{"bad name":{"resource_type":1,"functions":[{"name":"1x","is_async":"no"}]},
		"api":{"is_load_balanced":true,"functions":[{"name":"a","http_method":"GET","http_path":"/v2/x"},{"name":"b"}]}},
		"function_registry":{"f":"nowhere"},"routes":{"ghost":{"GET /x":"a"}}}`
	_, err := Parse([]byte(doc))
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{`version`, `resources["bad name"].resource_type`, `is_async`, `"1x"`,
		`resources.api.functions[0]`, `"/v2/x"`, `resources.api.functions[1]`, `function_registry.f`, `routes.ghost`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %s:\n%v", want, err)
		}
	}
}

func TestReservedPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/ping": true, "/Ping/": true, "/PING?x=1": true, "/manifest": true, "/status/abc": true,
		"/status": true, "/flash/x": true, "/v2/ep/run": true, "//metrics": true, "/RUNSYNC/": true,
		"/process": false, "/ping/deeper": false, "/statuses": false, "/stats/{window}": false, "/": false,
	} {
		if got := ReservedPath(path); got != want {
			t.Errorf("ReservedPath(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestLoadBalancedRule(t *testing.T) {
	for _, tc := range []struct {
		entry string
		want  bool
	}{
		{`{"resource_type":"LoadBalancerSlsResource"}`, true},
		{`{"resource_type":"CpuLiveLoadBalancer"}`, true},
		{`{"resource_type":"LiveServerless"}`, false},
		{`{"resource_type":"LoadBalancerSlsResource","is_load_balanced":false}`, false},
		{`{"resource_type":"ServerlessEndpoint","is_load_balanced":true}`, true},
	} {
		m, err := Parse([]byte(`{"resources":{"r":` + tc.entry + `}}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Resources["r"].LoadBalanced; got != tc.want {
			t.Errorf("%s: LoadBalanced = %v, want %v", tc.entry, got, tc.want)
		}
	}
}

func TestNullsAreAbsent(t *testing.T) {
	// Python builds may write None for optional keys.
	doc := `{"version":null,"resources":{"w":{"resource_type":"ServerlessResource","handler_file":null,
		"functions":[{"name":"f","module":"m","is_async":false,"http_method":null,"http_path":null}]}},"routes":null}`
	if _, err := Parse([]byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func TestEdits(t *testing.T) {
	m := mustLoad(t, "../testdata/manifests/valid/pipeline-runtime.json")
	before, _ := m.MarshalJSON()
	hash := m.Resources["embedder"].Hash()

	m2 := m.WithRuntime("embedder", Runtime{ConfigHash: hash, EndpointURLs: []string{"http://a", "http://b"}, Status: StatusDeployed})
	after, _ := m.MarshalJSON()
	if string(before) != string(after) {
		t.Fatal("WithRuntime mutated the original")
	}
	r := m2.Resources["embedder"]
	if r.EndpointURL != "http://a" || !slices.Equal(r.URLs(), []string{"http://a", "http://b"}) || r.Status != StatusDeployed {
		t.Fatalf("runtime not applied: %+v", r)
	}
	if r.Hash() != hash {
		t.Fatal("runtime keys changed the config hash")
	}
	if _, ok := m2.raw["x_unknown_top_level"]; !ok {
		t.Fatal("edit dropped an unknown key")
	}

	m3 := m2.Without("api")
	if _, ok := m3.Resources["api"]; ok || m3.FunctionRegistry["process"] != "" || m3.Routes["api"] != nil {
		t.Fatalf("Without left traces: %+v %+v", m3.FunctionRegistry, m3.Routes)
	}
	if err := m3.Validate(); err != nil {
		t.Fatal(err)
	}
	m4 := m3.WithResourceFrom(m, "api")
	if m4.Resources["api"].Hash() != m.Resources["api"].Hash() || m4.FunctionRegistry["process"] != "api" || m4.Routes["api"]["POST /process"] != "process" {
		t.Fatal("WithResourceFrom did not restore the resource")
	}
	if m.WithTop("project_name", "other").ProjectName != "other" {
		t.Fatal("WithTop")
	}
}

func TestDiff(t *testing.T) {
	old := mustParse(t, `{"resources":{"a":{"x":1},"b":{"x":1},"c":{"x":1},"d":{"x":1,"status":"deployed"}}}`)
	desired := mustParse(t, `{"resources":{"a":{"x":1},"b":{"x":2},"e":{"x":1},"d":{"x":1}}}`)
	got := Diff(desired, old)
	want := Changes{New: []string{"e"}, Changed: []string{"b"}, Removed: []string{"c"}, Unchanged: []string{"a", "d"}}
	if !slices.Equal(got.New, want.New) || !slices.Equal(got.Changed, want.Changed) ||
		!slices.Equal(got.Removed, want.Removed) || !slices.Equal(got.Unchanged, want.Unchanged) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if all := Diff(desired, nil); len(all.New) != 4 || !Diff(desired, desired).Empty() {
		t.Fatalf("nil or identical diff wrong: %+v", all)
	}
}

func TestSaveLoad(t *testing.T) {
	m := mustLoad(t, "../testdata/manifests/valid/pipeline-build.json")
	path := filepath.Join(t.TempDir(), "x", FileName)
	if err := Save(path, m, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.MarshalJSON()
	b, _ := back.MarshalJSON()
	if string(a) != string(b) {
		t.Fatal("save/load changed the manifest")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, ErrNoFile) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestLocateOrder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if p, _ := Locate("/explicit/path.json"); p != "/explicit/path.json" {
		t.Fatalf("explicit path ignored: %s", p)
	}
	if _, err := Locate(""); !errors.Is(err, ErrNoFile) {
		t.Fatalf("want ErrNoFile, got %v", err)
	}
	os.WriteFile(FileName, []byte(`{}`), 0o600)
	if p, _ := Locate(""); p != FileName {
		t.Fatalf("working directory file not found: %s", p)
	}
}

func mustParse(t testing.TB, doc string) *Manifest {
	t.Helper()
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustLoad(t testing.TB, path string) *Manifest {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestInvalidErrorIsErrInvalidManifest(t *testing.T) {
	_, err := Parse([]byte(`{"version":"2.0","resources":{}}`))
	if !errors.Is(err, flasherr.ErrInvalidManifest) {
		t.Fatalf("errors.Is(%v, ErrInvalidManifest) = false", err)
	}
}

func TestParseNextReusesUnchangedResources(t *testing.T) {
	prev, err := Parse(bigManifest(30))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := prev.WithRuntime("res1", Runtime{Status: StatusDeployed}).MarshalJSON()
	next, err := ParseNext(prev, data)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range next.Resources {
		if same := r == prev.Resources[name]; same != (name != "res1") {
			t.Errorf("%s: reused = %v", name, same)
		}
	}
	if next.Resources["res1"].Status != StatusDeployed {
		t.Errorf("res1 status %q", next.Resources["res1"].Status)
	}
	fresh, _ := Parse(data)
	a, _ := next.MarshalJSON()
	b, _ := fresh.MarshalJSON()
	if string(a) != string(b) {
		t.Errorf("ParseNext and Parse disagree:\n%s\n%s", a, b)
	}
	// An invalid next version is refused whatever prev holds.
	bad := bytes.Replace(data, []byte(`"resource_type":"LiveServerless"`), []byte(`"resource_type":7`), 1)
	if _, err := ParseNext(prev, bad); err == nil {
		t.Error("ParseNext accepted a resource_type of the wrong type")
	}
}

// TestClassOnLoadBalancedResource: a stateful object ("is_class") on an LB
// resource needs no route (flash serves it at its own paths); a function
// there still does.
func TestClassOnLoadBalancedResource(t *testing.T) {
	m := mustParse(t, `{"resources":{"api":{"resource_type":"LiveLoadBalancer","functions":[
		{"name":"Session","module":"main","is_async":false,"is_class":true}]}},"function_registry":{"Session":"api"}}`)
	if f, ok := m.Resources["api"].Function("Session"); !ok || !f.IsClass {
		t.Fatalf("Session: %+v %v", f, ok)
	}
	_, err := Parse([]byte(`{"resources":{"api":{"resource_type":"LiveLoadBalancer","functions":[
		{"name":"f","module":"main","is_async":false,"is_class":false}]}},"function_registry":{"f":"api"}}`))
	if err == nil || !strings.Contains(err.Error(), "needs both http_method and http_path") {
		t.Errorf("an LB function without a route: %v", err)
	}
}

// TestFunctionListedAgain: each extra listing of a function gets the
// problem that names it best — on another resource, or again on the same.
func TestFunctionListedAgain(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string // problem strings, in order
	}{
		{"twice on one", `{"resources":{"a":{"functions":[{"name":"f"},{"name":"f"}]}}}`,
			[]string{`resources.a.functions[1]: function "f" is listed twice on resource "a"`}},
		{"on two", `{"resources":{"a":{"functions":[{"name":"f"}]},"b":{"functions":[{"name":"f"}]}}}`,
			[]string{`resources.b.functions[0]: function "f" is listed under two resources: "a" and "b"`}},
		{"on one, then twice on another", `{"resources":{"a":{"functions":[{"name":"f"}]},"b":{"functions":[{"name":"f"},{"name":"f"}]}}}`,
			[]string{`resources.b.functions[0]: function "f" is listed under two resources: "a" and "b"`,
				`resources.b.functions[1]: function "f" is listed twice on resource "b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("got %v", err)
			}
			var got []string
			for _, p := range inv.Problems {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
