package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
)

func runUndeploy(e *env) int {
	fs := flag.NewFlagSet("flash undeploy", flag.ContinueOnError)
	ms := fs.String("mothership", "", mothershipFlagHelp)
	app := fs.String("app", "", "the app whose endpoints to remove (default: the app `flash run` runs here, else the project_name of "+buildDir+"/"+manifest.FileName+")")
	asJSON := fs.Bool("json", false, "print progress events and the report as JSON lines")
	prov := fs.String("provider", "", "runpod: remove the app's endpoints on Runpod, the mothership's last")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash undeploy [--mothership URL] [--app NAME] [--json]\n\n"+
			"Removes this app's endpoints, and nothing else, through its mothership. When no mothership\n"+
			"is named and no `flash run` runs here, it stops the endpoints recorded in the app's local\n"+
			"state ("+layout.Root+"/apps/NAME/) directly.")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 0 {
		return fail(e, usageError{"undeploy: takes no arguments"})
	}
	name, err := targetApp("undeploy", *app, e.self)
	if err != nil {
		return fail(e, err)
	}
	if *prov != "" {
		return runpodUndeploy(e, *prov, name, *asJSON)
	}
	base, err := findMothership(*ms, name, e.self)
	var none noMothership
	if errors.As(err, &none) {
		st := layout.In("").App(name).State()
		if _, err := os.Stat(st); err != nil {
			return fail(e, fmt.Errorf("%w\n(and %s has no local state in %s to clean up)", none, name, st))
		}
		fmt.Fprintf(e.stderr, "no `flash run` of %s runs here; stopping the endpoints recorded in %s\n", name, st)
		if err := undeployAll(e.ctx, name, layout.In("").App(name), "", e.stdout); err != nil {
			return fail(e, err)
		}
		return exitOK
	}
	if err != nil {
		return fail(e, err)
	}
	// An empty desired manifest makes the mothership remove every resource
	// (make-before-break does not apply: nothing replaces them).
	empty, _ := json.Marshal(map[string]any{"version": manifest.SupportedVersion, "project_name": name, "resources": map[string]any{}})
	report, err := postDeploy(e.ctx, base, apiKey(), empty, "application/json", newProgress(e.stdout, *asJSON))
	if err != nil {
		return fail(e, err) // an unreachable mothership is a failure, never "nothing to do"
	}
	var left []string
	for _, r := range report.Resources {
		if r.Status != mothership.StatusRemoved {
			left = append(left, fmt.Sprintf("%s (%s): %s", r.Name, r.Status, r.Error))
		}
	}
	if len(left) > 0 || report.Failed() {
		return fail(e, fmt.Errorf("these endpoints survived:\n  %s", strings.Join(append(left, report.Errors...), "\n  ")))
	}
	return exitOK
}

// targetApp names the app a command acts on: --app, else the app a `flash
// run` runs here, else the last build's, else the only app with state here.
// cmd names the command in the usage error.
func targetApp(cmd, flagValue, self string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	dir := layout.In("")
	if recs := runningHere(dir, ""); len(recs) == 1 {
		return recs[0].App, nil
	}
	if m, err := manifest.Load(filepath.Join(buildDir, manifest.FileName)); err == nil {
		return m.ProjectName, nil
	}
	if apps := dir.Apps(); len(apps) == 1 {
		return apps[0], nil
	}
	return "", usageError{fmt.Sprintf("%s: which app? pass --app NAME (or run `%s build` first)", cmd, self)}
}
