package manifest

import (
	"encoding/json"
	"os"
	"testing"
)

func TestHashVectors(t *testing.T) {
	for _, dir := range fixtureDirs(t) {
		data, err := os.ReadFile(dir + "/config_hash_vectors.json")
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Vectors []struct {
				Input     json.RawMessage `json:"input"`
				Canonical string          `json:"canonical"`
				SHA256    string          `json:"sha256"`
			} `json:"vectors"`
		}
		if err := json.Unmarshal(data, &file); err != nil {
			t.Fatal(err)
		}
		for i, v := range file.Vectors {
			canon, err := PythonJSON(v.Input)
			if err != nil {
				t.Fatal(err)
			}
			if string(canon) != v.Canonical {
				t.Errorf("vector %d canonical:\n got %s\nwant %s", i, canon, v.Canonical)
			}
			got, err := HashEntry(v.Input)
			if err != nil || got != v.SHA256 {
				t.Errorf("vector %d: hash %s (%v), want %s", i, got, err, v.SHA256)
			}
		}
	}
}

func TestPythonNumbersAndStrings(t *testing.T) {
	// Expected values are what CPython 3.11 prints for json.dumps(json.loads(in)).
	for in, want := range map[string]string{
		`1`: `1`, `-0`: `0`, `12345678901234567890123`: `12345678901234567890123`,
		`1.0`: `1.0`, `2.5`: `2.5`, `0.1`: `0.1`, `1e2`: `100.0`, `1E2`: `100.0`, `-0.0`: `-0.0`,
		`1e16`: `1e+16`, `1.5e16`: `1.5e+16`, `1e15`: `1000000000000000.0`, `0.0001`: `0.0001`,
		`0.00001`: `1e-05`, `1.5e-7`: `1.5e-07`, `1e400`: `Infinity`, `-1e400`: `-Infinity`, `0e0`: `0.0`,
		`123456789.123456789`:                   `123456789.12345679`,
		`"a\"b\\c\n\t\r\b\f"`:                   `"a\"b\\c\n\t\r\b\f"`,
		`"\u0001\u007f"`:                        `"\u0001\u007f"`,
		`"é😀<&>"`:                               `"\u00e9\ud83d\ude00<&>"`,
		`{"b":[1,{"z":null,"a":true}],"a":"x"}`: `{"a": "x", "b": [1, {"a": true, "z": null}]}`,
	} {
		got, err := PythonJSON([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("PythonJSON(%s) = %s (%v), want %s", in, got, err, want)
		}
	}
}

func TestHashIgnoresRuntimeKeys(t *testing.T) {
	a, _ := HashEntry([]byte(`{"resource_type":"X","workersMax":2}`))
	b, _ := HashEntry([]byte(`{"resource_type":"X","workersMax":2,"config_hash":"abc","endpoint_url":"u","endpoint_urls":["u"],"status":"deployed","error":"e"}`))
	c, _ := HashEntry([]byte(`{"resource_type":"X","workersMax":3}`))
	if a != b || a == c {
		t.Fatalf("a=%s b=%s c=%s", a, b, c)
	}
	if _, err := HashEntry([]byte(`[1]`)); err == nil {
		t.Fatal("array accepted as entry")
	}
}
