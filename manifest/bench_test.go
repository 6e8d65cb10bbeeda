package manifest

import (
	"encoding/json"
	"fmt"
	"testing"
)

// bigManifest builds a valid manifest with n functions spread over n/10 resources.
func bigManifest(n int) []byte {
	resources := map[string]any{}
	registry := map[string]string{}
	for i := 0; i < n; i++ {
		rn := fmt.Sprintf("res%d", i/10)
		r, ok := resources[rn].(map[string]any)
		if !ok {
			r = map[string]any{"resource_type": "LiveServerless", "workersMax": 3, "gpuIds": "AMPERE_16",
				"env": map[string]string{"LOG_LEVEL": "info"}, "functions": []any{}}
			resources[rn] = r
		}
		fn := fmt.Sprintf("fn_%d", i)
		r["functions"] = append(r["functions"].([]any), map[string]any{"name": fn, "module": "app.mod", "is_async": false, "is_class": false})
		registry[fn] = rn
	}
	b, _ := json.Marshal(map[string]any{"version": "1.0", "project_name": "big", "resources": resources, "function_registry": registry})
	return b
}

func BenchmarkParse1000(b *testing.B) {
	data := bigManifest(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate1000(b *testing.B) {
	m, err := Decode(bigManifest(1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHash1000(b *testing.B) {
	m, _ := Decode(bigManifest(1000))
	entries := make([][]byte, 0, len(m.Resources))
	for _, r := range m.Resources {
		entries = append(entries, r.Raw())
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range entries {
			if _, err := HashEntry(e); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkStdUnmarshal1000 is the baseline: encoding/json into a generic map.
func BenchmarkStdUnmarshal1000(b *testing.B) {
	data := bigManifest(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAll1000 is what a child pays per new manifest without a
// previous one: decode and validate (config hashes are computed on use).
func BenchmarkParseAll1000(b *testing.B) {
	data := bigManifest(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseNext1000 applies a version in which one resource of 100
// changed: the 99 others are reused from the previous manifest.
func BenchmarkParseNext1000(b *testing.B) {
	data := bigManifest(1000)
	prev, err := Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	next := prev.WithRuntime("res7", Runtime{Status: StatusDeployed, EndpointURLs: []string{"http://127.0.0.1:1"}})
	data2, _ := next.MarshalJSON()
	b.SetBytes(int64(len(data2)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseNext(prev, data2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseHash1000 is what the mothership pays per new manifest:
// decode, validate and every resource's config hash.
func BenchmarkParseHash1000(b *testing.B) {
	data := bigManifest(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range m.Resources {
			r.Hash()
		}
	}
}
