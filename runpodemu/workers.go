package runpodemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flash-go/flash/internal/scaler"
)

// Worker states, as GET /v2/serverless/{id}/workers names them.
const (
	workerInitializing = "INITIALIZING"
	workerIdle         = "IDLE"
	workerRunning      = "RUNNING"
	workerUnhealthy    = "UNHEALTHY"
)

const (
	maxLogBytes       = 10 << 20 // per worker log file
	keptLogs          = 20       // worker log files kept per endpoint
	maxCrashBackoff   = 30 * time.Second
	defaultQueueIdle  = 5 // s: idle timeout of a QUEUE + REQUEST_COUNT endpoint, which has none in v2 (v1's default)
	volumeMountPath   = "/runpod-volume"
	emulatorVolumeEnv = "RUNPOD_EMULATOR_VOLUME_PATH"
)

// worker is one local process serving an endpoint. Guarded by Emulator.mu.
type worker struct {
	id, key string
	run     *endpointRun
	version int64
	image   string
	dir     string // scratch directory, the container's filesystem
	logPath string
	cmd     *exec.Cmd

	started   time.Time
	firstPoll time.Time // first job-take: INITIALIZING → IDLE
	firstTake time.Time // first job handed over (cold start ends)
	lastSeen  time.Time // last call of the worker API
	lastBusy  time.Time // last time it finished work
	pinged    bool
	unhealthy string // reason a ping reported status=unhealthy

	jobs     map[string]*job // jobs it holds
	toStop   []string        // cancelled or timed-out jobs it has not been told about
	stopWake chan struct{}   // closed and replaced when toStop grows
	recycle  bool            // a result asked stopPod

	stopping bool
	stopCh   chan struct{} // closed when the worker is being stopped
	exited   chan struct{} // closed when the process has ended

	// Load-balanced workers only.
	port, healthPort int
	healthPath       string
	ready            bool // health check answered 200
	inflight         int
}

func (w *worker) statusLocked() string {
	switch {
	case w.unhealthy != "":
		return workerUnhealthy
	case len(w.jobs) > 0 || w.inflight > 0:
		return workerRunning
	case w.port != 0 && w.ready, w.port == 0 && !w.firstPoll.IsZero():
		return workerIdle
	}
	return workerInitializing
}

func (w *worker) busy() bool { return len(w.jobs) > 0 || w.inflight > 0 }

func (w *worker) wakeStop() {
	close(w.stopWake)
	w.stopWake = make(chan struct{})
}

func (run *endpointRun) sortedWorkers() []*worker {
	ws := make([]*worker, 0, len(run.workers))
	for _, w := range run.workers {
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b *worker) int { return a.started.Compare(b.started) })
	return ws
}

// supervise runs the scaler, the sweeper and lost-worker detection every tick.
func (e *Emulator) supervise() {
	defer e.loops.Done()
	t := time.NewTicker(e.cfg.Tick)
	defer t.Stop()
	var swept time.Time
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		now := time.Now()
		// Sweeping scans every kept job: once a second is precise enough
		// for timeouts of seconds and retention of minutes.
		sweep := now.Sub(swept) >= time.Second
		if sweep {
			swept = now
		}
		for _, run := range e.runs {
			if sweep {
				e.sweepLocked(run, now)
			}
			for _, w := range run.workers {
				if w.pinged && !w.stopping && now.Sub(w.lastSeen) > e.cfg.LostAfter {
					e.log.Warn("worker lost: no ping", "endpoint", run.rec.ID, "worker", w.id)
					e.stopWorkerLocked(w, "lost")
				}
			}
			e.scaleLocked(run, now)
		}
		e.mu.Unlock()
	}
}

// policy is the endpoint's scaler configuration.
func policy(ep Endpoint) scaler.Policy {
	p := scaler.Policy{Kind: scaler.Kind(ep.Scaling.Type), Min: int(ep.Workers.Min), Max: int(ep.Workers.Max)}
	switch {
	case ep.Scaling.QueueDelay != nil:
		p.Value = *ep.Scaling.QueueDelay
	case ep.Scaling.RequestCount != nil:
		p.Value = float64(*ep.Scaling.RequestCount)
	}
	return p
}

func idleTimeout(ep Endpoint) time.Duration {
	if ep.Workers.IdleTimeout != nil {
		return time.Duration(*ep.Workers.IdleTimeout) * time.Second
	}
	return defaultQueueIdle * time.Second
}

