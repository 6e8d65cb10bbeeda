package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestImageFlagsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"build", "--push"},
		{"build", "--image", "Not A Ref"},
		{"build", "--image", "127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64)},
	} {
		if code, _, errOut := runCLI(t, args...); code != exitUsage || errOut == "" {
			t.Errorf("flash %q: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}

func TestBuildImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an app twice")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	src, _ := filepath.Abs("../../examples/pipeline")
	t.Chdir(t.TempDir())

	var local, pushed buildResult
	for _, tc := range []struct {
		args []string
		into *buildResult
	}{
		{[]string{"build", "--json", "--image", host + "/demo/pipeline:v1", src}, &local},
		{[]string{"build", "--json", "--image", host + "/demo/pipeline:v1", "--push", src}, &pushed},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != exitOK {
			t.Fatalf("flash %q: exit %d: %s", tc.args, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), tc.into); err != nil || tc.into.Image == nil {
			t.Fatalf("flash %q printed %s (%v)", tc.args, out, err)
		}
	}
	if !strings.HasPrefix(local.Image.Ref, host+"/demo/pipeline@sha256:") || local.Image.Pushed {
		t.Errorf("without --push: %+v", local.Image)
	}
	if _, err := os.Stat(filepath.Join(local.Image.Layout, "index.json")); err != nil {
		t.Errorf("no OCI layout: %v", err)
	}
	if pushed.Image.Ref != local.Image.Ref || !pushed.Image.Pushed {
		t.Errorf("pushed %+v, want the same digest as the local build %s", pushed.Image, local.Image.Ref)
	}
	ref, err := name.NewDigest(pushed.Image.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref); err != nil {
		t.Errorf("the registry does not hold %s: %v", ref, err)
	}
}
