package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunpodFlags: what --provider runpod refuses before building or
// calling anything.
func TestRunpodFlags(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("RUNPOD_API_KEY", "")
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"deploy", "--provider", "aws", "--image", "r/x", "."}, exitUsage, "want runpod"},
		{[]string{"deploy", "--provider", "runpod", "."}, exitUsage, "--image"},
		{[]string{"deploy", "--provider", "runpod", "--image", "r/x@sha256:" + strings.Repeat("a", 64), "."}, exitUsage, "--image"},
		{[]string{"deploy", "--provider", "runpod", "--image", "r/x", "."}, exitFail, "RUNPOD_API_KEY"},
		{[]string{"status", "--provider", "runpod", "--app", "x"}, exitFail, "RUNPOD_API_KEY"},
		{[]string{"undeploy", "--provider", "runpod", "--app", "x"}, exitFail, "RUNPOD_API_KEY"},
		{[]string{"status", "--provider", "nope", "--app", "x"}, exitUsage, "want runpod"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("flash %v: exit %d (want %d): %s", tc.args, code, tc.code, errOut)
		}
	}
}

func TestWithImage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	os.WriteFile(path, []byte(`{"version":"1.0","project_name":"p","x_other":{"k":1},"resources":{
		"a":{"resource_type":"LiveServerless","functions":[]},"b":{"imageName":"own/img:1","workersMax":2}}}`), 0o600)
	b, err := withImage(path, "r/app@sha256:ab")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"a":{"functions":[],"imageName":"r/app@sha256:ab","resource_type":"LiveServerless"}`,
		`"b":{"imageName":"own/img:1","workersMax":2}`, `"x_other":{"k":1}`} {
		if !strings.Contains(s, want) {
			t.Errorf("withImage = %s\nwant it to contain %s", s, want)
		}
	}
	if _, err := withImage(filepath.Join(t.TempDir(), "none.json"), "r"); err == nil {
		t.Error("a missing manifest was accepted")
	}
}
