package e2e

import (
	"context"
	"fmt"
	"net/http"
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

// TestDashboard opens the mothership's dashboard in headless Chromium: it
// loads from the link with the key, shows the three resources, their
// version and the children's applied versions, the deploy's steps, and a
// killed child's restart live, with no console error. Its data need the key.
func TestDashboard(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	w := newWorld(t, bins.pipeline, "pipeline")
	mf := w.appManifest(t)
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)

	// The page holds no data and loads without the key; its data do not.
	if r := mustSend(t, http.MethodGet, ms.url+"/flash/ui", "", nil); r.Code != http.StatusOK || !strings.Contains(string(r.Body), "app.js") {
		t.Fatalf("GET /flash/ui without the key: %s", r)
	}
	if r := mustSend(t, http.MethodGet, ms.url+"/flash/ui/events", "", nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("GET /flash/ui/events without the key: %s, want 401", r)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Headless, chromedp.WindowSize(1280, 900))
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
		chromedp.Navigate(ms.url+"/flash/ui#key="+apiKey),
		chromedp.WaitVisible(chromedp.CSS(`#resources tr[data-resource="api"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#resources tr[data-resource="embedder"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#resources tr[data-resource="summarizer"]`)),
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
	if version, live := text("#version"), text("#conn"); version != strconv.FormatInt(st.Version, 10) || live != "live" {
		t.Fatalf("version %q, connection %q; want %d and live", version, live, st.Version)
	}
	children, deploys := text("#instances tbody"), text("#deploys")
	for _, r := range pipelineResources {
		if !strings.Contains(children, r) || !strings.Contains(deploys, r) {
			t.Errorf("%s missing: children %q, deploy steps %q", r, children, deploys)
		}
	}
	if !strings.Contains(deploys, "published") {
		t.Errorf("no publish step in the timeline: %q", deploys)
	}
	screenshot(t, ctx, "dashboard.png")

	// A killed child shows as restarted, without reloading the page.
	w.killPID(t, w.endpointOf(t, "embedder").PID)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.querySelector('#resources tr[data-resource="embedder"] td:nth-child(5)').textContent !== "0"`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the restart of embedder never showed: %v", err)
	}

	// A deploy's steps appear while the page stays open.
	ms.settle(t, 60*time.Second)
	object(t, object(t, mf, "resources"), "embedder")["env"] = map[string]any{"EMBED_MODE": "dashboard"}
	d := ms.deployAsync(t, encodeJSON(t, mf))
	<-d.done
	if d.err != nil || d.report == nil {
		t.Fatalf("deploy: %v", d.err)
	}
	after := ms.status(t).Version
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector('#version').textContent === "%d" && document.querySelector('#deploys').textContent.includes("embedder  changed  published  v%d")`,
		after, after), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the deploy of version %d never showed: %v\n%s", after, err, text("#deploys"))
	}
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
