// Package bench is flash's reproducible performance harness, behind
// `flash bench`. It measures flash's own figures on this machine, each beside
// its obvious baseline in the same run: a Func.Call routed in-process against
// a direct call, a cross-endpoint call against a raw net/http POST to a bare
// handler, GET /manifest against a bare handler serving the same bytes, and
// control-plane figures (manifest propagation, fan-in, reconciliation,
// topology start) against their targets.
//
// The machine may be shared and noisy, so a figure and its baseline are
// measured in interleaved rounds (alternating which goes first) and the
// median over rounds is reported; ratios are the median of the per-round
// ratios. Every loop is bounded in count and in time, and all traffic stays
// on loopback.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Mode says how long and how large a run is.
type Mode int

// Modes, from the fastest.
const (
	// Smoke produces every figure with the smallest sizes that still mean
	// something (one or two rounds): for tests.
	Smoke Mode = iota
	// Quick is `flash bench --quick`: at most about a minute on 2 cores.
	Quick
	// Full is `flash bench`: more rounds and longer windows, a few minutes.
	Full
)

// String returns the mode's name: smoke, quick or full.
func (m Mode) String() string {
	switch m {
	case Smoke:
		return "smoke"
	case Quick:
		return "quick"
	}
	return "full"
}

// Groups of figures, runnable alone with Config.Only.
const (
	GroupLocal       = "local"       // route_local_*, direct_call_ns
	GroupRemote      = "remote"      // remote_* and raw_http_*, remote curves
	GroupManifest    = "manifest"    // manifest_get_*, raw_get_rps, manifest size curve
	GroupPropagation = "propagation" // propagation_*, propagation curve
	GroupFanin       = "fanin"       // fanin_upstream_fetches_k1000
	GroupReconcile   = "reconcile"   // reconcile_unchanged_*
	GroupTopology    = "topology"    // topology_up_ms
	GroupMemory      = "memory"      // memory of parked long polls
	GroupDeploy      = "deploy"      // deploy_* (a fleet of resources on the local provider)
)

// Groups lists every group in the order a run measures them.
func Groups() []string {
	return []string{GroupLocal, GroupRemote, GroupManifest, GroupPropagation, GroupFanin, GroupReconcile, GroupMemory, GroupTopology, GroupDeploy}
}

// Config configures a run. The zero value is a Smoke run of every group.
type Config struct {
	// Mode sets rounds, windows and sizes.
	Mode Mode
	// Only, when not empty, restricts the run to these groups (see Groups).
	Only []string
	// Pipeline is a built examples/pipeline binary for topology_up_ms. Empty
	// means: build it from the module source found from SourceDir.
	Pipeline string
	// SourceDir is where the flash module source is looked for (it or a
	// parent holding go.mod). Default: the working directory.
	SourceDir string
	// Self is the program re-executed as a helper process (load generators,
	// sync clients); it must call MaybeHelper first thing. Default: this
	// program (os.Executable).
	Self string
	// CPUProfile, when set, makes every helper process write a CPU profile
	// of its run to CPUProfile.<role>-<pid> (the caller profiles its own
	// process).
	CPUProfile string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// Logger receives the logs of the flash parts under test; nil formats
	// them at Info and discards them (as a production endpoint would format
	// them, without the cost of the terminal).
	Logger *slog.Logger
}

// params are the sizes and durations of one mode.
type params struct {
	rounds        int           // interleaved rounds of a figure and its baseline
	localCalls    int           // calls per round of route_local
	window        time.Duration // measuring time per side per round of a load test
	concurrencies []int         // remote curve
	propN         []int         // propagation curve
	propRounds    int           // publishes per N
	sizes         []int         // manifest size curve, in functions
	sizeWindow    time.Duration // GET latency window per size, side and round
	parked        []int         // memory curve
	memRounds     int
	fanRounds     int
	topoRounds    int
	getConc       int // concurrency of the manifest_get_rps load
	fleet         int // resources of the deploy figures
}

