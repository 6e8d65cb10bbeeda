package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSelfCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "flash")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "flash")
	os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", filepath.Dir(bin))
	goRun := "/tmp/go-build123/b001/exe/flash"

	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, "cmd", "flash"), 0o755)
	os.WriteFile(filepath.Join(repo, "cmd", "flash", "main.go"), nil, 0o644)

	for _, tc := range []struct{ dir, arg0, want string }{
		{repo, goRun, "go run ./cmd/flash"},
		{t.TempDir(), goRun, "go run github.com/flash-go/flash/cmd/flash"},
		{repo, "flash", "flash"},
		{repo, bin, "flash"}, // the one PATH finds, called by its path
		{repo, other, other}, // another copy: only its path calls it
		{repo, "./flash", "./flash"},
	} {
		t.Chdir(tc.dir)
		if got := selfCommand(tc.arg0); got != tc.want {
			t.Errorf("selfCommand(%q) in %s = %q, want %q", tc.arg0, tc.dir, got, tc.want)
		}
	}
}
