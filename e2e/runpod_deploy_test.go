package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/providertest"
	"github.com/flash-go/flash/provider/runpod"
	"github.com/flash-go/flash/runpodemu"
)

// flash deploy --provider runpod against the Runpod emulator, with a real
// registry on loopback: the CLI builds and pushes the pipeline's image, the
// mothership runs on the emulator as a load-balanced endpoint and deploys
// the three children through the runpod provider (SPEC §6.2).

// mgmtCounter sits between flash and the emulator's management API and
// records every call that changes something.
type mgmtCounter struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []string // "METHOD /path", mutating calls only
}

func newMgmtCounter(t *testing.T, target string) *mgmtCounter {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &mgmtCounter{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && (strings.HasPrefix(r.URL.Path, "/v2/serverless") || strings.HasPrefix(r.URL.Path, "/v2/network-volumes")) {
			c.mu.Lock()
			c.log = append(c.log, r.Method+" "+r.URL.Path)
			c.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// take returns the mutating calls recorded since the last take.
func (c *mgmtCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.log
	c.log = nil
	return out
}

// flashCLI runs the flash command in dir with the Runpod settings and
// extra environment; it returns stdout and the exit code.
func flashCLI(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bins.flash, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("flash %v: %v", args, err)
	}
	t.Logf("flash %s → exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return out.String(), code
}

// appEndpoints lists the emulator's endpoints tagged as the pipeline's, by name.
func appEndpoints(t *testing.T, base string) map[string]map[string]any {
	t.Helper()
	r := mustSend(t, http.MethodGet, base+"/v2/serverless", apiKey, nil)
	var ans struct{ Endpoints []map[string]any }
	r.decode(t, &ans)
	out := map[string]map[string]any{}
	for _, ep := range ans.Endpoints {
		if env, _ := ep["env"].(map[string]any); env["FLASH_APP"] == "pipeline" {
			out[ep["name"].(string)] = ep
		}
	}
	return out
}

// deployTimings reads the timings line of flash deploy --json.
func deployTimings(t *testing.T, out string) map[string]int64 {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line struct{ Timings map[string]int64 }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Timings != nil {
			return line.Timings
		}
	}
	t.Fatalf("no timings in the deploy's output")
	return nil
}

func TestRunpodDeploy(t *testing.T) {
	emu := emulator(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	mgmt := newMgmtCounter(t, emu.URL())
	dir := t.TempDir()
	pkg, err := filepath.Abs("../examples/pipeline")
	if err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimPrefix(reg.URL, "http://") + "/flash/pipeline"
	env := []string{"RUNPOD_API_KEY=" + apiKey, "RUNPOD_API_BASE=" + mgmt.srv.URL, "FLASH_API_KEY=", "FLASH_MOTHERSHIP_URL="}
	deploy := func(t *testing.T, extra ...string) map[string]int64 {
		t.Helper()
		out, code := flashCLI(t, dir, append(slices.Clone(env), extra...), "deploy", "--provider", "runpod", "--image", repo, "--json", pkg)
		if code != 0 {
			t.Fatalf("flash deploy exited %d", code)
		}
		return deployTimings(t, out)
	}

	// A foreign endpoint with the name flash would give the api, but not its tags.
	foreign := createEndpoint(t, emu, map[string]any{"name": "flash-pipeline-api", "type": "QUEUE", "image": "registry.invalid/x:1",
		"cpu": []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}}, "workers": map[string]any{"min": 0, "max": 1},
		"scaling": map[string]any{"type": "QUEUE_DELAY", "queueDelay": 4}})

	var ids map[string]string
	step(t, "first deploy creates the mothership and three endpoints", func(t *testing.T) {
		tm := deploy(t)
		t.Logf("first deploy: %v", tm)
		eps := appEndpoints(t, emu.URL())
		ids = map[string]string{}
		for _, name := range []string{"flash-pipeline", "flash-pipeline-api", "flash-pipeline-embedder", "flash-pipeline-summarizer"} {
			ep := eps[name]
			if ep == nil {
				t.Fatalf("no endpoint %s; have %v", name, slices.Sorted(maps.Keys(eps)))
			}
			ids[name] = ep["id"].(string)
			if img, _ := ep["image"].(string); !strings.Contains(img, repo+"@sha256:") {
				t.Errorf("%s runs %q, want the pushed image by digest", name, img)
			}
		}
		if len(eps) != 4 {
			t.Errorf("endpoints of the app: %v, want 4", slices.Sorted(maps.Keys(eps)))
		}
		if calls := mgmt.take(); slices.Contains(calls, "DELETE /v2/serverless/"+foreign["id"].(string)) {
			t.Errorf("the foreign endpoint was deleted: %v", calls)
		}
	})

	process := func(t *testing.T) processOut {
		t.Helper()
		api := appEndpoints(t, emu.URL())["flash-pipeline-api"]
		base := api["requestUrls"].(map[string]any)["base"].(string)
		var out processOut
		eventually(t, 2*time.Minute, "POST /process through the api's load-balanced URL", func() error {
			var err error
			out, err = processWith(base)
			return err
		})
		return out
	}
	step(t, "a call crosses both queue endpoints through the emulator's queue", func(t *testing.T) {
		out := process(t)
		if out.ServedBy["embed"] != "embedder" || out.ServedBy["summarize"] != "summarizer" || out.ServedBy["count_words"] != "summarizer" {
			t.Errorf("served by %v", out.ServedBy)
		}
		for _, name := range []string{"flash-pipeline-embedder", "flash-pipeline-summarizer"} {
			r := mustSend(t, http.MethodGet, emu.URL()+"/v2/"+ids[name]+"/health", apiKey, nil)
			var h struct{ Jobs struct{ Completed int } }
			r.decode(t, &h)
			if h.Jobs.Completed == 0 {
				t.Errorf("%s completed no job from its queue: %s", name, r)
			}
		}
	})

	step(t, "the same build again makes no mutating call", func(t *testing.T) {
		mgmt.take()
		tm := deploy(t)
		t.Logf("BENCH runpod deploy, build cached, nothing to change: %v", tm)
		if calls := mgmt.take(); len(calls) != 0 {
			t.Errorf("a redeploy of the same build changed things: %v", calls)
			for _, c := range calls {
				id := c[strings.LastIndex(c, "/")+1:]
				t.Logf("releases of %s: %s", id, mustSend(t, http.MethodGet, emu.URL()+"/v2/serverless/"+id+"/releases", apiKey, nil))
			}
		}
	})

	step(t, "a code change updates every endpoint in place, with no failed call", func(t *testing.T) {
		apiBase := appEndpoints(t, emu.URL())["flash-pipeline-api"]["requestUrls"].(map[string]any)["base"].(string)
		load := startCaller("process", 4, 20*time.Millisecond, 10*time.Minute, 1<<40, func() error {
			_, err := processWith(apiBase)
			return err
		})
		// -tags changes the binary (its build settings are in it) as an edit would.
		tm := deploy(t, "GOFLAGS=-tags=flash_e2e_change")
		t.Logf("BENCH runpod deploy, code changed: %v", tm)
		process(t) // the new release answers
		load.finish()
		if made, failed := load.snapshot(); failed > 0 || made < 10 {
			t.Errorf("%d of %d calls failed during the update:\n%s", failed, made, load.failureList())
		} else {
			t.Logf("%d calls during the update, none failed", made)
		}
		eventually(t, 2*time.Minute, "every worker on the new release", func() error {
			for _, name := range []string{"flash-pipeline-api", "flash-pipeline-embedder", "flash-pipeline-summarizer"} {
				r := mustSend(t, http.MethodGet, emu.URL()+"/v2/serverless/"+ids[name]+"/workers", apiKey, nil)
				var w struct{ Workers []struct{ IsStale bool } }
				r.decode(t, &w)
				for _, wk := range w.Workers {
					if wk.IsStale {
						return fmt.Errorf("%s: %s", name, r)
					}
				}
			}
			return nil
		})
		calls := mgmt.take()
		for _, c := range calls {
			if !strings.HasPrefix(c, "PATCH ") {
				t.Errorf("a change made a call other than PATCH: %s (all: %v)", c, calls)
			}
		}
		eps := appEndpoints(t, emu.URL())
		for name, id := range ids {
			if eps[name] == nil || eps[name]["id"] != id {
				t.Errorf("%s was replaced, not updated: %v", name, eps[name])
			}
			if !slices.Contains(calls, "PATCH /v2/serverless/"+id) {
				t.Errorf("%s (%s) was not updated: %v", name, id, calls)
			}
		}
	})

	step(t, "a killed mothership worker is restarted with its state, and redeploys nothing", func(t *testing.T) {
		ms := appEndpoints(t, emu.URL())["flash-pipeline"]
		base := ms["requestUrls"].(map[string]any)["base"].(string)
		var before struct{ Version int64 }
		mustSend(t, http.MethodGet, base+"/flash/status", apiKey, nil).decode(t, &before)
		pids := endpointPIDs(ids["flash-pipeline"])
		if len(pids) != 1 {
			t.Fatalf("mothership worker processes: %v", pids)
		}
		mgmt.take()
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "a new mothership worker with the state it had", func() error {
			if p := endpointPIDs(ids["flash-pipeline"]); len(p) != 1 || p[0] == pids[0] {
				return fmt.Errorf("workers %v", p)
			}
			r, err := send(http.MethodGet, base+"/flash/status", apiKey, nil)
			if err != nil || r.Code != http.StatusOK {
				return fmt.Errorf("status: %v %v", r, err)
			}
			var now struct{ Version int64 }
			r.decode(t, &now)
			if now.Version < before.Version {
				return fmt.Errorf("manifest version %d after the restart, %d before: the state was lost", now.Version, before.Version)
			}
			return nil
		})
		process(t)
		if calls := mgmt.take(); len(calls) != 0 {
			t.Errorf("the restarted mothership changed endpoints: %v", calls)
		}
	})

	step(t, "status shows each endpoint's Runpod id, workers and version", func(t *testing.T) {
		out, code := flashCLI(t, dir, env, "status", "--provider", "runpod", "--app", "pipeline", "--json")
		if code != 0 {
			t.Fatalf("flash status exited %d", code)
		}
		var st struct {
			Endpoints []struct {
				Resource, ID string
				Version      int64
				Workers      map[string]int
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Endpoints) != 4 {
			t.Fatalf("status endpoints: %+v", st.Endpoints)
		}
		for _, ep := range st.Endpoints {
			if ep.Version < 2 || ep.ID == "" || ep.Workers == nil {
				t.Errorf("status of %s: %+v, want its id, workers and version ≥ 2 after the update", ep.Resource, ep)
			}
		}
	})

	step(t, "undeploy removes this app's endpoints and nothing else", func(t *testing.T) {
		if _, code := flashCLI(t, dir, env, "undeploy", "--provider", "runpod", "--app", "pipeline"); code != 0 {
			t.Fatalf("flash undeploy exited %d", code)
		}
		if eps := appEndpoints(t, emu.URL()); len(eps) != 0 {
			t.Errorf("endpoints left: %v", slices.Sorted(maps.Keys(eps)))
		}
		r := mustSend(t, http.MethodGet, emu.URL()+"/v2/serverless/"+foreign["id"].(string), apiKey, nil)
		if r.Code != http.StatusOK {
			t.Errorf("the foreign endpoint: %s", r)
		}
	})
}

// TestRunpodProviderConformance runs provider/providertest against the
// emulator: one account per test, shared by its apps. Endpoints keep no
// worker (workers.min 0), so their image is never pulled.
func TestRunpodProviderConformance(t *testing.T) {
	emus := map[*testing.T]*runpodemu.Emulator{}
	providertest.Run(t, providertest.Harness{
		Open: func(t *testing.T, app string) provider.Provider {
			emu, ok := emus[t]
			if !ok {
				emu = emulator(t)
				emus[t] = emu
			}
			p, err := runpod.New(runpod.Config{App: app, Client: &runpod.Client{Base: emu.URL(), Key: apiKey},
				Image: "registry.invalid/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		InPlace: true,
	})
}

// endpointPIDs lists the processes the emulator runs for an endpoint.
func endpointPIDs(id string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && procEnv(pid, "RUNPOD_ENDPOINT_ID") == id {
			pids = append(pids, pid)
		}
	}
	return pids
}
