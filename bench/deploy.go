package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash"
)

// fleetName is the app the deploy figures start: n queue resources, one
// function each.
const fleetName = "fleet"

// deployLimit bounds a fleet's start (100 processes on a busy machine).
const deployLimit = 5 * time.Minute

// fleetApp is the app of the deploy figures: resources r0…r<n-1>, each
// serving f<i> (the measured function).
func fleetApp(n int) *flash.App {
	app := flash.NewApp(fleetName)
	for i := range n {
		flash.Register(app.Queue("r"+strconv.Itoa(i), flash.ResourceConfig{}), "f"+strconv.Itoa(i), work)
	}
	return app
}

// appHelper runs the fleet app (FLASH_BENCH_RESOURCES resources) in the role
// its environment gives, as flash.App.Main does; the local provider starts
// its children as the same program with the same variables, so they are
// fleet children. It never returns.
func appHelper() error {
	n, err := strconv.Atoi(os.Getenv("FLASH_BENCH_RESOURCES"))
	if err != nil || n < 1 {
		return fmt.Errorf("app helper: FLASH_BENCH_RESOURCES=%q: want a positive number", os.Getenv("FLASH_BENCH_RESOURCES"))
	}
	fleetApp(n).Main()
	return nil
}

// deploy measures a deploy of the fleet (100 resources in quick and full
// mode) on the local provider: a mothership of the bench program in its app
// role, FLASH_MAX_RESOURCES raised to the fleet's size, times to every
// resource deployed and healthy; each resource's own time runs from its
// process's start to the status showing it deployed.
func (r *runner) deploy(ctx context.Context) error {
	self := r.cfg.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
	}
	n := r.p.fleet
	names := make([]string, n)
	for i := range n {
		names[i] = "r" + strconv.Itoa(i)
	}
	cmd := exec.Command(self)
	cmd.Env = []string{HelperEnv + "=" + roleApp, "FLASH_BENCH_RESOURCES=" + strconv.Itoa(n), "FLASH_MAX_RESOURCES=" + strconv.Itoa(max(n, 32))}
	r.progress("deploying %d resources on the local provider", n)
	up, err := r.upOnce(ctx, appRun{cmd: cmd, app: fleetName, names: names, dir: "deploy", limit: deployLimit})
	if err != nil {
		return err
	}
	per := make([]float64, 0, len(up.per))
	for _, ms := range up.per {
		per = append(per, ms)
	}
	if len(per) < n {
		r.note("deploy_resource_*: the start time of %d of %d processes could not be read from /proc", n-len(per), n)
	}
	about := fmt.Sprintf("%d queue resources, local provider (parallelism %d), one process each", n, 4)
	r.figure("deploy_all_up_ms", up.ms, "ms", "mothership start → every resource deployed and healthy, "+about)
	if len(per) > 0 {
		r.figure("deploy_resource_p50_ms", Percentile(per, 50), "ms", "one resource: its process's start → GET /flash/status shows it deployed (median), "+about)
		r.figure("deploy_resource_p99_ms", Percentile(per, 99), "ms", "the same, p99")
	}
	if len(up.rss) > 1 {
		r.figure("deploy_child_idle_rss_mib", Median(up.rss[1:]), "MiB", "resident memory of an idle child of the fleet, 1 s after all are up, median over children")
	}
	return nil
}

// perResource is, for each child process serving a resource, the time in
// ms from its start (from /proc, relative to the mothership's start at t0)
// to seen[resource]. Processes whose start or resource cannot be read are
// left out (Linux only).
func perResource(mothership int, t0 time.Time, children []int, seen map[string]time.Time) map[string]float64 {
	out := map[string]float64{}
	msTicks, ok := startTicks(mothership)
	if !ok {
		return out
	}
	for _, pid := range children {
		ticks, ok := startTicks(pid)
		res := resourceOf(pid)
		at, up := seen[res]
		if !ok || !up {
			continue
		}
		started := t0.Add(time.Duration(ticks-msTicks) * time.Second / clockTicks)
		out[res] = float64(at.Sub(started)) / float64(time.Millisecond)
	}
	return out
}

// clockTicks is the unit of /proc/PID/stat's start time (USER_HZ, 100 on
// Linux).
const clockTicks = 100

// startTicks reads a process's start time, in clock ticks since boot.
func startTicks(pid int) (int64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 { // starttime is field 22, the 20th after the name
		return 0, false
	}
	v, err := strconv.ParseInt(f[19], 10, 64)
	return v, err == nil
}

// resourceOf reads FLASH_RESOURCE_NAME from a process's environment.
func resourceOf(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	for kv := range bytes.SplitSeq(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("FLASH_RESOURCE_NAME=")); ok {
			return string(v)
		}
	}
	return ""
}
