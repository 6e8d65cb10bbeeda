// Package e2e is flash's end-to-end test suite: it builds the demo app
// (examples/pipeline) and a small test app (e2e/testapp) once, then runs real
// topologies of processes on loopback — a mothership with the local provider,
// its children, children started by hand — and checks what a user sees over
// HTTP: serving (SPEC §5.4–5.6), the control plane (§4, §6.1) and the data
// plane (§5.1–5.3).
//
// Every test gets its own working directory and ports, and a cleanup that
// kills every process it started (directly or through a mothership) and
// verifies that none is left. Under -race the apps are built with -race too,
// and a data race reported in any process's log fails the test.
//
// The suite is skipped with -short.
package e2e

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flash-go/flash/internal/etcdcluster"
)

// bins are the app binaries TestMain builds, shared read-only by every test.
var bins struct {
	dir      string
	pipeline string // examples/pipeline
	testapp  string // e2e/testapp
	flash    string // cmd/flash
}

func TestMain(m *testing.M) {
	etcdcluster.RunIfMember() // the etcd members of ha_test.go are this binary re-executed
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // every test skips itself
	}
	dir, err := os.MkdirTemp("", "flash-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		// Every client loop, process reaper and store ended with its test.
		client.CloseIdleConnections()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines left behind:", err)
			return 1
		}
	}
	return code
}

// build compiles both apps into dir with one go command (they share most of
// their packages), with -race when this suite runs under -race.
func build(dir string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceBuild {
		args = append(args, "-race")
	}
	args = append(args, "../examples/pipeline", "./testapp", "../cmd/flash")
	start := time.Now()
	cmd := exec.Command("go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %w\n%s", args, err, out)
	}
	bins.dir = dir
	bins.pipeline = filepath.Join(dir, "pipeline")
	bins.testapp = filepath.Join(dir, "testapp")
	bins.flash = filepath.Join(dir, "flash")
	fmt.Fprintf(os.Stderr, "e2e: built the apps in %s (race=%v)\n", time.Since(start).Round(time.Millisecond), raceBuild)
	return nil
}
