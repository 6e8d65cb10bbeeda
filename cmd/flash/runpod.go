package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flash-go/flash/image"
	"github.com/flash-go/flash/internal/oci"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider/runpod"
)

// The Runpod deploy flow (SPEC §6.2): flash deploy|status|undeploy
// --provider runpod. The mothership runs on Runpod as a load-balanced
// endpoint and deploys the children through the runpod provider; this CLI
// only builds and pushes the image, keeps the mothership's endpoint up to
// date and talks to it through its public URL.

// errMothershipBusy is a deploy the mothership refused with 409: it is
// reconciling already (its boot, or another deploy).
var errMothershipBusy = errors.New("the mothership is deploying already")

// Settings of the Runpod flow, from the environment.
const (
	// defaultRunpodState is the mothership's state on its network volume:
	// relative to the image's working directory /, so /runpod-volume/…
	// on Runpod, and the volume the emulator mounts in a worker's directory.
	defaultRunpodState = "sqlite://runpod-volume/flash/state.db"
	defaultDataCenter  = "EU-RO-1"
	volumeSizeGB       = 10
	runpodWait         = 10 * time.Minute // mothership health, then its deploy
)

// runpodClient is the REST client of RUNPOD_API_KEY and RUNPOD_API_BASE.
// runpod is the one --provider the CLI deploys to itself; local apps go
// through `flash run` and --mothership.
func runpodClient(prov string) (*runpod.Client, error) {
	if prov != "runpod" {
		return nil, usageError{fmt.Sprintf("--provider %q: want runpod (local apps run with `flash run`)", prov)}
	}
	key := os.Getenv("RUNPOD_API_KEY")
	if key == "" {
		return nil, errors.New("--provider runpod needs RUNPOD_API_KEY (a key from Runpod's console, or the emulator's: flash emulate runpod prints it)")
	}
	return &runpod.Client{Base: os.Getenv("RUNPOD_API_BASE"), Key: key}, nil
}

// stage reports one step of the Runpod flow as a progress line.
func stage(p *progress, resource string, action mothership.Action, step string, urls ...string) {
	p.event(mothership.Event{Resource: resource, Action: action, Step: mothership.Step(step), EndpointURLs: urls})
}

// runpodTimes is where a Runpod deploy spent its time.
type runpodTimes struct {
	HostBuild, Build, Push, API, Health, Deploy, Total time.Duration
}

func (t runpodTimes) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	return json.Marshal(map[string]int64{"host_build_ms": ms(t.HostBuild), "build_ms": ms(t.Build), "push_ms": ms(t.Push), "api_ms": ms(t.API),
		"health_ms": ms(t.Health), "deploy_ms": ms(t.Deploy), "total_ms": ms(t.Total)})
}