// scaleLocked starts, replaces and stops workers of one endpoint.
func (e *Emulator) scaleLocked(run *endpointRun, now time.Time) {
	if run.deleted || e.closed {
		return
	}
	rec := run.rec
	var alive []*worker
	for _, w := range run.sortedWorkers() {
		if !w.stopping {
			alive = append(alive, w)
		}
	}
	// A worker on an older version is replaced once it has no work; a
	// busy one finishes first (rolling release, RUNPOD_REST_V2.md §6.4).
	alive = slices.DeleteFunc(alive, func(w *worker) bool {
		if w.version != rec.Version && !w.busy() {
			e.stopWorkerLocked(w, "outdated")
			return true
		}
		return false
	})
	p := policy(rec.Endpoint)
	// Idle workers above the minimum stop after the idle timeout; above
	// the maximum (workersMax lowered, or 0 to drain) at once.
	ws := make([]scaler.Worker, len(alive))
	for i, w := range alive {
		ws[i] = scaler.Worker{Busy: w.busy(), IdleFor: now.Sub(w.lastBusy)}
	}
	surplus := p.Surplus(ws, idleTimeout(rec.Endpoint))
	for _, i := range surplus {
		e.stopWorkerLocked(alive[i], "idle")
	}
	alive = slices.DeleteFunc(alive, func(w *worker) bool { return w.stopping })
	load := scaler.Load{Workers: len(alive)}
	if rec.Type == typeLB {
		load.Queued, load.InProgress = run.lbWaiting, run.lbInflight
	} else {
		for _, j := range run.queue {
			if j.LowPriority {
				continue // low-priority jobs never trigger a scale-up
			}
			if load.Queued == 0 {
				load.OldestWait = now.Sub(j.Created)
			}
			load.Queued++
		}
		for _, w := range alive {
			load.InProgress += len(w.jobs)
		}
	}
	want := p.Desired(load)
	if want > len(alive) && !e.imageLocked(run) {
		return // the image is being pulled; its end scales again
	}
	for n := len(alive); n < want && !now.Before(run.nextStart); n++ {
		if err := e.startWorkerLocked(run); err != nil {
			run.startErr = err.Error()
			run.crashes++
			run.nextStart = now.Add(crashBackoff(run.crashes))
			e.log.Error("worker start failed", "endpoint", rec.ID, "err", err)
			return
		}
	}
}

// crashBackoff is the pause before starting a worker after n consecutive
// crashes: none after the first, then 1 s doubling to 30 s.
func crashBackoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	return min(time.Second<<min(n-2, 5), maxCrashBackoff)
}

// command returns how the endpoint's workers are started, through the
// shell in the worker's scratch directory: the pulled image's entrypoint
// with args, or, when the image could not be pulled, args alone.
func (e *Emulator) command(run *endpointRun) (string, []string, error) {
	ep := run.rec.Endpoint
	if st := run.img; st != nil && st.img != nil {
		return imageCommand(st.img, ep.Args), st.img.Env, nil
	}
	if strings.TrimSpace(ep.Args) == "" {
		why := "not pulled yet"
		if st := run.img; st != nil && st.err != nil {
			why = st.err.Error()
		}
		return "", nil, fmt.Errorf("image %q cannot be run (%s) and args is empty: set args to the worker's start command", ep.Image, why)
	}
	return ep.Args, nil, nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (e *Emulator) startWorkerLocked(run *endpointRun) error {
	ep := run.rec.Endpoint
	cmdline, imageEnv, err := e.command(run)
	if err != nil {
		return err
	}
	w := &worker{id: randomID(14), key: "rpw_" + randomID(32), run: run, version: run.rec.Version, image: ep.Image,
		jobs: map[string]*job{}, stopWake: make(chan struct{}), stopCh: make(chan struct{}), exited: make(chan struct{})}
	w.dir = filepath.Join(e.cfg.Dir, "workers", w.id)
	logDir := filepath.Join(e.cfg.Dir, "logs", ep.ID)
	w.logPath = filepath.Join(logDir, w.id+".log")
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	pruneLogs(logDir)
	if ep.Type == typeLB {
		w.healthPath = ep.Env["HEALTH_CHECK_PATH"]
		if w.healthPath == "" {
			w.healthPath = "/ping"
		}
		if w.port, err = freePort(); err != nil {
			return fmt.Errorf("port: %w", err)
		}
		w.healthPort = w.port
		if hp := ep.Env["PORT_HEALTH"]; hp != "" && hp != ep.Env["PORT"] {
			if w.healthPort, err = freePort(); err != nil {
				return fmt.Errorf("port: %w", err)
			}
		}
	}
	vols, err := e.mountVolumes(w, ep)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", cmdline)
	cmd.Dir = w.dir
	cmd.Env = e.workerEnv(w, ep, imageEnv, vols)
	lw := &cappedWriter{f: logf, left: maxLogBytes}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so that stopping reaches the shell's children
	cmd.WaitDelay = time.Second                           // a child that keeps the log pipe open must not hold the reaper
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(w.dir)
		return fmt.Errorf("start %q: %w", cmdline, err)
	}
	w.cmd = cmd
	w.started, w.lastSeen, w.lastBusy = time.Now(), time.Now(), time.Now()
	run.workers[w.id] = w
	e.byKey[w.key] = w
	run.startErr = ""
	e.log.Info("worker started", "endpoint", ep.ID, "worker", w.id, "version", w.version, "pid", cmd.Process.Pid, "log", w.logPath)
	e.loops.Add(1)
	go e.reap(w, logf)
	if w.port != 0 {
		e.loops.Add(1)
		go e.checkHealth(w)
	}
	return nil
}

