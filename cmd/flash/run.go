package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider/local"
	"github.com/flash-go/flash/store/sqlite"
)

// Paths flash run uses under the working directory.
const (
	stateFile = ".flash/state.db"
)

// logDir is where the local provider writes the children's logs of app.
func logDir(app string) string { return layout.In("").App(app).Logs() }

// upTimeout bounds how long flash run waits for every resource to be healthy.
const upTimeout = 90 * time.Second

func runRun(e *env) int {
	fs := flag.NewFlagSet("flash run", flag.ContinueOnError)
	port := fs.Int("port", 8080, "the mothership's port")
	asJSON := fs.Bool("json", false, "print the topology as one JSON object (logs go to stderr)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash run [--port N] [PKG]\n\nBuilds the app and runs the whole topology here: the mothership and one\n"+
			"process per resource. Ctrl-C stops everything.")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 1 {
		return fail(e, usageError{"run: give at most one package"})
	}
	if *port < 1 || *port > 65535 {
		return fail(e, usageError{fmt.Sprintf("run: --port %d is not a port number", *port)})
	}
	pkg := "."
	if len(args) == 1 {
		pkg = args[0]
	}
	if err := checkPort(*port); err != nil {
		return fail(e, err)
	}
	fmt.Fprintf(e.stderr, "building %s …\n", pkg)
	b, err := build(e, pkg)
	if err != nil {
		return fail(e, err)
	}
	key, generated, err := runKey()
	if err != nil {
		return fail(e, err)
	}
	if err := runTopology(e, b, *port, key, generated, *asJSON); err != nil {
		return fail(e, err)
	}
	return exitOK
}

// checkPort fails with the fix when the mothership's port is taken.
func checkPort(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d is already in use (another `flash run`?): stop what uses it, or pick another port with --port", port)
	}
	return ln.Close()
}

// runKey returns the API key for the topology: FLASH_API_KEY or RUNPOD_API_KEY
// when set, else a new random key written to .flash/api_key (0600).
func runKey() (key string, generated bool, err error) {
	for _, k := range []string{os.Getenv("FLASH_API_KEY"), os.Getenv("RUNPOD_API_KEY")} {
		if k != "" {
			return k, false, nil
		}
	}
	buf := make([]byte, 24)
	rand.Read(buf)
	key = "fl_" + hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(apiKeyFile), 0o700); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(apiKeyFile, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write %s: %w", apiKeyFile, err)
	}
	os.Chmod(apiKeyFile, 0o600)
	return key, true, nil
}

