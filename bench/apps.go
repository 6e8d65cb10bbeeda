package bench

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/manifest"
)

// workIn and workOut are the measured function's input and output: small,
// like most calls between endpoints.
type workIn struct {
	Text string `json:"text"`
	N    int    `json:"n"`
}

type workOut struct {
	Len int `json:"len"`
	N   int `json:"n"`
}

var benchInput = workIn{Text: "the quick brown fox jumps over the lazy dog", N: 41}

// work is the measured function: trivial, so that what is measured is the
// cost of getting to it.
//
//go:noinline
func work(_ context.Context, in workIn) (workOut, error) {
	return workOut{Len: len(in.Text), N: in.N + 1}, nil
}

func checkOut(out workOut, in workIn) error {
	if out.N != in.N+1 || out.Len != len(in.Text) {
		return fmt.Errorf("wrong result %+v for %+v", out, in)
	}
	return nil
}

// benchApp is the app under test: resource "worker" serves work, and
// "caller" is the endpoint remote calls start from.
func benchApp() (*flash.App, *flash.Func[workIn, workOut]) {
	app := flash.NewApp(appName)
	worker := app.Queue("worker", flash.ResourceConfig{})
	fn := flash.Register(worker, "work", work)
	caller := app.Queue("caller", flash.ResourceConfig{})
	flash.Register(caller, "relay", func(ctx context.Context, in workIn) (workOut, error) { return fn.Call(ctx, in) })
	return app, fn
}

// genManifest returns a valid manifest with n functions, ten per resource
// (as in manifest's own benchmarks), as JSON and parsed.
func genManifest(n int) ([]byte, *manifest.Manifest, error) {
	resources := map[string]any{}
	registry := map[string]string{}
	for i := range n {
		rn := fmt.Sprintf("res%d", i/10)
		r, ok := resources[rn].(map[string]any)
		if !ok {
			r = map[string]any{"resource_type": "LiveServerless", "workersMax": 3, "gpuIds": "AMPERE_16",
				"env": map[string]string{"LOG_LEVEL": "info"}, "functions": []any{},
				"source_fingerprint": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
			resources[rn] = r
		}
		fn := fmt.Sprintf("fn_%d", i)
		r["functions"] = append(r["functions"].([]any), map[string]any{"name": fn, "module": "example.com/app/" + rn, "is_async": false, "is_class": false})
		registry[fn] = rn
	}
	data, err := json.Marshal(map[string]any{"version": "1.0", "project_name": appName,
		"generated_at": "2026-01-01T00:00:00Z", "resources": resources, "function_registry": registry})
	if err != nil {
		return nil, nil, err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("generated manifest of %d functions: %w", n, err)
	}
	return data, m, nil
}
