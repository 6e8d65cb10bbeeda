package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runCLI runs the CLI in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestManifestValidateFixtures(t *testing.T) {
	valid, _ := filepath.Glob("../../testdata/manifests/valid/*.json")
	code, out, _ := runCLI(t, append([]string{"manifest", "validate"}, valid...)...)
	if code != exitOK || strings.Count(out, ": valid") != len(valid) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	invalid, _ := filepath.Glob("../../testdata/manifests/invalid/*.json")
	for _, f := range invalid {
		expect, _ := os.ReadFile(strings.TrimSuffix(f, ".json") + ".expect")
		code, out, _ := runCLI(t, "manifest", "validate", f)
		if code != exitFail {
			t.Errorf("%s: exit %d, want 1", f, code)
		}
		if !strings.Contains(strings.ToLower(out), strings.ToLower(strings.TrimSpace(string(expect)))) {
			t.Errorf("%s: report lacks %q:\n%s", f, expect, out)
		}
	}
	// One invalid file among valid ones fails the whole run, and all are reported.
	code, out, _ = runCLI(t, "manifest", "validate", "--json", valid[0], invalid[0])
	var res []validation
	if code != exitFail || json.Unmarshal([]byte(out), &res) != nil || len(res) != 2 || !res[0].Valid || res[1].Valid {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestManifestHashVectors(t *testing.T) {
	data, _ := os.ReadFile("../../testdata/config_hash_vectors.json")
	var file struct {
		Vectors []struct {
			Input  json.RawMessage `json:"input"`
			SHA256 string          `json:"sha256"`
		} `json:"vectors"`
	}
	json.Unmarshal(data, &file)
	// Hashing needs no other validity: vectors are not valid resource entries.
	resources := map[string]json.RawMessage{}
	want := ""
	for i, v := range file.Vectors {
		name := "r" + string(rune('a'+i))
		resources[name] = v.Input
		want += name + " " + v.SHA256 + "\n"
	}
	doc, _ := json.Marshal(map[string]any{"resources": resources})
	path := filepath.Join(t.TempDir(), "m.json")
	os.WriteFile(path, doc, 0o600)
	code, out, errOut := runCLI(t, "manifest", "hash", path)
	if code != exitOK || out != want {
		t.Fatalf("exit %d\n%s\nwant\n%s%s", code, out, want, errOut)
	}
	os.WriteFile(path, []byte(`{"resources":[1]}`), 0o600)
	if code, _, _ := runCLI(t, "manifest", "hash", path); code != exitFail {
		t.Fatalf("non-object resources: exit %d", code)
	}
}

func TestManifestDiffJSON(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.json")
	desired := filepath.Join(dir, "new.json")
	os.WriteFile(old, []byte(`{"resources":{"a":{"x":1},"b":{"x":1},"c":{"x":1}}}`), 0o600)
	os.WriteFile(desired, []byte(`{"resources":{"a":{"x":1,"status":"deployed"},"b":{"x":2},"d":{"x":1}}}`), 0o600)
	code, out, _ := runCLI(t, "manifest", "diff", "--json", old, desired)
	var got map[string][]string
	json.Unmarshal([]byte(out), &got)
	if code != exitOK || !slices.Equal(got["new"], []string{"d"}) || !slices.Equal(got["changed"], []string{"b"}) ||
		!slices.Equal(got["removed"], []string{"c"}) || !slices.Equal(got["unchanged"], []string{"a"}) {
		t.Fatalf("exit %d: %s", code, out)
	}
	code, out, _ = runCLI(t, "manifest", "diff", old, desired)
	if code != exitOK || !strings.Contains(out, "1 new, 1 changed, 1 removed, 1 unchanged") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestManifestShow(t *testing.T) {
	f := "../../testdata/manifests/valid/pipeline-runtime.json"
	code, out, _ := runCLI(t, "manifest", "show", f)
	if code != exitOK || !strings.Contains(out, "summarizer") || !strings.Contains(out, "deploy timed out") {
		t.Fatalf("exit %d: %s", code, out)
	}
	code, out, _ = runCLI(t, "manifest", "show", "--json", f)
	if code != exitOK || !strings.Contains(out, `"x_unknown_top_level"`) {
		t.Fatalf("--json lost the unknown key: %s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nope"}, {"manifest"}, {"manifest", "frobnicate", "x"}, {"manifest", "show"},
		{"manifest", "diff", "a"}, {"manifest", "validate"}, {"manifest", "hash", "--bogus", "x"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("flash %v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCLI(t, "manifest", "show", "/does/not/exist.json"); code != exitFail || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d %s", code, errOut)
	}
}
