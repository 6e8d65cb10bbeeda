package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/etcdcluster"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/etcd"
	"github.com/flash-go/flash/store/sqlite"
)

// Several motherships sharing a three-member etcd cluster (SPEC §4.6, issue
// 14): one leads, the others serve; whatever dies, a deploy finishes once,
// without duplicate or orphan endpoint, and calls between children go on.

// haLease is the etcd lease of the tests' leaders: short, so that failover
// is quick, long enough for a loaded machine to renew it.
const haLease = "3s"

// openStore opens the world's state store: the etcd cluster when it has one,
// else its SQLite file.
func (w *world) openStore(ctx context.Context) (store.Store, error) {
	if w.stateURL != "" {
		s, err := etcd.Open(ctx, w.stateURL)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return sqlite.Open(ctx, w.statePath())
}

// haTopology is an etcd cluster and the motherships sharing it.
type haTopology struct {
	w    *world
	etcd *etcdcluster.Cluster
	ms   []*mothership
	mf   map[string]any // the app's manifest, the first desired state
}

// startHA starts a three-member etcd cluster and n motherships of the demo
// app on it, and waits until one leads and everything is deployed.
func startHA(t *testing.T, n int) *haTopology {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	dir := t.TempDir()
	c, err := etcdcluster.Start(t.Context(), filepath.Join(dir, "etcd"), 3, etcdcluster.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // after the world's cleanup, which reads the records
	w := newWorld(t, bins.pipeline, "pipeline")
	w.stateURL = c.URL("/flash/pipeline") + "?lease_ttl=" + haLease + "&timeout=3s"
	h := &haTopology{w: w, etcd: c, mf: w.appManifest(t)}
	w.writeDesired(t, h.mf)
	h.ms = startMotherships(t, w, n, w.stateURL)
	li := h.waitLeader(t, -1, 60*time.Second)
	h.ms[li].settle(t, 60*time.Second)
	h.ms[li].waitDeployed(t, 60*time.Second, pipelineResources...)
	return h
}

// startMotherships starts n motherships of w's app on stateURL, each told
// of all (FLASH_MOTHERSHIP_URL), the first desired state w.desiredPath().
func startMotherships(t *testing.T, w *world, n int, stateURL string, env ...string) []*mothership {
	var urls []string
	for range n {
		urls = append(urls, "http://127.0.0.1:"+strconv.Itoa(freePort(t)))
	}
	var ms []*mothership
	for _, u := range urls {
		port := strings.TrimPrefix(u, "http://127.0.0.1:")
		m := &mothership{w: w, url: u, env: append([]string{
			"FLASH_IS_MOTHERSHIP=true", "PORT=" + port, "FLASH_API_KEY=" + apiKey,
			"FLASH_STATE_URL=" + stateURL, "FLASH_MOTHERSHIP_URL=" + strings.Join(urls, ","),
			"FLASH_MANIFEST_PATH=" + w.desiredPath(),
		}, env...)}
		m.start(t)
		ms = append(ms, m)
	}
	return ms
}

// leaderSeen returns the index of the mothership that m's status says
// leads, with the time it began, or an error.
func (h *haTopology) leaderSeen(m *mothership) (int, time.Time, error) {
	r, err := send(http.MethodGet, m.url+"/flash/status", apiKey, nil)
	if err != nil {
		return -1, time.Time{}, err
	}
	var s status
	if err := json.Unmarshal(r.Body, &s); err != nil {
		return -1, time.Time{}, fmt.Errorf("%w: %s", err, r)
	}
	for _, ms := range s.Motherships {
		if ms.Leader {
			i := slices.IndexFunc(h.ms, func(m *mothership) bool { return m.url == ms.URL })
			return i, ms.Since, nil
		}
	}
	return -1, time.Time{}, errors.New("nobody leads")
}

// waitLeader waits until a live mothership other than not (-1: any) leads,
// as the statuses of the others say, and returns its index.
func (h *haTopology) waitLeader(t testing.TB, not int, timeout time.Duration) int {
	t.Helper()
	leader := -1
	eventually(t, timeout, "a new leader", func() error {
		for i, m := range h.ms {
			if i == not || m.proc.exited() {
				continue // killed or stopped: it answers nothing
			}
			i, _, err := h.leaderSeen(m)
			if err != nil {
				return err
			}
			if i < 0 || i == not || h.ms[i].proc.exited() {
				return fmt.Errorf("%s says mothership %d leads", m.url, i)
			}
			leader = i
		}
		return nil
	})
	return leader
}

// desiredVersion reads the stored desired state's version.
func (h *haTopology) desiredVersion(t testing.TB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.w.openStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Desired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d.Version
}

// changedEmbedder returns the app's manifest with embedder changed (a new
// config hash: a make-before-break redeploy), and that hash.
func (h *haTopology) changedEmbedder(t testing.TB, workersMax int) ([]byte, string) {
	t.Helper()
	object(t, object(t, h.mf, "resources"), "embedder")["workersMax"] = workersMax
	b := encodeJSON(t, h.mf)
	return b, resourceHash(t, b, "embedder")
}

// callChildren keeps calling POST /process on api, which calls embedder and
// summarizer: the calls between children that must never fail.
func callChildren(apiURL string) *caller {
	return startCaller("process", 2, 20*time.Millisecond, 3*time.Minute, 1<<30, func() error {
		_, err := process(apiURL)
		return err
	})
}

// finishCalls stops c and fails the test on any failed call.
func finishCalls(t testing.TB, c *caller) {
	t.Helper()
	c.finish()
	calls, failed := c.snapshot()
	t.Logf("%d calls between children, %d failed", calls, failed)
	if failed > 0 {
		t.Errorf("%d of %d calls between children failed:\n%s", failed, calls, c.failureList())
	}
}

// settledAs waits until m publishes embedder with hash want and the state
// agrees with it: one process per resource, no orphan, no stale record.
func (h *haTopology) settledAs(t testing.TB, m *mothership, want string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "embedder deployed as desired, the records agreeing", func() error {
		r, err := send(http.MethodGet, m.url+"/flash/status", apiKey, nil)
		if err != nil {
			return err
		}
		var s status
		if err := json.Unmarshal(r.Body, &s); err != nil {
			return err
		}
		if got := s.Resources["embedder"].ConfigHash; got != want {
			return fmt.Errorf("embedder published with hash %.12s, want %.12s", got, want)
		}
		if err := m.synced(s, s.Version); err != nil {
			return err
		}
		if n := len(h.w.appPIDs()); n != len(pipelineResources) {
			return fmt.Errorf("%d processes of the app, want %d (one per resource)", n, len(pipelineResources))
		}
		return h.w.audit(s)
	})
}

// TestHALeaderKilledMidDeploy: the leader is killed (SIGKILL) while it
// deploys a change that a follower handed it; another mothership is
// elected and finishes the deploy from the stored desired state, adopting
// what the dead one started: no duplicate, no orphan, no failed call.
func TestHALeaderKilledMidDeploy(t *testing.T) {
	t.Parallel()
	h := startHA(t, 3)
	w := h.w
	li := h.waitLeader(t, -1, 10*time.Second)
	st := h.ms[li].status(t)
	apiURL := st.Resources["api"].EndpointURL
	oldEmbedder := w.endpointOf(t, "embedder")
	calls := callChildren(apiURL)

	changed, want := h.changedEmbedder(t, 7)
	before := w.appPIDs()
	follower := h.ms[(li+1)%len(h.ms)]
	d := follower.deployAsync(t, changed) // 307 to the leader, followed
	pid := w.newPID(t, before, 30*time.Second)
	h.ms[li].kill(t)
	killed := time.Now()
	t.Logf("killed the leader %s after it started pid %d", h.ms[li].url, pid)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the deploy stream did not end after the leader was killed")
	}
	ni := h.waitLeader(t, li, 30*time.Second)
	elected := time.Since(killed)
	h.settledAs(t, h.ms[ni], want, 60*time.Second)
	t.Logf("failover: new leader %s after %s, the deploy finished after %s",
		h.ms[ni].url, elected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if w.alive(oldEmbedder.PID) {
		t.Errorf("the old embedder (pid %d) still runs", oldEmbedder.PID)
	}
	finishCalls(t, calls)
}

// TestHALeaderPausedIsFenced: the leader is stopped (SIGSTOP) past its
// lease; another is elected and deploys; the old one is continued
// (SIGCONT): whatever it tries to record is refused, it steps down, and the
// state stays the new leader's.
func TestHALeaderPausedIsFenced(t *testing.T) {
	t.Parallel()
	h := startHA(t, 3)
	w := h.w
	li := h.waitLeader(t, -1, 10*time.Second)
	old := h.ms[li]
	apiURL := old.status(t).Resources["api"].EndpointURL
	calls := callChildren(apiURL)

	w.signal(t, old.proc.pid, syscall.SIGSTOP)
	ni := h.waitLeader(t, li, 30*time.Second)
	changed, want := h.changedEmbedder(t, 9)
	rep := h.ms[ni].deploy(t, changed, nil)
	if action, status, errMsg, _ := rep.resource(t, "embedder"); status == "failed" {
		t.Fatalf("the new leader's deploy: embedder %s %s: %s", action, status, errMsg)
	}
	desired := h.desiredVersion(t)

	w.signal(t, old.proc.pid, syscall.SIGCONT)
	// At once, before or after it notices: a deploy sent to the old leader
	// is never run by it.
	stale, _ := h.changedEmbedder(t, 11)
	noFollow := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	req, err := http.NewRequest(http.MethodPost, old.url+"/flash/deploy", strings.NewReader(string(stale)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("the deposed leader ran a deploy (200)")
	}
	t.Logf("a deploy sent to the deposed leader at once: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	eventually(t, 30*time.Second, "the old leader stepped down", func() error {
		if logContains(old.proc.log, "leadership lost; stepped down") {
			return nil
		}
		return errors.New("not yet")
	})
	if i, _, err := h.leaderSeen(old); err != nil || i != ni {
		t.Errorf("the old leader's status: leader %d (%v), want %d", i, err, ni)
	}
	if got := h.desiredVersion(t); got != desired {
		t.Errorf("desired state version %d after the old leader woke, want %d", got, desired)
	}
	h.settledAs(t, h.ms[ni], want, 30*time.Second)
	finishCalls(t, calls)
}

// TestHAEtcdMembers: one etcd member killed, everything goes on (a deploy
// too); two killed, the control plane stops cleanly (nobody leads, a deploy
// is refused and records nothing) while calls between children go on; the
// members restarted, it resumes and deploys.
func TestHAEtcdMembers(t *testing.T) {
	t.Parallel()
	h := startHA(t, 3)
	li := h.waitLeader(t, -1, 10*time.Second)
	apiURL := h.ms[li].status(t).Resources["api"].EndpointURL
	calls := callChildren(apiURL)

	if err := h.etcd.Kill(2); err != nil {
		t.Fatal(err)
	}
	changed, want := h.changedEmbedder(t, 5)
	if _, status, errMsg, _ := h.ms[li].deploy(t, changed, nil).resource(t, "embedder"); status == "failed" {
		t.Fatalf("deploy with one etcd member down: embedder %s: %s", status, errMsg)
	}
	h.settledAs(t, h.ms[li], want, 30*time.Second)

	if err := h.etcd.Kill(1); err != nil {
		t.Fatal(err)
	}
	// Without quorum the lease cannot be renewed: the leader steps down and
	// nobody is elected; a deploy is answered with an error, not run.
	eventually(t, 30*time.Second, "the leader stepped down without quorum", func() error {
		if logContains(h.ms[li].proc.log, "leadership lost; stepped down") {
			return nil
		}
		return errors.New("not yet")
	})
	lost, _ := h.changedEmbedder(t, 3)
	r, err := send(http.MethodPost, h.ms[li].url+"/flash/deploy", apiKey, lost)
	if err == nil && r.Code == http.StatusOK && !strings.Contains(string(r.Body), `"failed"`) {
		t.Errorf("a deploy without quorum succeeded: %s", r)
	}
	time.Sleep(3 * time.Second) // calls between children go on meanwhile

	for _, i := range []int{1, 2} {
		if err := h.etcd.Restart(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	ni := h.waitLeader(t, -1, 60*time.Second)
	resumed, want := h.changedEmbedder(t, 4)
	eventually(t, 60*time.Second, "a deploy after quorum came back", func() error {
		r, err := send(http.MethodPost, h.ms[ni].url+"/flash/deploy", apiKey, resumed)
		if err != nil {
			return err
		}
		if r.Code != http.StatusOK {
			return fmt.Errorf("deploy: %s", r)
		}
		return nil
	})
	h.settledAs(t, h.ms[ni], want, 60*time.Second)
	finishCalls(t, calls)
}

// TestHAFailoverFigures measures failover over repeated kills of the leader
// (FLASH_HA_FAILOVERS=N kills; skipped without it): leader killed → a new
// one elected (as the others' status says), and → the deploy it was running
// finished by the new one. It logs p50 and p99; it asserts nothing on time.
func TestHAFailoverFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FLASH_HA_FAILOVERS"))
	if n <= 0 {
		t.Skip("set FLASH_HA_FAILOVERS=N to measure N failovers")
	}
	h := startHA(t, 3)
	w := h.w
	var elected, finished []time.Duration
	for k := range n {
		li := h.waitLeader(t, -1, 60*time.Second)
		h.ms[li].settle(t, 60*time.Second)
		changed, want := h.changedEmbedder(t, 20+k)
		before := w.appPIDs()
		d := h.ms[li].deployAsync(t, changed)
		w.newPID(t, before, 30*time.Second)
		h.ms[li].kill(t)
		killed := time.Now()
		<-d.done
		ni := h.waitLeader(t, li, 60*time.Second)
		elected = append(elected, time.Since(killed))
		h.settledAs(t, h.ms[ni], want, 60*time.Second)
		finished = append(finished, time.Since(killed))
		h.ms[li].start(t) // back as a follower
	}
	t.Logf("failover over %d kills (lease %s): elected p50 %s p99 %s; pending deploy finished p50 %s p99 %s",
		n, haLease, quantile(elected, 0.5), quantile(elected, 0.99), quantile(finished, 0.5), quantile(finished, 0.99))
}

// quantile is the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)].Round(time.Millisecond)
}

// TestHAPropagationFigures measures publish → applied by N sync clients
// (FLASH_HA_PROPAGATION=N; skipped without it), the clients spread over the
// motherships as children are: one mothership on SQLite, then three on a
// three-member etcd cluster (fsync on). A publish is a manifest-only deploy
// (FLASH_PROVIDER=none: record the desired state, publish). It logs p50 and
// p99 over rounds of the time until the last client applied; asserts nothing
// on time.
func TestHAPropagationFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FLASH_HA_PROPAGATION"))
	if n <= 0 {
		t.Skip("set FLASH_HA_PROPAGATION=N to measure propagation to N clients")
	}
	const rounds = 20
	for _, backend := range []string{"sqlite", "etcd"} {
		t.Run(backend, func(t *testing.T) {
			if testing.Short() {
				t.Skip("end-to-end test: skipped with -short")
			}
			var c *etcdcluster.Cluster
			if backend == "etcd" {
				var err error
				if c, err = etcdcluster.Start(t.Context(), filepath.Join(t.TempDir(), "etcd"), 3, etcdcluster.Options{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
			}
			w := newWorld(t, bins.pipeline, "pipeline")
			count, stateURL := 1, "sqlite://"+w.statePath()
			if c != nil {
				count, w.stateURL = 3, c.URL("/flash/pipeline")
				stateURL = w.stateURL
			}
			mf := w.appManifest(t)
			w.writeDesired(t, mf)
			ms := startMotherships(t, w, count, stateURL, "FLASH_PROVIDER=none")
			h := &haTopology{w: w, ms: ms, mf: mf}
			leader := 0
			if c != nil {
				leader = h.waitLeader(t, -1, 60*time.Second)
			}
			ms[leader].settle(t, 60*time.Second)

			var urls []string
			for _, m := range ms {
				urls = append(urls, m.url)
			}
			var (
				mu     sync.Mutex
				counts = map[int64]int{}       // version → clients that applied it
				last   = map[int64]time.Time{} // version → when the last of them did
			)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var transports []*http.Transport
			defer func() {
				cancel()
				wg.Wait()
				for _, tr := range transports {
					tr.CloseIdleConnections()
				}
			}()
			for i := range n {
				tr := &http.Transport{MaxIdleConnsPerHost: 2}
				transports = append(transports, tr)
				s, err := child.NewSync(child.Config{Identity: "bench", Instance: "c" + strconv.Itoa(i),
					MothershipURL: strings.Join(urls, ","), APIKey: apiKey, HTTPClient: &http.Client{Transport: tr},
					Logger: slog.New(slog.DiscardHandler),
					OnApply: func(_ *manifest.Manifest, v int64) {
						mu.Lock()
						counts[v]++
						last[v] = time.Now()
						mu.Unlock()
					}})
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { s.Run(ctx) })
			}
			var took []time.Duration
			for k := range rounds {
				object(t, object(t, mf, "resources"), "embedder")["workersMax"] = 100 + k
				body := encodeJSON(t, mf)
				start := time.Now()
				v := ms[leader].deploy(t, body, nil).Version
				eventually(t, 30*time.Second, "every client applied", func() error {
					mu.Lock()
					defer mu.Unlock()
					if got := counts[v]; got < n {
						return fmt.Errorf("%d of %d applied version %d", got, n, v)
					}
					return nil
				})
				mu.Lock()
				took = append(took, last[v].Sub(start))
				mu.Unlock()
			}
			t.Logf("%s (%d motherships): publish → applied by %d clients, the last one: p50 %s p99 %s over %d publishes",
				backend, count, n, quantile(took, 0.5), quantile(took, 0.99), rounds)
		})
	}
}
