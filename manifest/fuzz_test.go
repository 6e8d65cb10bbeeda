package manifest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that parsing and validation never panic, and that a parsed
// manifest survives serialise → parse unchanged.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"../testdata/manifests/*/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, _ := os.ReadFile(file)
			f.Add(data)
		}
	}
	f.Add([]byte(`{"resources":{"a":{"x":1e400,"y":"\ud800"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, perr := Parse(data)
		d, derr := Decode(data)
		if (derr == nil) != (d != nil) {
			t.Fatal("Decode returned a manifest with an error, or neither")
		}
		if m == nil {
			return
		}
		out, err := m.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("serialised valid manifest does not parse: %v\n%s", err, out)
		}
		out2, _ := m2.MarshalJSON()
		if string(out) != string(out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
		for name, r := range m.Resources {
			if m2.Resources[name].Hash() != r.Hash() {
				t.Fatalf("hash of %s changed over a round trip", name)
			}
		}
		_ = perr
	})
}

// FuzzPythonJSON checks that the canonical encoder never panics and is
// idempotent: canonical text re-encodes to itself.
func FuzzPythonJSON(f *testing.F) {
	f.Add([]byte(`{"a":[1,2.5,null,true],"c":{"z":"é"}}`))
	f.Add([]byte(`1e-7`))
	f.Add([]byte(` {"b":1,"a":{"x":[1, {"y":"\u00e9\"\\"}],"x":2},"b":-0} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := PythonJSON(data)
		if err != nil {
			return
		}
		if json.Valid(data) {
			var raw bytes.Buffer
			pythonRaw(&raw, data)
			if raw.String() != string(out) {
				t.Fatalf("pythonRaw differs from PythonJSON:\n%s\n%s", raw.String(), out)
			}
		}
		again, err := PythonJSON(out)
		if err != nil {
			// Python's Infinity is not JSON; everything else must re-parse.
			return
		}
		if string(again) != string(out) {
			t.Fatalf("not idempotent: %s → %s", out, again)
		}
	})
}
