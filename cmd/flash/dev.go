package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
)

// settle is how long the sources must stay unchanged before a rebuild: an
// editor's save (write, rename, chmod) and a formatter's rewrite make one build.
const settle = 200 * time.Millisecond

func runDev(e *env) int { return runTopology(e, true) }

// startDev starts flash dev's loop once the topology is up: every settled
// change of the app's Go sources is rebuilt and deployed through the
// mothership at base. Each deployed manifest is sent on the returned channel;
// stop ends the loop and waits for it. Without t.dev it does nothing.
func (t *topologyRun) startDev(base string, logs *logStreamer) (deployed <-chan *manifest.Manifest, stop func()) {
	if !t.dev {
		return nil, func() {}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		logs.notice(fmt.Sprintf("cannot watch the sources, no reload: %v", err))
		return nil, func() {}
	}
	ctx, cancel := context.WithCancel(t.e.ctx)
	ch := make(chan *manifest.Manifest)
	d := &devLoop{t: t, name: t.m.ProjectName, base: base, logs: logs, w: w, watched: map[string]bool{}, deployed: ch}
	d.watchSources(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.Close()
		d.run(ctx)
	})
	logs.notice(fmt.Sprintf("watching %d source directories; every saved change is rebuilt and deployed", len(d.watched)))
	return ch, func() { cancel(); wg.Wait() }
}

// devLoop rebuilds and redeploys the app when its sources change.
type devLoop struct {
	t        *topologyRun // its m belongs to the run's loop: name is the app's
	name     string
	base     string
	logs     *logStreamer
	w        *fsnotify.Watcher
	watched  map[string]bool // directories under watch
	deployed chan<- *manifest.Manifest
}

func (d *devLoop) run(ctx context.Context) {
	var settled <-chan time.Time
	var saved time.Time // the first change since the last build
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			if !isSource(ev.Name) {
				continue
			}
			if settled == nil {
				saved = time.Now()
			}
			settled = time.After(settle)
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			d.logs.notice(fmt.Sprintf("watching the sources: %v", err))
		case <-settled:
			settled = nil
			// Changes made meanwhile wait in the watcher and make the next build.
			d.reload(ctx, saved)
			d.watchSources(ctx) // the build may import new packages
		}
	}
}

// isSource reports whether a changed file can change the build.
func isSource(name string) bool {
	base := filepath.Base(name)
	return strings.HasSuffix(base, ".go") && !strings.HasPrefix(base, ".") || base == "go.mod" || base == "go.sum"
}

// reload builds the app and deploys the build; a failed build or deploy
// leaves the last good build serving.
func (d *devLoop) reload(ctx context.Context, saved time.Time) {
	e := *d.t.e
	e.ctx = ctx
	b, err := build(&e, d.t.pkg)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.logs.notice(fmt.Sprintf("%v\nthe last good build keeps serving; fix it and save again", err))
		return
	}
	if b.App.ProjectName != d.name {
		d.logs.notice(fmt.Sprintf("the app is now named %q, not %q: not deployed; restart flash dev to run it under its new name",
			b.App.ProjectName, d.name))
		return
	}
	body, err := os.ReadFile(b.Artifact)
	if err != nil {
		d.logs.notice(fmt.Sprintf("read the build: %v", err))
		return
	}
	report, err := postDeploy(ctx, d.base, d.t.key, body, "application/gzip", newProgress(io.Discard, false))
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.logs.notice(fmt.Sprintf("deploy failed, the last good build keeps serving: %v", err))
		return
	}
	for _, line := range deployLines(report, time.Since(saved)) {
		d.logs.notice(line)
	}
	select {
	case d.deployed <- b.App:
	case <-ctx.Done():
	}
}

// deployLines says what a reload changed: one line per resource that was not
// left as it was.
func deployLines(r mothership.Report, took time.Duration) []string {
	lines := []string{fmt.Sprintf("reloaded: manifest v%d, %s after the save", r.Version, took.Round(10*time.Millisecond))}
	if r.Failed() {
		lines[0] = fmt.Sprintf("reloaded with failures: manifest v%d", r.Version)
	}
	for _, rr := range r.Resources {
		switch {
		case rr.Error != "":
			lines = append(lines, fmt.Sprintf("  %s (%s): %s: %s", rr.Name, rr.Action, rr.Status, rr.Error))
		case rr.Action != mothership.ActionUnchanged:
			lines = append(lines, fmt.Sprintf("  %s (%s): %s at %s", rr.Name, rr.Action, rr.Status, strings.Join(rr.EndpointURLs, " ")))
		}
	}
	lines = append(lines, r.Errors...)
	return lines
}

// watchSources adds to the watch every directory of the main module's
// packages the app builds from.
func (d *devLoop) watchSources(ctx context.Context) {
	dirs, err := sourceDirs(ctx, d.t.pkg)
	if err != nil {
		d.logs.notice(fmt.Sprintf("cannot list the app's sources: %v", err))
		return
	}
	for _, dir := range dirs {
		if d.watched[dir] {
			continue
		}
		if err := d.w.Add(dir); err != nil {
			d.logs.notice(fmt.Sprintf("cannot watch %s: %v", dir, err))
			continue
		}
		d.watched[dir] = true
	}
}

// sourceDirs lists the directories of the main module's packages pkg depends on.
func sourceDirs(ctx context.Context, pkg string) ([]string, error) {
	args := []string{"list", "-e", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}"}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	if fi, err := os.Stat(pkg); err == nil && fi.IsDir() {
		cmd = exec.CommandContext(ctx, "go", append(args, ".")...)
		cmd.Dir = pkg
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var dirs []string
	for line := range strings.Lines(string(out)) {
		if dir := strings.TrimSpace(line); dir != "" {
			dirs = append(dirs, dir)
		}
	}
	return dirs, nil
}
