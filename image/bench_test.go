package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkBuild compares making the demo app's image with a plain go build
// of it, both from a warm build cache (the edit-build loop):
//
//	go test -run XXX -bench Build -benchtime 5x ./image/
//
// bin-bytes is the binary's size; image-bytes the compressed layers', what
// a registry stores and a worker pulls.
func BenchmarkBuild(b *testing.B) {
	const pkg = "../examples/pipeline"
	b.Run("go-build", func(b *testing.B) {
		out := filepath.Join(b.TempDir(), "app")
		for b.Loop() {
			if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, msg)
			}
		}
		fi, err := os.Stat(out)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size()), "bin-bytes")
	})
	b.Run("image", func(b *testing.B) {
		var built *Built
		for b.Loop() {
			var err error
			if built, err = Build(context.Background(), Options{Pkg: pkg, App: "pipeline"}); err != nil {
				b.Fatal(err)
			}
		}
		layers, err := built.Image.Layers()
		if err != nil {
			b.Fatal(err)
		}
		var size int64
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				b.Fatal(err)
			}
			size += n
		}
		b.ReportMetric(float64(built.BinarySize), "bin-bytes")
		b.ReportMetric(float64(size), "image-bytes")
	})
}