// mountVolumes links each network volume into the scratch directory at
// Runpod's mount path (runpod-volume, as /runpod-volume in a container) and
// returns the absolute path of the first, for the environment.
func (e *Emulator) mountVolumes(w *worker, ep Endpoint) (string, error) {
	if len(ep.NetworkVolumes) == 0 {
		return "", nil
	}
	// Runpod gives each worker the volume of its data center; here the
	// first listed stands for that one.
	target := e.volumeDir(ep.NetworkVolumes[0])
	if err := os.MkdirAll(target, 0o700); err != nil {
		return "", fmt.Errorf("volume: %w", err)
	}
	if err := os.Symlink(target, filepath.Join(w.dir, strings.TrimPrefix(volumeMountPath, "/"))); err != nil {
		return "", fmt.Errorf("volume: %w", err)
	}
	return target, nil
}

// workerEnv is every variable Runpod injects (RUNPOD.md §4.1, §5), on top
// of the endpoint's env, on top of a minimal host environment (a container
// would not see the host's).
func (e *Emulator) workerEnv(w *worker, ep Endpoint, imageEnv []string, volume string) []string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ", "USER"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for _, kv := range imageEnv {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "PATH" { // the image's PATH names its own root
			env[k] = v
		}
	}
	for k, v := range ep.Env {
		env[k] = v
	}
	gpu := gpuName(ep)
	q := "?gpu=" + strings.ReplaceAll(gpu, " ", "+")
	v2 := e.url + "/v2/" + ep.ID
	cpus := "0"
	if len(ep.CPU) > 0 {
		cpus = strconv.FormatInt(ep.CPU[0].VCPUCount, 10)
	}
	injected := map[string]string{
		"RUNPOD_POD_ID":                  w.id,
		"RUNPOD_ENDPOINT_ID":             ep.ID,
		"RUNPOD_AI_API_KEY":              w.key,
		"RUNPOD_API_KEY":                 e.key,
		"RUNPOD_WEBHOOK_GET_JOB":         v2 + "/job-take/$ID" + q,
		"RUNPOD_WEBHOOK_POST_OUTPUT":     v2 + "/job-done/$RUNPOD_POD_ID/$ID" + q,
		"RUNPOD_WEBHOOK_POST_STREAM":     v2 + "/job-stream/$RUNPOD_POD_ID/$ID" + q,
		"RUNPOD_WEBHOOK_PING":            v2 + "/ping/$RUNPOD_POD_ID" + q,
		"RUNPOD_PING_INTERVAL":           strconv.FormatInt(e.cfg.PingInterval.Milliseconds(), 10),
		"RUNPOD_POD_HOSTNAME":            w.id + "-emulator",
		"RUNPOD_GPU_COUNT":               strconv.FormatInt(gpuCount(ep), 10),
		"RUNPOD_CPU_COUNT":               cpus,
		"RUNPOD_DC_ID":                   dataCenterOf(ep),
		"RUNPOD_PUBLIC_IP":               "127.0.0.1",
		"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", // the fitness checks dial 8.8.8.8
		"RUNPOD_SKIP_GPU_CHECK":          "true",
	}
	if ep.GPU != nil {
		injected["CUDA_VERSION"] = "12.4"
		if ep.GPU.MinCudaVersion != nil {
			injected["CUDA_VERSION"] = *ep.GPU.MinCudaVersion
		}
	}
	if volume != "" {
		injected["RUNPOD_VOLUME_ID"] = ep.NetworkVolumes[0]
		injected[emulatorVolumeEnv] = volume
	}
	if w.port != 0 {
		injected["PORT"] = strconv.Itoa(w.port)
		injected["PORT_HEALTH"] = strconv.Itoa(w.healthPort)
		injected["HEALTH_CHECK_PATH"] = w.healthPath
	}
	for k, v := range injected {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func gpuName(ep Endpoint) string {
	if ep.GPU == nil || len(ep.GPU.Pools) == 0 {
		return "CPU"
	}
	for _, t := range gpuPools[ep.GPU.Pools[0]] {
		if !slices.Contains(ep.GPU.ExcludedTypes, t) {
			return t
		}
	}
	return ep.GPU.Pools[0]
}

func gpuCount(ep Endpoint) int64 {
	if ep.GPU == nil {
		return 0
	}
	return ep.GPU.Count
}

func dataCenterOf(ep Endpoint) string {
	if len(ep.DataCenterIDs) > 0 {
		return ep.DataCenterIDs[0]
	}
	return "EU-RO-1"
}

// stopWorkerLocked ends a worker as Runpod does: its long polls are
// released at once, SIGTERM lets it finish its jobs, SIGKILL follows after
// the grace period.
func (e *Emulator) stopWorkerLocked(w *worker, reason string) {
	if w.stopping {
		return
	}
	w.stopping = true
	close(w.stopCh)
	w.run.wake()
	e.log.Info("worker stopping", "endpoint", w.run.rec.ID, "worker", w.id, "reason", reason)
	pid := w.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		t := time.NewTimer(e.cfg.StopGrace)
		defer t.Stop()
		select {
		case <-w.exited:
		case <-t.C:
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}()
}

// reap waits for a worker's process to end, requeues the jobs it held and,
// when the end was not asked for, counts a crash.
func (e *Emulator) reap(w *worker, logf *os.File) {
	defer e.loops.Done()
	err := w.cmd.Wait()
	logf.Close()
	// Whatever the shell started goes with it.
	syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	e.mu.Lock()
	close(w.exited)
	run := w.run
	delete(run.workers, w.id)
	delete(e.byKey, w.key)
	requeued := 0
	for _, j := range w.jobs {
		if j.Status == statusInProgress && j.Worker == w.id {
			run.requeueLocked(j)
			requeued++
		}
	}
	clear(w.jobs)
	crashed := !w.stopping
	if crashed {
		// Its requests may still be in flight here: they must not take jobs.
		w.stopping = true
		close(w.stopCh)
	}
	if crashed {
		run.crashes++
		run.nextStart = time.Now().Add(crashBackoff(run.crashes))
		e.log.Warn("worker crashed", "endpoint", run.rec.ID, "worker", w.id, "err", exitText(err),
			"requeued", requeued, "log", w.logPath)
	} else {
		e.log.Info("worker stopped", "endpoint", run.rec.ID, "worker", w.id, "requeued", requeued)
	}
	run.wake()
	if !e.closed {
		e.scaleLocked(run, time.Now())
	}
	e.mu.Unlock()
	os.RemoveAll(w.dir)
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// pruneLogs keeps the newest worker logs of an endpoint.
func pruneLogs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) < keptLogs {
		return
	}
	type aged struct {
		name string
		mod  time.Time
	}
	var files []aged
	for _, de := range entries {
		if info, err := de.Info(); err == nil {
			files = append(files, aged{de.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b aged) int { return b.mod.Compare(a.mod) })
	for _, f := range files[min(len(files), keptLogs-1):] {
		os.Remove(filepath.Join(dir, f.name))
	}
}

// cappedWriter writes to a file until its budget is spent, then drops.
type cappedWriter struct {
	f    *os.File
	left int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return len(p), nil
	}
	n := min(int64(len(p)), c.left)
	c.left -= n
	if _, err := c.f.Write(p[:n]); err != nil {
		return len(p), nil // a full disk must not kill the worker
	}
	if c.left == 0 {
		c.f.WriteString("\n[log truncated by the emulator]\n")
	}
	return len(p), nil
}