func paramsFor(m Mode) params {
	switch m {
	case Smoke:
		return params{rounds: 2, localCalls: 20_000, window: 40 * time.Millisecond,
			concurrencies: []int{1, 64}, propN: []int{100, 500}, propRounds: 1,
			sizes: []int{10, 100}, sizeWindow: 20 * time.Millisecond, parked: []int{10, 50}, memRounds: 1,
			fanRounds: 1, topoRounds: 1, getConc: 16, fleet: 5}
	case Quick:
		return params{rounds: 5, localCalls: 1_000_000, window: 200 * time.Millisecond,
			concurrencies: []int{1, 8, 64, 256}, propN: []int{10, 100, 500, 1000}, propRounds: 5,
			sizes: []int{10, 100, 1000, 10000}, sizeWindow: 100 * time.Millisecond, parked: []int{100, 1000, 5000}, memRounds: 1,
			fanRounds: 3, topoRounds: 1, getConc: 32, fleet: 100}
	}
	return params{rounds: 11, localCalls: 2_000_000, window: 500 * time.Millisecond,
		concurrencies: []int{1, 8, 64, 256}, propN: []int{10, 100, 500, 1000}, propRounds: 15,
		sizes: []int{10, 100, 1000, 10000}, sizeWindow: 250 * time.Millisecond, parked: []int{100, 1000, 5000}, memRounds: 3,
		fanRounds: 5, topoRounds: 5, getConc: 32, fleet: 100}
}

// Figure is one measured number.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Target is the goal, e.g. "<= 20"; empty when the figure has none.
	Target string `json:"target,omitempty"`
	// Met says whether Value meets Target (nil without a target).
	Met *bool `json:"met,omitempty"`
	// About says what was measured.
	About string `json:"about"`
}

// Figures is an ordered list of figures; it encodes to JSON as one object
// of name → value, in order.
type Figures []Figure

// MarshalJSON writes {"name": value, …}; values not finite are null.
func (fs Figures) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(f.Name)
		b.Write(name)
		b.WriteByte(':')
		b.WriteString(jsonNumber(f.Value))
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

func jsonNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	return fmt.Sprint(roundSig(v))
}

// roundSig keeps 4 significant digits (and integers whole), which is all a
// noisy machine can vouch for.
func roundSig(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	if math.Abs(v) >= 1000 {
		return math.Round(v)
	}
	p := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

// Get returns the named figure.
func (fs Figures) Get(name string) (Figure, bool) {
	i := slices.IndexFunc(fs, func(f Figure) bool { return f.Name == name })
	if i < 0 {
		return Figure{}, false
	}
	return fs[i], true
}

// Machine describes where a run happened.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	GoVersion  string `json:"go_version"`
	Revision   string `json:"revision,omitempty"` // VCS revision of this build, when known
}

// Result is the outcome of a run.
type Result struct {
	Date     time.Time     `json:"date"`
	Mode     string        `json:"mode"`
	Machine  Machine       `json:"machine"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"` // Duration, for JSON
	Figures  Figures       `json:"figures"`
	Curves   []Curve       `json:"curves"`
	// Notes are remarks a reader needs (what was skipped, how something was measured).
	Notes []string `json:"notes,omitempty"`
	// Errors are the groups that failed, with why.
	Errors []string `json:"errors,omitempty"`
}

// RequiredFigures returns the figure names `flash bench` promises in every mode.
func RequiredFigures() []string { return slices.Clone(requiredFigures) }

var requiredFigures = []string{
	"route_local_ns", "direct_call_ns", "route_local_allocs",
	"remote_call_us_c1", "raw_http_us_c1", "remote_overhead_ratio_c1",
	"remote_call_us_c64", "raw_http_us_c64", "remote_overhead_ratio_c64",
	"remote_overhead_ratio_inproc_c1", "remote_overhead_ratio_inproc_c64",
	"raw_spec_http_us_c1", "remote_protocol_ratio_c1", "raw_spec_http_us_c64", "remote_protocol_ratio_c64",
	"manifest_get_rps", "raw_get_rps", "manifest_get_ratio",
	"propagation_p50_ms_n100", "propagation_p99_ms_n100", "propagation_p50_ms_n500", "propagation_p99_ms_n500",
	"propagation_p99_ms_inproc_n100", "propagation_p99_ms_inproc_n500", "parked_poll_ratio",
	"fanin_upstream_fetches_k1000", "reconcile_unchanged_provider_calls", "topology_up_ms",
	"deploy_all_up_ms", "deploy_resource_p99_ms", "deploy_child_idle_rss_mib",
}