// runpodDeploy builds and pushes the image, creates or updates the
// mothership's endpoint, waits until it is healthy, then deploys the build
// through it and follows its progress.
func runpodDeploy(e *env, prov, ref, target string, asJSON bool) int {
	start := time.Now()
	var tm runpodTimes
	if prov == "runpod" && ref == "" {
		return fail(e, usageError{"deploy: --provider runpod needs --image REGISTRY/REPO[:TAG] to push the app's image to"})
	}
	tag, err := image.ParseRef(ref)
	if err != nil && prov == "runpod" {
		return fail(e, usageError{"deploy: --image: " + err.Error()})
	}
	c, err := runpodClient(prov)
	if err != nil {
		return fail(e, err)
	}
	if k := os.Getenv("FLASH_API_KEY"); k != "" && k != c.Key {
		fmt.Fprintln(e.stderr, "flash: FLASH_API_KEY is not used on Runpod: the endpoints answer to RUNPOD_API_KEY, which Runpod's gateway checks")
	}
	res, err := build(e, target, buildOptions{})
	if err != nil {
		return fail(e, err)
	}
	tm.HostBuild = time.Since(start)
	app := res.App.ProjectName
	p := newProgress(e.stdout, asJSON)

	stage(p, "mothership", "", "building")
	t0 := time.Now()
	img, err := image.Build(e.ctx, image.Options{Pkg: target, App: app, FlashVersion: flashVersion()})
	if err != nil {
		return fail(e, err)
	}
	tm.Build = time.Since(t0)
	stage(p, "mothership", "", "pushing")
	t0 = time.Now()
	digestRef, err := image.Push(e.ctx, img.Image, tag.String(), oci.Keychain(os.Getenv))
	if err != nil {
		return fail(e, err)
	}
	tm.Push = time.Since(t0)

	t0 = time.Now()
	ep, action, err := ensureMothership(e.ctx, c, app, digestRef)
	if err != nil {
		return fail(e, fmt.Errorf("the mothership's endpoint: %w", err))
	}
	tm.API = time.Since(t0)
	base := strings.TrimRight(ep.RequestURLs["base"], "/")
	if base == "" {
		base = "https://" + ep.ID + ".api.runpod.ai"
	}
	stage(p, "mothership", mothership.Action(action), action, base)

	ctx, cancel := context.WithTimeout(e.ctx, runpodWait)
	defer cancel()
	t0 = time.Now()
	if err := waitMothership(ctx, ep, c.Key); err != nil {
		return fail(e, err)
	}
	tm.Health = time.Since(t0)
	stage(p, "mothership", mothership.Action(action), "healthy", base)

	body, err := withImage(res.Manifest, digestRef)
	if err != nil {
		return fail(e, err)
	}
	t0 = time.Now()
	var report mothership.Report
	for {
		report, err = postDeploy(ctx, base, c.Key, body, "application/json", p)
		if !errors.Is(err, errMothershipBusy) {
			break
		}
		select { // its boot reconciliation: ours follows
		case <-ctx.Done():
			return fail(e, err)
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		return fail(e, err)
	}
	tm.Deploy, tm.Total = time.Since(t0), time.Since(start)
	if asJSON {
		writeJSONLine(e.stdout, map[string]any{"mothership": base, "image": digestRef, "timings": tm})
	} else {
		fmt.Fprintf(e.stdout, "mothership %s (endpoint %s, image %s)\n", base, ep.ID, digestRef)
		fmt.Fprintf(e.stdout, "took %s: build %s, image build %s, push %s, Runpod API %s, mothership healthy %s, deploy %s\n",
			tm.Total.Round(time.Millisecond), tm.HostBuild.Round(time.Millisecond), tm.Build.Round(time.Millisecond), tm.Push.Round(time.Millisecond),
			tm.API.Round(time.Millisecond), tm.Health.Round(time.Millisecond), tm.Deploy.Round(time.Millisecond))
		printRunpodCalls(e.stdout, res.App, report)
	}
	if report.Failed() {
		return exitFail
	}
	return exitOK
}

// printRunpodCalls prints a ready-to-paste call of each load-balanced
// resource's first POST route, the key left to the shell.
func printRunpodCalls(w io.Writer, app *manifest.Manifest, report mothership.Report) {
	for _, rr := range report.Resources {
		r := app.Resources[rr.Name]
		if r == nil || len(rr.EndpointURLs) == 0 {
			continue
		}
		for _, f := range r.Functions {
			if f.HTTPMethod == http.MethodPost && !strings.Contains(f.HTTPPath, "{") {
				fmt.Fprintf(w, "try: curl -s -H \"Authorization: Bearer $RUNPOD_API_KEY\" -H 'Content-Type: application/json' -d '%s' %s%s\n",
					example(f), rr.EndpointURLs[0], f.HTTPPath)
				break
			}
		}
	}
}

// ensureMothership creates or updates app's mothership endpoint to run ref,
// with its state on a network volume unless FLASH_STATE_URL names a store.
func ensureMothership(ctx context.Context, c *runpod.Client, app, ref string) (runpod.Endpoint, string, error) {
	env := map[string]string{"FLASH_IMAGE": ref, "RUNPOD_API_KEY": c.Key, "FLASH_API_KEY": c.Key}
	for _, k := range []string{"RUNPOD_API_BASE", "RUNPOD_ENDPOINT_BASE_URL", "FLASH_STATE_URL"} {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	volume, dc := "", ""
	if env["FLASH_STATE_URL"] == "" {
		env["FLASH_STATE_URL"] = defaultRunpodState
		dc = os.Getenv("FLASH_RUNPOD_DATACENTER")
		if dc == "" {
			dc = defaultDataCenter
		}
		v, err := ensureVolume(ctx, c, runpod.EndpointName(app, ""), dc)
		if err != nil {
			return runpod.Endpoint{}, "", fmt.Errorf("its network volume: %w", err)
		}
		volume, dc = v.ID, v.DataCenter
	}
	return runpod.Ensure(ctx, c, app, "", runpod.MothershipRequest(app, ref, env, volume, dc))
}

// ensureVolume finds the network volume called name, or creates it.
func ensureVolume(ctx context.Context, c *runpod.Client, name, dc string) (runpod.NetworkVolume, error) {
	vols, err := c.NetworkVolumes(ctx)
	if err != nil {
		return runpod.NetworkVolume{}, err
	}
	if i := slices.IndexFunc(vols, func(v runpod.NetworkVolume) bool { return v.Name == name }); i >= 0 {
		return vols[i], nil
	}
	return c.CreateNetworkVolume(ctx, runpod.NetworkVolume{Name: name, Size: volumeSizeGB, DataCenter: dc})
}

// waitMothership waits until the mothership's health URL answers 200 (the
// request itself scales it from zero).
func waitMothership(ctx context.Context, ep runpod.Endpoint, key string) error {
	hc := &http.Client{Timeout: 30 * time.Second}
	for {
		ok, why := runpod.Healthy(ctx, hc, ep, key)
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the mothership (endpoint %s) did not get healthy in %s (%s); see its workers' logs in Runpod's console", ep.ID, runpodWait, why)
		case <-time.After(time.Second):
		}
	}
}

// withImage returns the manifest file with imageName set to ref on every
// resource that names no image of its own: the image is then part of the
// recorded desired state, whichever mothership worker records it.
func withImage(path, ref string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var res map[string]map[string]json.RawMessage
	if err := json.Unmarshal(m["resources"], &res); err != nil {
		return nil, fmt.Errorf("%s: resources: %w", path, err)
	}
	for _, r := range res {
		if _, ok := r["imageName"]; !ok {
			r["imageName"], _ = json.Marshal(ref)
		}
	}
	if m["resources"], err = json.Marshal(res); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// findRunpodMothership returns app's mothership endpoint and its URL.
func findRunpodMothership(ctx context.Context, c *runpod.Client, app string) (runpod.Endpoint, string, error) {
	eps, err := runpod.Find(ctx, c, app, "")
	if err != nil {
		return runpod.Endpoint{}, "", err
	}
	if len(eps) == 0 {
		return runpod.Endpoint{}, "", nil
	}
	base := strings.TrimRight(eps[0].RequestURLs["base"], "/")
	if base == "" {
		base = "https://" + eps[0].ID + ".api.runpod.ai"
	}
	return eps[0], base, nil
}

// runpodEndpointView is one endpoint of the app as flash status shows it.
type runpodEndpointView struct {
	Resource string         `json:"resource"`
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Image    string         `json:"image"`
	Version  int64          `json:"version"`
	Workers  map[string]int `json:"workers"`
}

// runpodStatus shows the mothership's status and each endpoint's Runpod id,
// workers and version.
func runpodStatus(e *env, prov, app string, asJSON bool) int {
	c, err := runpodClient(prov)
	if err != nil {
		return fail(e, err)
	}
	if app, err = targetApp("undeploy", app, e.self); err != nil {
		return fail(e, err)
	}
	ms, base, err := findRunpodMothership(e.ctx, c, app)
	if err != nil {
		return fail(e, err)
	}
	if ms.ID == "" {
		return fail(e, fmt.Errorf("%s has no mothership on Runpod: deploy it with `%s deploy --provider runpod --image REPO`", app, e.self))
	}
	var st statusView
	stErr := getJSON(e.ctx, base, "/flash/status", c.Key, &st)
	children, err := runpod.Find(e.ctx, c, app, "*")
	if err != nil {
		return fail(e, err)
	}
	var views []runpodEndpointView
	for _, ep := range append([]runpod.Endpoint{ms}, children...) {
		v := runpodEndpointView{Resource: ep.Env[runpod.EnvResource], ID: ep.ID, Type: ep.Type, Image: ep.Image}
		if v.Resource == "" {
			v.Resource = "(mothership)"
		}
		if w, err := c.Workers(e.ctx, ep.ID); err == nil {
			v.Workers = w.Summary
			if w.EndpointVersion != nil {
				v.Version = *w.EndpointVersion
			}
		}
		views = append(views, v)
	}
	if asJSON {
		out := map[string]any{"mothership": base, "endpoints": views}
		if stErr == nil {
			out["status"] = st
		} else {
			out["status_error"] = stErr.Error()
		}
		writeJSON(e, out)
		return exitOK
	}
	if stErr != nil {
		fmt.Fprintf(e.stdout, "mothership %s: %v\n", base, stErr)
	} else {
		printStatus(e.stdout, base, st, time.Now())
	}
	fmt.Fprintln(e.stdout)
	printRunpodEndpoints(e.stdout, views)
	if stErr != nil {
		return exitFail
	}
	return exitOK
}

func printRunpodEndpoints(w io.Writer, views []runpodEndpointView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tRUNPOD ID\tTYPE\tVERSION\tWORKERS (running/idle/init/total)\tIMAGE")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\tv%d\t%d/%d/%d/%d\t%s\n", v.Resource, v.ID, v.Type, v.Version,
			v.Workers["running"], v.Workers["idle"], v.Workers["initializing"], v.Workers["total"], v.Image)
	}
	tw.Flush()
}

