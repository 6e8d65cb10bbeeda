package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
)

func runDeploy(e *env) int {
	fs := flag.NewFlagSet("flash deploy", flag.ContinueOnError)
	ms := fs.String("mothership", "", mothershipFlagHelp)
	asJSON := fs.Bool("json", false, "print progress events and the report as JSON lines")
	prov := fs.String("provider", "", "runpod: deploy to Runpod (RUNPOD_API_KEY; RUNPOD_API_BASE for the emulator)")
	imageRef := fs.String("image", "", "with --provider runpod: push the app's image to `REGISTRY/REPO[:TAG]`")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash deploy [--mothership URL] [--json] [PKG | MANIFEST.json]\n"+
			"       flash deploy --provider runpod --image REGISTRY/REPO [--json] [PKG]\n\n"+
			"Builds PKG (default .) and deploys it to a running mothership, or deploys a manifest file alone.")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 1 {
		return fail(e, usageError{"deploy: give at most one package or manifest file"})
	}
	target := "."
	if len(args) == 1 {
		target = args[0]
	}
	if *prov != "" {
		return runpodDeploy(e, *prov, *imageRef, target, *asJSON)
	}
	if _, err := findMothership(*ms, "", e.self); err != nil {
		return fail(e, err) // before a build that could not be deployed
	}
	var body []byte
	var contentType string
	if strings.HasSuffix(target, ".json") {
		m, err := loadFile(target)
		if err != nil {
			return fail(e, err)
		}
		body, contentType = m.Pretty(), "application/json"
	} else {
		b, err := build(e, target, buildOptions{artifact: true})
		if err != nil {
			return fail(e, err)
		}
		if body, err = os.ReadFile(b.Artifact); err != nil {
			return fail(e, err)
		}
		contentType = "application/gzip"
	}
	base, err := findMothership(*ms, "", e.self)
	if err != nil {
		return fail(e, err)
	}
	report, err := postDeploy(e.ctx, base, apiKey(), body, contentType, newProgress(e.stdout, *asJSON))
	if err != nil {
		return fail(e, err)
	}
	if report.Failed() {
		return exitFail
	}
	return exitOK
}

// postDeploy sends a deploy and follows its NDJSON progress to the report.
func postDeploy(ctx context.Context, base, key string, body []byte, contentType string, p *progress) (mothership.Report, error) {
	return postDeployFrom(ctx, base, key, bytes.NewReader(body), contentType, p)
}

// postDeployFrom is postDeploy of a body read as it is sent.
func postDeployFrom(ctx context.Context, base, key string, body io.Reader, contentType string, p *progress) (mothership.Report, error) {
	var report mothership.Report
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/flash/deploy", body)
	if err != nil {
		return report, fmt.Errorf("mothership URL %q: %w", base, err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return report, unreachable(base, err)
	}
	defer resp.Body.Close()
	if err := notFlash(base, resp); err != nil {
		return report, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return report, refusedKey(base)
		case http.StatusConflict:
			return report, fmt.Errorf("%w at %s; try again when it is done", errMothershipBusy, base)
		}
		return report, fmt.Errorf("deploy refused (%d): %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line struct {
			mothership.Event
			Report *mothership.Report `json:"report"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return report, fmt.Errorf("unexpected progress line %q: %w", sc.Text(), err)
		}
		if line.Report != nil {
			p.done(*line.Report)
			return *line.Report, nil
		}
		p.event(line.Event)
	}
	if err := sc.Err(); err != nil {
		return report, fmt.Errorf("the deploy stream broke off: %w", err)
	}
	return report, fmt.Errorf("the deploy stream ended without a report: the mothership may have stopped (see its log)")
}

// progress shows one line per resource: updated in place on a terminal,
// appended otherwise, or JSON lines with --json.
type progress struct {
	w      io.Writer
	json   bool
	tty    bool
	order  []string
	lines  map[string]string
	drawn  int
	starts map[string]time.Time
	// observe, when set, sees every event first (flash dev times its steps).
	observe func(mothership.Event)
}

func newProgress(w io.Writer, asJSON bool) *progress {
	return &progress{w: w, json: asJSON, tty: isTerminal(w) && !asJSON, lines: map[string]string{}, starts: map[string]time.Time{}}
}

func (p *progress) event(ev mothership.Event) {
	if p.observe != nil {
		p.observe(ev)
	}
	if p.json {
		writeJSONLine(p.w, ev)
		return
	}
	if _, ok := p.lines[ev.Resource]; !ok {
		p.order = append(p.order, ev.Resource)
		p.starts[ev.Resource] = time.Now()
	}
	text := fmt.Sprintf("%-14s %-9s %s", ev.Resource, ev.Action, ev.Step)
	if len(ev.EndpointURLs) > 0 {
		text += "  " + strings.Join(ev.EndpointURLs, " ")
	}
	if ev.Version > 0 {
		text += fmt.Sprintf("  (v%d)", ev.Version)
	}
	if ev.Error != "" {
		text += "  error: " + ev.Error
	}
	p.lines[ev.Resource] = text
	if !p.tty {
		fmt.Fprintln(p.w, text)
		return
	}
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn) // back to the first line
	}
	for _, r := range p.order {
		fmt.Fprintf(p.w, "\x1b[2K%s\n", p.lines[r])
	}
	p.drawn = len(p.order)
}

func (p *progress) done(r mothership.Report) {
	if p.json {
		writeJSONLine(p.w, map[string]any{"report": r})
		return
	}
	failed := 0
	for _, rr := range r.Resources {
		if rr.Status == manifest.StatusFailed || rr.Error != "" {
			failed++
		}
	}
	fmt.Fprintf(p.w, "\nmanifest v%d: %d resource(s), %d failed; provider calls: %d deploy, %d undeploy\n",
		r.Version, len(r.Resources), failed, r.Deploys, r.Undeploys)
	for _, rr := range r.Resources {
		if rr.Error != "" {
			fmt.Fprintf(p.w, "  %s: %s\n", rr.Name, rr.Error)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(p.w, "  error: %s\n", e)
	}
}

func writeJSONLine(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