// targets are the goals of the figures that have one.
var targets = map[string]target{
	"route_local_ns":                     {"<=", 20},
	"route_local_allocs":                 {"=", 0},
	"route_local_overhead_ns":            {"<=", 3},
	"remote_overhead_ratio_c1":           {"<=", 1.2},
	"remote_overhead_ratio_c64":          {"<=", 1.2},
	"manifest_get_ratio":                 {">=", 0.95},
	"manifest_get_p99_ratio":             {"<=", 1.1},
	"manifest_parse_ratio_f1000":         {"<=", 2},
	"parked_poll_ratio":                  {"<=", 1.1},
	"propagation_p99_ms_n100":            {"<=", 10},
	"propagation_p99_ms_n500":            {"<=", 50},
	"fanin_upstream_fetches_k1000":       {"=", 1},
	"reconcile_unchanged_provider_calls": {"=", 0},
	"topology_up_ms":                     {"<=", 3000},
}

type target struct {
	op    string
	value float64
}

func (t target) String() string { return t.op + " " + fmt.Sprint(t.value) }

func (t target) met(v float64) bool {
	switch t.op {
	case "<=":
		return v <= t.value
	case ">=":
		return v >= t.value
	}
	return v == t.value
}

// runner carries one run's state.
type runner struct {
	cfg    Config
	p      params
	log    *slog.Logger
	tmp    string
	res    *Result
	stderr io.Writer
}

// step is one group's measurement.
type step struct {
	group string
	run   func(ctx context.Context) error
}

// Run measures every group cfg asks for and returns what it measured. A
// group that fails is recorded in Result.Errors and the run goes on; the
// error joins those failures. Missed targets are not errors.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	for _, g := range cfg.Only {
		if !slices.Contains(Groups(), g) {
			return nil, fmt.Errorf("bench: unknown group %q (want one of %s)", g, strings.Join(Groups(), ", "))
		}
	}
	start := time.Now()
	tmp, err := os.MkdirTemp("", "flash-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	r := &runner{cfg: cfg, p: paramsFor(cfg.Mode), log: log, tmp: tmp, stderr: progress,
		res: &Result{Date: start.UTC(), Mode: cfg.Mode.String(), Machine: machine()}}

	steps := []step{
		{GroupLocal, r.local},
		{GroupRemote, r.remote},
		{GroupManifest, r.manifestGet},
		{GroupPropagation, r.propagation},
		{GroupFanin, r.fanin},
		{GroupReconcile, r.reconcile},
		{GroupMemory, r.memory},
		{GroupTopology, r.topology},
		{GroupDeploy, r.deploy},
	}
	var errs []error
	for _, s := range steps {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, s.group) {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		t0 := time.Now()
		r.progress("%s …", s.group)
		if err := s.run(ctx); err != nil {
			err = fmt.Errorf("%s: %w", s.group, err)
			r.res.Errors = append(r.res.Errors, err.Error())
			errs = append(errs, err)
			r.progress("%s failed after %s: %v", s.group, time.Since(t0).Round(time.Millisecond), err)
			continue
		}
		r.progress("%s done in %s", s.group, time.Since(t0).Round(time.Millisecond))
	}
	r.res.Duration = time.Since(start)
	r.res.Seconds = math.Round(r.res.Duration.Seconds()*10) / 10
	return r.res, errors.Join(errs...)
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.stderr, "bench: "+format+"\n", args...)
}

// figure records a figure, checking it against its target. A value that is
// not a finite number was not measured: it is recorded as an error instead.
func (r *runner) figure(name string, v float64, unit, about string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		r.res.Errors = append(r.res.Errors, fmt.Sprintf("%s: no measurement (%v)", name, v))
		return
	}
	f := Figure{Name: name, Value: v, Unit: unit, About: about}
	if t, ok := targets[name]; ok {
		f.Target = t.String()
		met := t.met(roundSig(v))
		f.Met = &met
	}
	r.res.Figures = append(r.res.Figures, f)
}

func (r *runner) curve(c Curve) { r.res.Curves = append(r.res.Curves, c) }

func (r *runner) note(format string, args ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}

// Missing returns the required figures r lacks.
func (res *Result) Missing() []string {
	var out []string
	for _, n := range requiredFigures {
		if _, ok := res.Figures.Get(n); !ok {
			out = append(out, n)
		}
	}
	return out
}
