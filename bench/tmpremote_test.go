package bench

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/manifest"
)

func TestTmpRemoteClient(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &runner{cfg: Config{Self: os.Getenv("FLASH_BIN"), CPUProfile: "/tmp/client.cpu"}, log: log, res: &Result{}}
	dir := t.TempDir()
	wApp, _ := benchApp()
	m, _ := wApp.Manifest()
	wPath := filepath.Join(dir, "worker.json")
	manifest.Save(wPath, m, 0o644)
	worker, err := runApp(t.Context(), wApp, flash.Config{Role: flash.Child, Resource: "worker", ManifestPath: wPath, APIKey: apiKey, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.stop()
	bare, _ := startServer(t.Context(), bareWorkHandler())
	defer bare.stop()
	lg, err := r.startLoadHelper(worker.url, bare.url)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.stop()
	for _, kind := range []string{"flash", "raw"} {
		res, err := lg.load(kind)(t.Context(), 64, 4*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d calls", kind, res.calls)
	}
}
