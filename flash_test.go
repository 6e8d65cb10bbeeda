package flash

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/flash-go/flash/serve"
)

type textIn struct {
	Text string `json:"text"`
}

type itemIn struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Ratio float64
	Flag  bool `json:"flag,omitempty"`
}

func echo(ctx context.Context, in textIn) (textIn, error) { return in, nil }

func TestManifestDescribesApp(t *testing.T) {
	app := NewApp("demo")
	q := app.Queue("worker", ResourceConfig{WorkersMin: 2, WorkersMax: 5, GPUIDs: "AMPERE_16", Env: map[string]string{"A": "b"}, Extra: map[string]any{"imageName2": "x"}})
	Register(q, "echo", echo)
	lb := app.LoadBalanced("api", ResourceConfig{})
	Route(lb, "GET /items/{id}", "item", func(ctx context.Context, in itemIn) (itemIn, error) { return in, nil })

	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	w := m.Resources["worker"]
	if w.LoadBalanced || w.WorkersMin != 2 || w.WorkersMax != 5 || w.Env["A"] != "b" || w.Type != "LiveServerless" {
		t.Fatalf("worker entry: %+v", w)
	}
	if m.FunctionRegistry["echo"] != "worker" || m.FunctionRegistry["item"] != "api" || m.Routes["api"]["GET /items/{id}"] != "item" {
		t.Fatalf("registry/routes: %v %v", m.FunctionRegistry, m.Routes)
	}
	if f, _ := w.Function("echo"); f.Module != "github.com/flash-go/flash" {
		t.Errorf("module = %q", f.Module)
	}
	raw := string(w.Raw())
	if !strings.Contains(raw, `"source_fingerprint":"sha256:`) || !strings.Contains(raw, `"imageName2":"x"`) {
		t.Errorf("entry lacks fingerprint or extra keys: %s", raw)
	}
}

func TestInvalidRegistrationsListedTogether(t *testing.T) {
	app := NewApp("demo")
	q := app.Queue("worker", ResourceConfig{})
	lb := app.LoadBalanced("api", ResourceConfig{})
	app.Queue("worker", ResourceConfig{})                                                                    // duplicate resource
	Register(q, "echo", echo)                                                                                //
	Register(q, "echo", echo)                                                                                // duplicate function
	Route(lb, "GET /ping", "ping", echo)                                                                     // reserved path
	Route(lb, "POST /a", "a", echo)                                                                          //
	Route(lb, "POST /a/", "b", echo)                                                                         // route clash
	Route(lb, "nonsense", "c", echo)                                                                         // bad route
	Route(q, "POST /q", "d", echo)                                                                           // route on a queue resource
	Register(lb, "e", echo)                                                                                  // queue function on LB
	Route(lb, "GET /x/{nope}", "f", func(ctx context.Context, in itemIn) (itemIn, error) { return in, nil }) // no field
	_, err := app.Manifest()
	if !errors.Is(err, ErrInvalidApp) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{`"worker" is added twice`, `"echo" is registered twice`, `/ping`, `POST /a/`, `"nonsense"`, `"d": resource "worker" is queue-based`, `"e": resource "api" is load-balanced`, `{nope}`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
}

func TestBinder(t *testing.T) {
	b, err := newBinder(func(ctx context.Context, in itemIn) (itemIn, error) { return in, nil }, "/items/{id}/{name}/{Ratio}/{flag}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body    string
		params  map[string]string
		want    itemIn
		wantErr string
	}{
		{`{"id":1,"name":"a"}`, nil, itemIn{ID: 1, Name: "a"}, ""},
		{``, map[string]string{"id": "7", "name": "x", "Ratio": "0.5", "flag": "true"}, itemIn{ID: 7, Name: "x", Ratio: 0.5, Flag: true}, ""},
		{`{"name":"body"}`, map[string]string{"id": "3"}, itemIn{ID: 3, Name: "body"}, ""},
		{`null`, nil, itemIn{}, ""},
		{`{"id":"one"}`, nil, itemIn{}, "does not fit"},
		{`[1]`, nil, itemIn{}, "does not fit"},
		{``, map[string]string{"id": "seven"}, itemIn{}, "want an integer"},
		{``, map[string]string{"flag": "maybe"}, itemIn{}, "true or false"},
	} {
		job, err := b(serve.Input{JSON: json.RawMessage(tc.body), Params: tc.params})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %v: err %v, want %q", tc.body, tc.params, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %v: %v", tc.body, tc.params, err)
			continue
		}
		out, _ := job(context.Background())
		if out.(itemIn) != tc.want {
			t.Errorf("%s %v: got %+v, want %+v", tc.body, tc.params, out, tc.want)
		}
	}
	// Map inputs take parameters as keys.
	mb, err := newBinder(func(ctx context.Context, in map[string]any) (map[string]any, error) { return in, nil }, "/w/{window}")
	if err != nil {
		t.Fatal(err)
	}
	job, _ := mb(serve.Input{Params: map[string]string{"window": "5m"}})
	out, _ := job(context.Background())
	if out.(map[string]any)["window"] != "5m" {
		t.Fatalf("map param: %v", out)
	}
	if _, err := newBinder(echo, "/x/{a}/{b}"); err == nil {
		t.Fatal("missing fields accepted")
	}
	if _, err := newBinder(func(ctx context.Context, in int) (int, error) { return in, nil }, "/x/{a}"); err == nil {
		t.Fatal("params on a non-struct input accepted")
	}
}

