package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
)

// settle is how long the sources must stay unchanged before a rebuild: an
// editor's save (write, rename, chmod) takes a few milliseconds; a change
// made meanwhile makes the next build.
const settle = 50 * time.Millisecond

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
	d := &devLoop{t: t, name: t.m.ProjectName, base: base, logs: logs, w: w, watched: map[string]bool{}, deployed: ch,
		running: t.src, runningM: t.m}
	if t.src != nil {
		d.watch(t.src.inputs)
	} else {
		d.relist(ctx)
	}
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
	inputs   buildInputs     // the last listing: the files the next build's sources are read from
	deployed chan<- *manifest.Manifest

	// The last deployed build: its sources (nil: unknown) and its manifest.
	running  *sources
	runningM *manifest.Manifest
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
			// A change during the build abandons it; one during the deploy
			// waits in the watcher and makes the next build.
			listed, again := d.reload(ctx, saved)
			switch {
			case again:
				settled = time.After(settle) // saved stays: that change is not deployed yet
			case !listed:
				d.relist(ctx) // the build may import new packages
			}
		}
	}
}

// isSource reports whether a changed file can change the build.
func isSource(name string) bool {
	base := filepath.Base(name)
	return strings.HasSuffix(base, ".go") && !strings.HasPrefix(base, ".") || base == "go.mod" || base == "go.sum"
}

// reload builds the app and deploys the build; a failed build or deploy
// leaves the last good build serving. When the sources changed only in
// resource config literals, the resources whose entry did not change keep
// running as they are. listed reports that it listed the inputs afresh;
// again, that a change during the build abandoned it.
func (d *devLoop) reload(ctx context.Context, saved time.Time) (listed, again bool) {
	times := reloadTimes{saved: saved}
	b, src, in, again, err := d.rebuild(ctx, &times)
	listed = in != nil
	switch {
	case ctx.Err() != nil || again:
		return listed, again
	case err != nil:
		d.logs.notice(fmt.Sprintf("%v\nthe last good build keeps serving; fix it and save again", err))
		return listed, false
	case b.App.ProjectName != d.name:
		d.logs.notice(fmt.Sprintf("the app is now named %q, not %q: not deployed; restart flash dev to run it under its new name",
			b.App.ProjectName, d.name))
		return listed, false
	}
	m := b.App
	if in != nil && in.same(src.inputs) {
		if m, _, err = keepFingerprints(d.runningM, m); err != nil {
			d.logs.notice(fmt.Sprintf("cannot keep the unchanged resources running, restarting all: %v", err))
			m = b.App
		}
	}
	report, err := d.deploy(ctx, b.Binary, m, &times)
	switch {
	case ctx.Err() != nil:
		return listed, false
	case err != nil:
		d.logs.notice(fmt.Sprintf("deploy failed, the last good build keeps serving: %v", err))
		return listed, false
	}
	d.running, d.runningM = src, m
	for _, line := range deployLines(report, times) {
		d.logs.notice(line)
	}
	select {
	case d.deployed <- m:
	case <-ctx.Done():
	}
	return listed, false
}

// rebuild reads the sources, then builds them, abandoning the build when a
// source changes meanwhile (again). When the sources differ from the running
// build's only in config literals, it lists the inputs meanwhile (in, nil
// otherwise), to confirm that the build read no file but those compared.
func (d *devLoop) rebuild(ctx context.Context, times *reloadTimes) (b *buildResult, src *sources, in *buildInputs, again bool, err error) {
	if d.inputs.files != nil {
		src = readInputs(d.inputs) // before the build: it contains at most these
	}
	times.building = time.Now()
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var listing chan error
	var fresh buildInputs
	if sameCode(d.running, src) {
		listing = make(chan error, 1)
		go func() {
			var err error
			fresh, err = listInputs(bctx, d.t.pkg)
			listing <- err
		}()
	}
	changed := d.cancelOnChange(cancel)
	e := *d.t.e
	e.ctx = bctx
	b, err = build(&e, d.t.pkg, buildOptions{dev: true})
	again = changed()
	if listing != nil && <-listing == nil {
		in = &fresh
		d.watch(fresh)
	}
	if err == nil {
		times.compile = b.Compile
	}
	return b, src, in, again, err
}

