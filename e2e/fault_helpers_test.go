package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
)

// desiredPath is the manifest file a fault test's mothership starts from
// (FLASH_MANIFEST_PATH): the first desired state of an empty store. The
// mothership only reads it; later desired states are recorded in the store.
func (w *world) desiredPath() string { return filepath.Join(w.dir, "desired.json") }

// writeDesired writes mf to desiredPath and returns its bytes.
func (w *world) writeDesired(t testing.TB, mf map[string]any) []byte {
	t.Helper()
	data := encodeJSON(t, mf)
	if err := os.WriteFile(w.desiredPath(), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// recordDesired records data as the desired state in the state store, as a
// deploy does, while no mothership runs.
func (w *world) recordDesired(t testing.TB, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, w.statePath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var prev int64
	if d, err := st.Desired(ctx); err == nil {
		prev = d.Version
	}
	if _, err := st.PutDesired(ctx, prev, data, ""); err != nil {
		t.Fatal(err)
	}
}

// resourceHash is the config hash of resource in the manifest data.
func resourceHash(t testing.TB, data []byte, resource string) string {
	t.Helper()
	mf, err := manifest.Parse(data)
	if err != nil {
		t.Fatalf("parse manifest: %v", err)
	}
	r, ok := mf.Resources[resource]
	if !ok {
		t.Fatalf("manifest has no resource %s", resource)
	}
	return r.Hash()
}

// deployments reads the mothership's deployment records from the state store.
func (w *world) deployments() ([]store.Deployment, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := w.openStore(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Deployments(ctx)
}

// started lists the pids of the processes the test started itself.
func (w *world) started() map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	pids := map[int]bool{}
	for _, p := range w.procs {
		pids[p.pid] = true
	}
	return pids
}

// appPIDs lists the live processes of the world the test did not start:
// those a mothership started (or left behind).
func (w *world) appPIDs() []int {
	mine := w.started()
	var out []int
	for _, pid := range w.ours() {
		if !mine[pid] {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// procEnv returns the value of key in pid's environment ("" when unreadable).
func procEnv(pid int, key string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && string(k) == key {
			return string(v)
		}
	}
	return ""
}

// audit checks what a mothership promises about the endpoints it runs, once
// it has settled (SPEC §4.3, §6.1):
//   - every live process of the app is recorded in the state store (else no
//     restart adopts it and `flash undeploy` cannot find it: an orphan);
//   - every endpoint record names a live process (no stale record);
//   - for each published resource, its published URLs, the URLs of its
//     endpoint records and those of its deployment record are the same set,
//     under the same config hash; no record names another resource.
//
// It returns every problem found, nil when there is none.
func (w *world) audit(s status) error {
	var problems []string
	eps, err := w.endpoints()
	if err != nil {
		return fmt.Errorf("read the endpoint records: %w", err)
	}
	deps, err := w.deployments()
	if err != nil {
		return fmt.Errorf("read the deployment records: %w", err)
	}
	recorded := map[int]store.Endpoint{}
	for _, e := range eps {
		recorded[e.PID] = e
		if !w.alive(e.PID) {
			problems = append(problems, fmt.Sprintf("stale endpoint record %s: pid %d is not alive", e.ID, e.PID))
		}
	}
	for _, pid := range w.appPIDs() {
		if _, ok := recorded[pid]; !ok {
			problems = append(problems, fmt.Sprintf("orphan: pid %d (resource %q, instance %q) is alive but has no endpoint record",
				pid, procEnv(pid, "FLASH_RESOURCE_NAME"), procEnv(pid, "FLASH_INSTANCE_ID")))
		}
	}

	byRes := map[string][]store.Endpoint{}
	for _, e := range eps {
		byRes[e.Resource] = append(byRes[e.Resource], e)
	}
	depOf := map[string]store.Deployment{}
	for _, d := range deps {
		depOf[d.Resource] = d
	}
	for _, name := range slices.Sorted(maps.Keys(s.Resources)) {
		rs := s.Resources[name]
		published := rs.EndpointURLs
		if len(published) == 0 && rs.EndpointURL != "" {
			published = []string{rs.EndpointURL}
		}
		var recURLs []string
		for _, e := range byRes[name] {
			recURLs = append(recURLs, e.URL)
			if e.ConfigHash != rs.ConfigHash {
				problems = append(problems, fmt.Sprintf("%s: endpoint record %s has config hash %.12s, published %.12s", name, e.ID, e.ConfigHash, rs.ConfigHash))
			}
		}
		if !sameSet(published, recURLs) {
			problems = append(problems, fmt.Sprintf("%s: published URLs %v, endpoint records %v", name, published, recURLs))
		}
		d, ok := depOf[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: published but no deployment record", name))
		case d.ConfigHash != rs.ConfigHash || d.Status != rs.Status || !sameSet(d.EndpointURLs, published):
			problems = append(problems, fmt.Sprintf("%s: deployment record {hash %.12s, %s, %v}, published {hash %.12s, %s, %v}",
				name, d.ConfigHash, d.Status, d.EndpointURLs, rs.ConfigHash, rs.Status, published))
		}
	}
	for name := range byRes {
		if _, ok := s.Resources[name]; !ok {
			problems = append(problems, fmt.Sprintf("endpoint records of %s, which is not published", name))
		}
	}
	for name := range depOf {
		if _, ok := s.Resources[name]; !ok {
			problems = append(problems, fmt.Sprintf("deployment record of %s, which is not published", name))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// deployRun is a POST /flash/deploy whose progress is read in the
// background, so that the test can kill the mothership mid-way.
type deployRun struct {
	events chan event    // every event, in order; closed when the stream ends
	done   chan struct{} // closed when the stream ended
	err    error         // why it ended early; set before done is closed
	report *report       // the final report when the deploy finished
}

// deployAsync posts mf to /flash/deploy and returns at once.
func (m *mothership) deployAsync(t testing.TB, mf []byte) *deployRun {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.url+"/flash/deploy", bytes.NewReader(mf))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	d := &deployRun{events: make(chan event, 256), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		defer close(d.events)
		resp, err := client.Do(req)
		if err != nil {
			d.err = err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			d.err = fmt.Errorf("POST /flash/deploy: %d", resp.StatusCode)
			return
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var line struct {
				Report *report `json:"report"`
				event
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				d.err = fmt.Errorf("bad line %q: %w", sc.Text(), err)
				return
			}
			if line.Report != nil {
				d.report = line.Report
				return
			}
			select {
			case d.events <- line.event:
			default: // nobody reads: the test no longer cares
			}
		}
		d.err = fmt.Errorf("the stream ended without a report: %w", sc.Err())
	}()
	return d
}

// waitEvent waits for an event of resource at step and returns it, failing
// the test when the stream ends or timeout passes first.
func (d *deployRun) waitEvent(t testing.TB, resource, step string, timeout time.Duration) event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-d.events:
			if !ok {
				<-d.done
				t.Fatalf("deploy stream ended before %s %s (report %+v, err %v)", resource, step, d.report, d.err)
			}
			if e.Resource == resource && e.Step == step {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s %s event within %s", resource, step, timeout)
		}
	}
}

// newPID polls /proc (every millisecond) for a child process of the world
// that is not in before, and returns it once it runs as a child: after exec,
// with FLASH_INSTANCE_ID in its environment (a process just forked still
// shares its parent's process group and environment).
func (w *world) newPID(t testing.TB, before []int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, pid := range w.appPIDs() {
			if !slices.Contains(before, pid) && procEnv(pid, "FLASH_INSTANCE_ID") != "" {
				return pid
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no new child process within %s", timeout)
	return 0
}

// stallLog turns path, a resource log the local provider appends to, into a
// FIFO, so that a mothership deploying that resource stalls at a chosen
// point until unstall:
//   - afterStart false: the FIFO has no reader, so opening it blocks; the
//     provider opens the log before it starts a process;
//   - afterStart true: the FIFO's buffer is full, so the next write blocks;
//     the provider writes one line there right after it starts a process
//     and before it records it.
//
// unstall makes path a regular file again, with what it held, and copies
// into it whatever is written to the FIFO from then on, until the last
// process holding the FIFO ends.
func stallLog(t testing.TB, path string, afterStart bool) (unstall func()) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var r *os.File
	if afterStart {
		// The read end, opened first so that opening a write end does not block.
		if r, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
			t.Fatal(err)
		}
		// Fill the buffer through a raw non-blocking descriptor (an *os.File
		// would wait for room instead of failing with EAGAIN).
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			r.Close()
			t.Fatal(err)
		}
		for _, chunk := range []int{4096, 64, 1} {
			buf := bytes.Repeat([]byte{'#'}, chunk)
			for {
				if _, err := syscall.Write(fd, buf); err != nil {
					break
				}
			}
		}
		syscall.Close(fd)
	}
	var once sync.Once
	unstall = func() {
		once.Do(func() {
			if err := os.Remove(path); err != nil {
				t.Error(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				t.Error(err)
				if r != nil {
					r.Close()
				}
				return
			}
			f.Write(old)
			if r == nil {
				f.Close()
				return
			}
			go func() {
				// The filler, then the processes' lines; EOF once every
				// process holding the FIFO has ended.
				io.Copy(f, r)
				r.Close()
				f.Close()
			}()
		})
	}
	t.Cleanup(unstall)
	return unstall
}

// waitExit waits for p to end and returns its exit code, failing the test
// when it still runs after timeout.
func (p *proc) waitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running after %s", p.name, p.pid, timeout)
	}
	if p.err == nil {
		return 0
	}
	var ee interface{ ExitCode() int }
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// tree maps every file and directory under dir (but the test's own logs) to
// its mode and the SHA-256 of its content, to tell whether anything changed.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if filepath.Dir(rel) == "." && strings.HasSuffix(rel, ".log") {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeDiff describes how after differs from before, "" when it does not.
func treeDiff(before, after map[string]string) string {
	var d []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if b, ok := before[k]; !ok {
			d = append(d, "created "+k)
		} else if b != after[k] {
			d = append(d, "changed "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		}
	}
	return strings.Join(d, ", ")
}

// caller is a bounded client loop: clients call f at most every pace until
// stopped, or until maxTime or maxCalls; it counts calls and failures.
type caller struct {
	name     string
	calls    atomic.Int64
	failed   atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	began    time.Time

	mu       sync.Mutex
	failures []string      // the first ones
	lastFail time.Duration // since began
}

func startCaller(name string, clients int, pace, maxTime time.Duration, maxCalls int64, f func() error) *caller {
	c := &caller{name: name, stop: make(chan struct{}), done: make(chan struct{}), began: time.Now()}
	deadline := c.began.Add(maxTime)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for time.Now().Before(deadline) && c.calls.Add(1) <= maxCalls {
				if err := f(); err != nil {
					c.failed.Add(1)
					c.mu.Lock()
					at := time.Since(c.began)
					if len(c.failures) < 10 {
						c.failures = append(c.failures, fmt.Sprintf("+%s %v", at.Round(time.Millisecond), err))
					}
					c.lastFail = max(c.lastFail, at)
					c.mu.Unlock()
				}
				select {
				case <-c.stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	go func() { wg.Wait(); close(c.done) }()
	return c
}

// snapshot returns the calls made and failed so far.
func (c *caller) snapshot() (calls, failed int64) { return c.calls.Load(), c.failed.Load() }

// finish stops the clients and waits for them.
func (c *caller) finish() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
}

// failureList shows the first failures and when the last one happened.
func (c *caller) failureList() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.failures, "\n") + fmt.Sprintf("\n… the last at +%s", c.lastFail.Round(time.Millisecond))
}

// processWith is process (POST /process on an api endpoint) with extra
// request headers.
func processWith(base string, hdr ...string) (processOut, error) {
	r, err := send(http.MethodPost, base+"/process", apiKey, textIn{Text: sampleText}, hdr...)
	if err != nil {
		return processOut{}, err
	}
	if r.Code != http.StatusOK {
		return processOut{}, fmt.Errorf("POST %s/process: %s", base, r)
	}
	var out processOut
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return processOut{}, fmt.Errorf("POST %s/process: %w: %s", base, err, r)
	}
	if out.Words != len(strings.Fields(sampleText)) || len(out.Vector) != 8 {
		return out, fmt.Errorf("POST %s/process: wrong result %+v", base, out)
	}
	return out, nil
}

// embedAt calls embed with /runsync straight on an embedder endpoint.
func embedAt(base string) error {
	r, err := send(http.MethodPost, base+"/runsync", apiKey, envelope("embed", textIn{Text: sampleText}))
	if err != nil {
		return err
	}
	var j job
	if err := json.Unmarshal(r.Body, &j); err != nil || r.Code != http.StatusOK || j.Status != "COMPLETED" {
		return fmt.Errorf("POST %s/runsync embed: %s", base, r)
	}
	return nil
}

// signal sends sig to pid after checking it is a live process of the world.
func (w *world) signal(t testing.TB, pid int, sig syscall.Signal) {
	t.Helper()
	if !w.alive(pid) {
		t.Fatalf("pid %d is not a live process of this test", pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %v to %d: %v", sig, pid, err)
	}
}
