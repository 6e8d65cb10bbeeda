package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
)

func runUndeploy(e *env) int {
	fs := flag.NewFlagSet("flash undeploy", flag.ContinueOnError)
	ms := fs.String("mothership", "", "mothership base URL (default $FLASH_MOTHERSHIP_URL, else "+defaultMothership+")")
	app := fs.String("app", "", "the app whose endpoints to remove (default: the project_name of "+buildDir+"/"+manifest.FileName+")")
	asJSON := fs.Bool("json", false, "print progress events and the report as JSON lines")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash undeploy [--mothership URL] [--app NAME] [--json]\n\n"+
			"Removes this app's endpoints, and nothing else: through the running mothership when it answers,\n"+
			"else directly from the local state ("+stateFile+").")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 0 {
		return fail(e, usageError{"undeploy: takes no arguments"})
	}
	name := *app
	if name == "" {
		m, err := manifest.Load(filepath.Join(buildDir, manifest.FileName))
		if err != nil {
			return fail(e, fmt.Errorf("which app? %w; run `flash build` first or pass --app NAME", err))
		}
		name = m.ProjectName
	}
	base := mothershipURL(*ms)
	// An empty desired manifest makes the mothership remove every resource
	// (make-before-break does not apply: nothing replaces them).
	empty, _ := json.Marshal(map[string]any{"version": manifest.SupportedVersion, "project_name": name, "resources": map[string]any{}})
	report, err := postDeploy(e.ctx, base, apiKey(), empty, "application/json", newProgress(e.stdout, *asJSON))
	switch {
	case err == nil:
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
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fail(e, err)
	}
	fmt.Fprintf(e.stderr, "no mothership at %s; removing %s's endpoints recorded in %s\n", base, name, stateFile)
	if err := undeployAll(e.ctx, name, e.stdout); err != nil {
		return fail(e, err)
	}
	return exitOK
}
