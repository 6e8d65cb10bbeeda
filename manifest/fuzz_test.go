package manifest

import (
	"bytes"
	"encoding/json"
	"maps"
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

// FuzzParseNext checks the incremental parse against the full one: with a
// previous manifest whose parts most inputs share, ParseNext accepts exactly
// what Parse accepts, gives the same manifest, and its validity check agrees
// with json.Valid.
func FuzzParseNext(f *testing.F) {
	prevData := bigManifest(4) // small: the fuzzer minimises every new input it finds
	prev, err := Parse(prevData)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(prevData)
	f.Add(bytes.Replace(prevData, []byte(`"version":"1.0"`), []byte(`"version":"1.1"`), 1))
	f.Add(bytes.Replace(prevData, []byte(`"res1":`), []byte(`"res1" :`), 1))
	f.Add(append([]byte(" \n"), prevData...))
	f.Add(append(bytes.Clone(prevData), '\f'))
	f.Add([]byte(`{"function_registry":{"a":"b"},"resources":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, ok := topMembers(prev, bytes.Clone(data))
		isObject := json.Valid(data) && bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{"))
		if ok != isObject {
			t.Fatalf("topMembers ok = %v, json.Valid object = %v", ok, isObject)
		}
		next, nerr := ParseNext(prev, data)
		full, ferr := Parse(data)
		if (nerr == nil) != (ferr == nil) {
			t.Fatalf("ParseNext err %v, Parse err %v", nerr, ferr)
		}
		if nerr != nil {
			return
		}
		a, _ := next.MarshalJSON()
		b, _ := full.MarshalJSON()
		if !bytes.Equal(a, b) || !maps.Equal(next.FunctionRegistry, full.FunctionRegistry) {
			t.Fatalf("ParseNext and Parse disagree:\n%s\n%s", a, b)
		}
	})
}