// runTopology starts the mothership from the built binary, waits for every
// resource, prints how to call them, streams logs, and on Ctrl-C stops
// everything it started.
func runTopology(e *env, b *buildResult, port int, key string, generated, asJSON bool) error {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	logOut := e.stdout
	if asJSON {
		logOut = e.stderr // stdout stays one JSON object
	}
	logs := newLogStreamer(logOut, isTerminal(logOut))
	mout := logs.writer("mothership")
	tail := logs.tail(abs(logDir(b.App.ProjectName)), b.App.ResourceNames())
	start := func() (*exec.Cmd, <-chan error, error) {
		cmd := exec.Command(b.Binary)
		cmd.Env = append(withoutFlashEnv(os.Environ()),
			"FLASH_IS_MOTHERSHIP=true", "FLASH_HOST=127.0.0.1", "PORT="+strconv.Itoa(port),
			"FLASH_API_KEY="+key, "FLASH_STATE_URL=sqlite://"+abs(stateFile), "FLASH_PROVIDER=local")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C is ours to handle
		cmd.Stdout, cmd.Stderr = mout, mout
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("start the mothership %s: %w", b.Binary, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		return cmd, exited, nil
	}
	cmd, exited, err := start()
	if err != nil {
		tail()
		return err
	}
	stopAll := func() error {
		logs.notice("stopping: the mothership, then every endpoint it started …")
		if cmd != nil {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(35 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		err := undeployAll(context.Background(), b.App.ProjectName, e.stderr)
		tail()
		return err
	}

	up, gone, err := waitUp(e.ctx, base, key, b.App, exited)
	if err != nil {
		if gone {
			cmd = nil // already exited: nothing to stop but its endpoints
		}
		return errors.Join(err, stopAll())
	}
	topo := describeTopology(base, key, b.App, up)
	if asJSON {
		writeJSON(e, topo)
	} else {
		printTopology(e.stdout, topo, generated)
	}
	logs.notice("streaming logs; press Ctrl-C to stop everything")

	// A mothership that dies is started again: it adopts the running
	// endpoints, which kept serving meanwhile. Repeated crashes give up.
	var crashes []time.Time
	for {
		select {
		case <-e.ctx.Done():
			return stopAll()
		case err := <-exited:
			cmd = nil
			now := time.Now()
			crashes = append(crashes, now)
			if len(crashes) > 3 && now.Sub(crashes[len(crashes)-4]) < time.Minute {
				return errors.Join(fmt.Errorf("the mothership keeps exiting (last: %v); giving up, see the lines above", err), stopAll())
			}
			logs.notice(fmt.Sprintf("the mothership exited (%v); starting it again — the endpoints keep serving meanwhile", err))
			if cmd, exited, err = start(); err != nil {
				return errors.Join(err, stopAll())
			}
		}
	}
}

// withoutFlashEnv drops FLASH_* role variables that would confuse the mothership.
func withoutFlashEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "FLASH_IS_MOTHERSHIP", "FLASH_RESOURCE_NAME", "FLASH_MOTHERSHIP_URL", "FLASH_MOTHERSHIP_ID", "PORT", "FLASH_HOST", "FLASH_STATE_URL", "FLASH_PROVIDER":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// waitUp polls the mothership's status until every resource is deployed or
// failed. A failed resource is an error naming it and why.
// gone reports that the mothership exited.
func waitUp(ctx context.Context, base, key string, m *manifest.Manifest, exited <-chan error) (st statusView, gone bool, err error) {
	deadline := time.After(upTimeout)
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	var last statusView
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return last, false, errors.New("interrupted before the topology was up")
		case err := <-exited:
			return last, true, fmt.Errorf("the mothership exited before the topology was up: %v (see its log lines above)", err)
		case <-deadline:
			if lastErr != nil {
				return last, false, fmt.Errorf("the topology was not up after %s: %w", upTimeout, lastErr)
			}
			return last, false, fmt.Errorf("the topology was not up after %s; resources: %s", upTimeout, pendingList(last, m))
		case <-tick.C:
		}
		var st statusView
		if err := getJSON(ctx, base, "/flash/status", key, &st); err != nil {
			lastErr = err
			continue
		}
		last, lastErr = st, nil
		done, failed := 0, []string{}
		for _, name := range m.ResourceNames() {
			r, ok := st.Resources[name]
			switch {
			case !ok:
			case r.Status == "failed":
				failed = append(failed, fmt.Sprintf("%s: %s", name, r.Error))
				done++
			case (r.Status == "deployed" || r.Status == "updated") && (r.EndpointURL != "" || len(r.EndpointURLs) > 0):
				done++
			}
		}
		if done == len(m.Resources) {
			if len(failed) > 0 {
				return st, false, fmt.Errorf("some resources failed to deploy:\n  %s\n(their logs are in %s/)", strings.Join(failed, "\n  "), logDir(m.ProjectName))
			}
			return st, false, nil
		}
	}
}

func pendingList(st statusView, m *manifest.Manifest) string {
	var parts []string
	for _, n := range m.ResourceNames() {
		s := "unknown"
		if r, ok := st.Resources[n]; ok && r.Status != "" {
			s = r.Status
		}
		parts = append(parts, n+"="+s)
	}
	return strings.Join(parts, ", ")
}

// topology is what flash run prints once everything is up.
type topology struct {
	App        string             `json:"app"`
	Mothership string             `json:"mothership"`
	Version    int64              `json:"version"`
	KeyFile    string             `json:"api_key_file,omitempty"`
	Resources  []topologyResource `json:"resources"`
	Examples   []string           `json:"examples"`
}

type topologyResource struct {
	Name   string   `json:"name"`
	Kind   string   `json:"kind"` // http or queue
	URLs   []string `json:"urls"`
	Serves []string `json:"serves"` // routes of an http resource, functions of a queue one
	Status string   `json:"status"`
}

// describeTopology pairs the build's manifest with the mothership's status
// and makes a ready-to-paste call for one route and one queue function.
func describeTopology(base, key string, m *manifest.Manifest, st statusView) topology {
	t := topology{App: m.ProjectName, Mothership: base, Version: st.Version, Examples: []string{}}
	if _, err := os.Stat(apiKeyFile); err == nil {
		t.KeyFile = apiKeyFile
	}
	var lbCall, qbCall string
	for _, name := range m.ResourceNames() {
		r := m.Resources[name]
		s := st.Resources[name]
		tr := topologyResource{Name: name, Kind: "queue", URLs: s.EndpointURLs, Status: s.Status, Serves: []string{}}
		if len(tr.URLs) == 0 && s.EndpointURL != "" {
			tr.URLs = []string{s.EndpointURL}
		}
		if r.LoadBalanced {
			tr.Kind = "http"
		}
		for _, f := range r.Functions {
			if r.LoadBalanced {
				tr.Serves = append(tr.Serves, f.HTTPMethod+" "+f.HTTPPath)
				if lbCall == "" && len(tr.URLs) > 0 {
					lbCall = curlLB(tr.URLs[0], key, f)
				}
				continue
			}
			tr.Serves = append(tr.Serves, f.Name)
			if qbCall == "" && len(tr.URLs) > 0 {
				qbCall = curlQB(tr.URLs[0], key, f)
			}
		}
		t.Resources = append(t.Resources, tr)
	}
	for _, c := range []string{lbCall, qbCall} {
		if c != "" {
			t.Examples = append(t.Examples, c)
		}
	}
	return t
}

// printTopology prints the table of resources and ready-to-paste calls.
func printTopology(w io.Writer, t topology, generated bool) {
	fmt.Fprintf(w, "\n%s is up: mothership %s (manifest v%d)\n\n", t.App, t.Mothership, t.Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tKIND\tURL\tROUTES / FUNCTIONS\tSTATUS")
	for _, r := range t.Resources {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, orDash(strings.Join(r.URLs, " ")), strings.Join(r.Serves, ", "), r.Status)
	}
	tw.Flush()
	if generated {
		fmt.Fprintf(w, "\nAPI key: generated, saved in %s (0600)\n", apiKeyFile)
	} else {
		fmt.Fprintln(w, "\nAPI key: from FLASH_API_KEY")
	}
	fmt.Fprintln(w, "\nTry it:")
	for _, c := range t.Examples {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "  flash status --mothership %s\n\n", t.Mothership)
}

func example(f manifest.Function) string {
	var b bytes.Buffer
	if json.Compact(&b, f.ExampleInput) != nil {
		return "{}"
	}
	return b.String()
}

// curlLB is a call of an LB route, path parameters filled with sample values.
func curlLB(url, key string, f manifest.Function) string {
	path, err := wire.FillPath(f.HTTPPath, func(string) (string, error) { return "1h", nil })
	if err != nil {
		path = f.HTTPPath
	}
	if f.HTTPMethod == "GET" || f.HTTPMethod == "DELETE" {
		return fmt.Sprintf("curl -s -H 'Authorization: Bearer %s' %s%s", key, url, path)
	}
	return fmt.Sprintf("curl -s -X %s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '%s' %s%s",
		f.HTTPMethod, key, example(f), url, path)
}

// curlQB is a /runsync call of a queue function in the Runpod shape.
func curlQB(url, key string, f manifest.Function) string {
	body := wire.AppendJobRequest(nil, f.Name, []byte(example(f)))
	return fmt.Sprintf("curl -s -X POST -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '%s' %s/runsync", key, body, url)
}

// undeployAll stops every endpoint of app recorded in the local state store.
func undeployAll(ctx context.Context, app string, w io.Writer) error {
	st, err := sqlite.Open(ctx, stateFile)
	if err != nil {
		return fmt.Errorf("open %s to stop the endpoints: %w", stateFile, err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := local.New(local.Config{App: app, Store: st, LogDir: logDir(app), Logger: quiet})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	results, err := p.UndeployAll(ctx)
	var survivors []string
	for _, r := range results {
		if r.Err != nil {
			survivors = append(survivors, fmt.Sprintf("%s (%s): %v", r.Endpoint.Resource, r.Endpoint.ID, r.Err))
			continue
		}
		fmt.Fprintf(w, "stopped %s (%s)\n", r.Endpoint.Resource, strings.Join(r.Endpoint.URLs, " "))
	}
	if len(survivors) > 0 {
		return fmt.Errorf("these endpoints are still running:\n  %s", strings.Join(survivors, "\n  "))
	}
	return err
}
