package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/flash-go/flash/bench"
)

// runBench measures flash against its baselines on this machine.
func runBench(e *env) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "short run (about a minute on 2 cores) instead of the full one")
	asJSON := fs.Bool("json", false, "print one JSON object of figures instead of the table")
	out := fs.String("out", "", "also write each curve as DIR/NAME.svg and DIR/NAME.csv, with table.txt and result.json")
	only := fs.String("only", "", "comma-separated groups to run: "+strings.Join(bench.Groups(), ", "))
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (both ends of every in-process figure) to FILE, and each helper process's to FILE.<role>-<pid>")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to FILE")
	pipeline := fs.String("pipeline", "", "built examples/pipeline binary for topology_up_ms (default: build it from the source)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash bench [--quick] [--json] [--out DIR] [--only GROUPS] [--pipeline BINARY]")
		fmt.Fprintln(e.stderr, "\nMeasures flash against its baselines here, on loopback; progress goes to stderr.")
		fmt.Fprintln(e.stderr, "Run it from a clone of flash: topology_up_ms builds examples/pipeline.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fail(e, usageError{fmt.Sprintf("bench takes no arguments, got %q", pos)})
	}
	cfg := bench.Config{Mode: bench.Full, Pipeline: *pipeline, Progress: e.stderr}
	if *quick {
		cfg.Mode = bench.Quick
	}
	if *only != "" {
		for g := range strings.SplitSeq(*only, ",") {
			g = strings.TrimSpace(g)
			if !slices.Contains(bench.Groups(), g) {
				return fail(e, usageError{fmt.Sprintf("--only: unknown group %q; want some of %s", g, strings.Join(bench.Groups(), ", "))})
			}
			cfg.Only = append(cfg.Only, g)
		}
	}
	if *cpuProfile != "" {
		cfg.CPUProfile = *cpuProfile
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(e, err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(e, err)
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	res, err := bench.Run(e.ctx, cfg)
	if res == nil {
		return fail(e, err)
	}
	if *out != "" {
		if werr := res.WriteFiles(*out); werr != nil {
			return fail(e, werr)
		}
		fmt.Fprintf(e.stderr, "bench: wrote %d curves to %s\n", len(res.Curves), *out)
	}
	if *asJSON {
		writeJSON(e, res.Figures)
	} else {
		res.WriteTable(e.stdout)
	}
	if err != nil {
		return fail(e, err)
	}
	return exitOK
}
