package flash

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// TestFunctionEntriesAreSeedShaped: a Go build writes into a function entry
// only the fields of the seed's FunctionMetadata, so that Python's
// FunctionMetadata(**entry) accepts it; example inputs go in x_flash.
func TestFunctionEntriesAreSeedShaped(t *testing.T) {
	app := NewApp("shape")
	Register(app.Queue("worker", ResourceConfig{}), "echo", echo)
	Route(app.LoadBalanced("api", ResourceConfig{}), "POST /items", "item", func(ctx context.Context, in itemIn) (itemIn, error) { return in, nil })
	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Resources map[string]struct {
			Functions []map[string]json.RawMessage `json:"functions"`
			XFlash    struct {
				ExampleInputs map[string]json.RawMessage `json:"example_inputs"`
			} `json:"x_flash"`
		} `json:"resources"`
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	seed := []string{"name", "module", "is_async", "is_class", "http_method", "http_path"}
	for name, r := range doc.Resources {
		for _, f := range r.Functions {
			for k := range maps.Keys(f) {
				if !slices.Contains(seed, k) {
					t.Errorf("resources.%s function entry has %q, which FunctionMetadata rejects", name, k)
				}
			}
		}
	}
	if got := string(doc.Resources["worker"].XFlash.ExampleInputs["echo"]); got != `{"text":"hello flash"}` {
		t.Errorf("x_flash.example_inputs.echo = %s", got)
	}
	if f, _ := m.Resources["api"].Function("item"); f.ExampleInput == nil {
		t.Error("the parsed manifest lost the example input")
	}
}
