package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmulateUsage(t *testing.T) {
	for _, args := range [][]string{{"emulate"}, {"emulate", "aws"}, {"emulate", "runpod", "--port", "70000"}, {"emulate", "runpod", "--nope"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, nil, &out, &errb); code != exitUsage {
			t.Errorf("flash %v: exit %d, want %d (%s)", args, code, exitUsage, errb.String())
		}
	}
}

// The emulator starts, prints its URL and key, and stops with the context.
func TestEmulateRunpod(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stop as soon as it is up
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"emulate", "runpod", "--port", "0", "--dir", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	key, err := os.ReadFile(filepath.Join(dir, "api_key"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Runpod emulator on http://127.0.0.1:") || !strings.Contains(out.String(), strings.TrimSpace(string(key))) {
		t.Errorf("output:\n%s", out.String())
	}
}
