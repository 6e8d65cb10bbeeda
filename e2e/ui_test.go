package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium (.ci/run installs it); the test skips
// without one.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (apt-get install chromium)")
	return ""
}

// TestDashboard opens the mothership's dashboard in headless Chromium on a
// topology whose spans the mothership collects (as flash run --trace sets
// it up): it loads from the link with the key, shows the three resources,
// the manifest version and the children's applied versions; the edge
// counters grow after calls; a trace opens as a waterfall across the three
// processes; a killed child shows as restarting and a deploy's steps appear,
// live; no console error. Its data need the key.
func TestDashboard(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	w := newWorld(t, bins.pipeline, "pipeline")
	mf := w.appManifest(t)
	w.writeDesired(t, mf)
	port := freePort(t)
	ms := w.startMothershipOn(port, "FLASH_MANIFEST_PATH="+w.desiredPath(),
		// What flash run --trace sets (cmd/flash collectTracesEnv).
		"FLASH_TRACE_COLLECT=1", "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:"+strconv.Itoa(port),
		"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20"+apiKey, "OTEL_BSP_SCHEDULE_DELAY=200")
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL

	// The page holds no data and loads without the key; its data do not.
	if r := mustSend(t, http.MethodGet, ms.url+"/flash/ui", "", nil); r.Code != http.StatusOK || !strings.Contains(string(r.Body), "app.js") {
		t.Fatalf("GET /flash/ui without the key: %s", r)
	}
	for _, path := range []string{"/flash/ui/events", "/flash/traces", "/v1/traces"} {
		method := http.MethodGet
		if path == "/v1/traces" {
			method = http.MethodPost
		}
		if r := mustSend(t, method, ms.url+path, "", nil); r.Code != http.StatusUnauthorized {
			t.Fatalf("%s %s without the key: %s, want 401", method, path, r)
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Headless, chromedp.WindowSize(1440, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	// Console messages from the first page load on; errors are problems.
	msgs := chromedp.Console(ctx)
	var (
		mu       sync.Mutex
		problems []string
	)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	defer func() { cancel(); <-consoleDone }()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(ms.url+"/flash/ui#key="+url.QueryEscape(apiKey)),
		chromedp.WaitVisible(chromedp.CSS(`#graph [data-resource="api"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#graph [data-resource="embedder"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#graph [data-resource="summarizer"]`)),
	); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}
	poll := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("%s never showed: %v", what, err)
		}
	}
	if version, live := text("#version"), text("#conn"); version != strconv.FormatInt(st.Version, 10) || live != "live" {
		t.Fatalf("version %q, connection %q; want %d and live", version, live, st.Version)
	}
	for _, r := range pipelineResources {
		applied := text(fmt.Sprintf(`#instances tr[data-resource=%q] td:nth-child(3)`, r))
		if applied != strconv.FormatInt(st.Version, 10) || !strings.Contains(text("#deploys"), r) {
			t.Errorf("%s: applied version %q, want %d; or missing from the deploy steps", r, applied, st.Version)
		}
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#deploys [data-step="published"]').length`)); err != nil || n == 0 {
		t.Errorf("no publish step in the timeline (%v): %q", err, text("#deploys"))
	}

	// The edge counters grow with calls, live.
	calls := func(edge string) string {
		return fmt.Sprintf(`Number((document.querySelector('#edges tr[data-edge=%q] td:nth-child(3)') || {}).textContent || 0)`, edge)
	}
	for round := 1; round <= 2; round++ {
		for range 3 {
			if _, err := processWith(apiURL); err != nil {
				t.Fatal(err)
			}
		}
		for _, edge := range []string{"api>embedder", "api>summarizer"} {
			poll(fmt.Sprintf("%d calls on %s", 3*round, edge), fmt.Sprintf(`%s >= %d && document.querySelector('#graph [data-edge=%q]') !== null`, calls(edge), 3*round, edge))
		}
	}
	// A failed call is listed among the errors with its trace.
	if r := mustSend(t, http.MethodPost, apiURL+"/process", apiKey, textIn{Text: " "}); r.Code < 400 {
		t.Fatalf("POST /process with no text: %s, want a failure", r)
	}
	poll("the failed call in the errors", `document.querySelector('#errors a[href^="#trace="]') !== null`)
	screenshot(t, ctx, "dashboard.png")

	// A trace across the three processes opens as a waterfall.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const a = [...document.querySelectorAll('#traces li')].find((li) => li.textContent.includes("embedder") && li.textContent.includes("summarizer"));
		if (a) location.hash = a.querySelector("a").getAttribute("href");
		return !!a;
	})()`)); err != nil {
		t.Fatal(err)
	}
	poll("the trace's waterfall", `["api", "embedder", "summarizer"].every((s) => document.querySelector('#waterfall .span[data-service="' + s + '"]'))`)
	screenshot(t, ctx, "dashboard-trace.png")
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\u001b")); err != nil { // Esc: back to the dashboard
		t.Fatal(err)
	}
	poll("the dashboard again after Esc", `!document.querySelector('#overview').hidden && document.querySelector('#trace').hidden`)

	// A killed child shows as restarting, then restarted, without reloading the page.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		window.sawRestarting = false;
		new MutationObserver(() => {
			if (document.querySelector('#graph [data-resource="embedder"].status-restarting')) window.sawRestarting = true;
		}).observe(document.querySelector("#graph"), { childList: true, subtree: true, attributes: true });
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}
	w.killPID(t, w.endpointOf(t, "embedder").PID)
	poll("embedder restarting", `window.sawRestarting`)
	poll("the restart of embedder", `document.querySelector('#resources tr[data-resource="embedder"] td:nth-child(5)').textContent !== "0"`)

	// A deploy's steps appear while the page stays open.
	ms.settle(t, 60*time.Second)
	object(t, object(t, mf, "resources"), "embedder")["env"] = map[string]any{"EMBED_MODE": "dashboard"}
	d := ms.deployAsync(t, encodeJSON(t, mf))
	<-d.done
	if d.err != nil || d.report == nil {
		t.Fatalf("deploy: %v", d.err)
	}
	after := ms.status(t).Version
	poll(fmt.Sprintf("the deploy of version %d", after), fmt.Sprintf(
		`document.querySelector('#version').textContent === "%d" && document.querySelector('#deploys li[data-resource="embedder"] [data-step="published"][data-version="%d"]') !== null`,
		after, after))
	screenshot(t, ctx, "dashboard-deploy.png")
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("browser problems: %v", problems)
	}
}

// screenshot saves the page to docs/name when FLASH_SCREENSHOTS is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	if os.Getenv("FLASH_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