// runpodUndeploy removes app's children through its mothership, then any
// child left and the mothership's endpoint directly; only endpoints tagged
// as app's are ever deleted. The network volume (the state) is kept.
func runpodUndeploy(e *env, prov, app string, asJSON bool) int {
	c, err := runpodClient(prov)
	if err != nil {
		return fail(e, err)
	}
	ms, base, err := findRunpodMothership(e.ctx, c, app)
	if err != nil {
		return fail(e, err)
	}
	p := newProgress(e.stdout, asJSON)
	if ms.ID != "" {
		ctx, cancel := context.WithTimeout(e.ctx, runpodWait)
		defer cancel()
		empty, _ := json.Marshal(map[string]any{"version": "1.0", "project_name": app, "resources": map[string]any{}})
		if err := waitMothership(ctx, ms, c.Key); err != nil {
			fmt.Fprintf(e.stderr, "flash: %v; deleting the endpoints directly\n", err)
		} else if _, err := postDeploy(ctx, base, c.Key, empty, "application/json", p); err != nil {
			fmt.Fprintf(e.stderr, "flash: the mothership's undeploy: %v; deleting the endpoints directly\n", err)
		}
	}
	left, err := runpod.Find(e.ctx, c, app, "*")
	if err != nil {
		return fail(e, err)
	}
	if ms.ID != "" {
		left = append(left, ms)
	}
	var errs []error
	for _, ep := range left {
		name := ep.Env[runpod.EnvResource]
		if name == "" {
			name = "mothership"
		}
		if err := c.DeleteEndpoint(e.ctx, ep.ID); err != nil && !errors.Is(err, runpod.ErrNotFound) {
			errs = append(errs, fmt.Errorf("%s (%s): %w", name, ep.ID, err))
			continue
		}
		stage(p, name, mothership.ActionRemoved, "removed")
	}
	if err := errors.Join(errs...); err != nil {
		return fail(e, fmt.Errorf("these endpoints survived:\n%w", err))
	}
	if ms.ID == "" && len(left) == 0 {
		fmt.Fprintf(e.stderr, "%s has no endpoint on Runpod\n", app)
	} else if !asJSON {
		fmt.Fprintf(e.stdout, "removed; the network volume %s (the mothership's state) is kept\n", runpod.EndpointName(app, ""))
	}
	return exitOK
}