// deploy streams the binary and manifest m to the mothership as an
// uncompressed tar: the mothership is on this machine, and gzip would cost
// more than the copy it saves.
func (d *devLoop) deploy(ctx context.Context, bin string, m *manifest.Manifest, times *reloadTimes) (mothership.Report, error) {
	p := newProgress(io.Discard, false)
	p.observe = times.event
	times.posted = time.Now()
	pr, pw := io.Pipe()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		pw.CloseWithError(writeTar(pw, bin, m.Pretty()))
	}()
	report, err := postDeployFrom(ctx, d.base, d.t.key, pr, "application/x-tar", p)
	pr.Close()
	<-wrote
	times.done = time.Now()
	return report, err
}

// cancelOnChange calls cancel when a source changes before stop: the build
// under way would be out of date at once. stop ends the watch and reports
// whether a change came.
func (d *devLoop) cancelOnChange(cancel context.CancelFunc) (stop func() bool) {
	done := make(chan struct{})
	changed := make(chan bool, 1)
	go func() {
		for {
			select {
			case <-done:
				changed <- false
				return
			case ev, ok := <-d.w.Events:
				if !ok {
					changed <- false // closed: the loop sees it too
					return
				}
				if isSource(ev.Name) {
					cancel()
					changed <- true
					return
				}
			}
		}
	}()
	return func() bool {
		close(done)
		return <-changed
	}
}

// reloadTimes are the moments of one reload, for its report line.
type reloadTimes struct {
	saved    time.Time     // the first change
	building time.Time     // go build started
	compile  time.Duration // go build's own time
	posted   time.Time     // the deploy request started
	first    time.Time     // its first progress event
	up       time.Time     // the last new process answered its health check
	serving  time.Time     // the last new endpoint was published: the gateway routes to it
	done     time.Time     // the report: old processes stopped
}

// event records the moment of a deploy progress event.
func (r *reloadTimes) event(ev mothership.Event) {
	now := time.Now()
	if r.first.IsZero() {
		r.first = now
	}
	switch ev.Step {
	case mothership.StepDeployed:
		r.up = now
	case mothership.StepPublished:
		r.serving = now
	}
}

// breakdown says where a reload's time went, from the save to the new code
// serving, then how long the old processes took to stop.
func (r reloadTimes) breakdown() string {
	serving, up := r.serving, r.up
	if serving.IsZero() {
		serving = r.done // nothing restarted
	}
	if up.IsZero() {
		up = serving
	}
	first := cmp.Or(r.first, up)
	s := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	return fmt.Sprintf("serving %s after the save (wait %s, go build %s, describe %s, upload %s, start %s, publish %s); old processes stopped %s later",
		s(serving.Sub(r.saved)), s(r.building.Sub(r.saved)), s(r.compile), s(r.posted.Sub(r.building)-r.compile),
		s(first.Sub(r.posted)), s(up.Sub(first)), s(serving.Sub(up)), s(r.done.Sub(serving)))
}

// deployLines says what a reload changed: one line per resource that was not
// left as it was.
func deployLines(r mothership.Report, times reloadTimes) []string {
	head := fmt.Sprintf("reloaded: manifest v%d, %s", r.Version, times.breakdown())
	if r.Failed() {
		head = fmt.Sprintf("reloaded with failures: manifest v%d", r.Version)
	}
	lines := []string{head}
	changed := 0
	for _, rr := range r.Resources {
		switch {
		case rr.Error != "":
			lines = append(lines, fmt.Sprintf("  %s (%s): %s: %s", rr.Name, rr.Action, rr.Status, rr.Error))
		case rr.Action != mothership.ActionUnchanged:
			lines = append(lines, fmt.Sprintf("  %s (%s): %s at %s", rr.Name, rr.Action, rr.Status, strings.Join(rr.EndpointURLs, " ")))
		default:
			continue
		}
		changed++
	}
	if changed < len(r.Resources) {
		lines = append(lines, fmt.Sprintf("  %d unchanged, left running", len(r.Resources)-changed))
	}
	lines = append(lines, r.Errors...)
	return lines
}

// relist lists the app's inputs afresh and watches its directories.
func (d *devLoop) relist(ctx context.Context) {
	in, err := listInputs(ctx, d.t.pkg)
	if err != nil {
		if ctx.Err() == nil {
			d.logs.notice(fmt.Sprintf("cannot list the app's sources: %v", err))
		}
		return
	}
	d.watch(in)
}

// watch remembers in and adds its directories to the watch: every
// directory of the main module's packages the app builds from.
func (d *devLoop) watch(in buildInputs) {
	d.inputs = in
	for _, dir := range in.dirs {
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