func TestCallWithoutRuntimeRunsInProcess(t *testing.T) {
	app := NewApp("demo")
	f := Register(app.Queue("w", ResourceConfig{}), "echo", echo)
	out, err := f.Call(context.Background(), textIn{Text: "hi"})
	if err != nil || out.Text != "hi" {
		t.Fatalf("%v %v", out, err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	c, err := ConfigFromEnv(env(map[string]string{"FLASH_IS_MOTHERSHIP": "TRUE", "PORT": "9000", "RUNPOD_API_KEY": "k"}))
	if err != nil || c.Role != Mothership || c.Port != 9000 || c.APIKey != "k" {
		t.Fatalf("%+v %v", c, err)
	}
	c, _ = ConfigFromEnv(env(map[string]string{"FLASH_RESOURCE_NAME": "gpu", "FLASH_MOTHERSHIP_ID": "abc", "FLASH_API_KEY": "a", "RUNPOD_API_KEY": "b"}))
	if c.Role != Child || c.Resource != "gpu" || c.MothershipURL != "https://abc.api.runpod.ai" || c.APIKey != "a" || c.RunpodAPIKey != "b" {
		t.Fatalf("%+v", c)
	}
	c, _ = ConfigFromEnv(env(map[string]string{"FLASH_MOTHERSHIP_URL": "http://m:1/", "FLASH_MOTHERSHIP_ID": "abc"}))
	if c.MothershipURL != "http://m:1" || c.Role != Standalone || c.Port != DefaultPort {
		t.Fatalf("%+v", c)
	}
	c, _ = ConfigFromEnv(env(map[string]string{"FLASH_WORKERS": "8", "FLASH_QUEUE_SIZE": "16", "FLASH_MAX_RESOURCES": "100"}))
	if c.Workers != 8 || c.QueueSize != 16 || c.MaxResources != 100 {
		t.Fatalf("%+v", c)
	}
	_, err = ConfigFromEnv(env(map[string]string{"PORT": "x", "FLASH_MANIFEST_TTL": "-1", "FLASH_MAX_BODY": "big", "FLASH_PROVIDER": "aws",
		"FLASH_WORKERS": "0", "FLASH_QUEUE_SIZE": "many", "FLASH_MAX_RESOURCES": "1001"}))
	for _, want := range []string{"PORT", "FLASH_MANIFEST_TTL", "FLASH_MAX_BODY", "FLASH_PROVIDER", "FLASH_WORKERS", "FLASH_QUEUE_SIZE", "FLASH_MAX_RESOURCES"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
