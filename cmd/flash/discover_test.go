package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
)

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:8080":          "http://localhost:8080",
		"http://127.0.0.1:9090/":  "http://127.0.0.1:9090",
		" https://ms.example.com": "https://ms.example.com",
		"127.0.0.1:1/base":        "http://127.0.0.1:1/base",
		"ftp://x":                 "",
		"http://":                 "",
		"http://x?y=1":            "",
		"::::":                    "",
	} {
		got, err := normalizeURL("--mothership", in)
		if want == "" {
			var u usageError
			if !errors.As(err, &u) {
				t.Errorf("%q: %q %v, want a usage error", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q → %q %v, want %q", in, got, err, want)
		}
	}
}

// The discovery rule: flag, else FLASH_MOTHERSHIP_URL, else a running
// `flash run` here; none is an error, several ask which.
func TestFindMothership(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("FLASH_MOTHERSHIP_URL", "")
	var none noMothership
	if _, err := findMothership("", "", "flash"); !errors.As(err, &none) || !strings.Contains(err.Error(), "flash run") {
		t.Fatalf("nothing running: %v", err)
	}
	dir := layout.In("")
	hold := func(app, url string) *runLock {
		l, err := lockRun(dir.App(app), app, "flash")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.record(runRecord{App: app, Mothership: url, PID: 1}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := hold("a", "http://127.0.0.1:9001")
	if got, err := findMothership("", "", "flash"); err != nil || got != "http://127.0.0.1:9001" {
		t.Fatalf("one running: %q %v", got, err)
	}
	// A record whose lock is free is a dead run's: not a mothership to use.
	b := hold("b", "http://127.0.0.1:9002")
	b.f.Close()
	if got, err := findMothership("", "", "flash"); err != nil || got != "http://127.0.0.1:9001" {
		t.Fatalf("stale record: %q %v", got, err)
	}
	c := hold("c", "http://127.0.0.1:9003")
	var u usageError
	if _, err := findMothership("", "", "flash"); !errors.As(err, &u) || !strings.Contains(err.Error(), "several apps") {
		t.Fatalf("two running: %v", err)
	}
	if got, err := findMothership("", "c", "flash"); err != nil || got != "http://127.0.0.1:9003" {
		t.Fatalf("by app: %q %v", got, err)
	}
	// A list: the first that answers; the first when none does.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	t.Setenv("FLASH_MOTHERSHIP_URL", "127.0.0.1:1,"+up.URL)
	if got, err := findMothership("", "", "flash"); err != nil || got != up.URL {
		t.Fatalf("env list: %q %v, want %s", got, err, up.URL)
	}
	t.Setenv("FLASH_MOTHERSHIP_URL", "127.0.0.1:1,127.0.0.1:2")
	if got, err := findMothership("", "", "flash"); err != nil || got != "http://127.0.0.1:1" {
		t.Fatalf("env list, none up: %q %v", got, err)
	}
	t.Setenv("FLASH_MOTHERSHIP_URL", "127.0.0.1:1,ftp://x")
	if _, err := findMothership("", "", "flash"); err == nil {
		t.Fatal("env list with a bad URL: no error")
	}
	if got, err := findMothership("localhost:7", "", "flash"); err != nil || got != "http://localhost:7" {
		t.Fatalf("flag: %q %v", got, err)
	}
	// A second lock of a running app names the first run.
	_, err := lockRun(dir.App("a"), "a", "flash")
	if !strings.Contains(err.Error(), "already running") || !strings.Contains(err.Error(), "http://127.0.0.1:9001") {
		t.Fatalf("second lock: %v", err)
	}
	a.release()
	c.release()
	t.Setenv("FLASH_MOTHERSHIP_URL", "")
	if _, err := findMothership("", "", "flash"); err == nil || strings.Contains(err.Error(), "9001") {
		t.Fatalf("released: %v", err)
	}
}

func TestStatusOfANonFlashServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Welcome to nginx</body></html>"))
	}))
	defer srv.Close()
	code, _, errOut := runCLI(t, "status", "--mothership", strings.TrimPrefix(srv.URL, "http://"))
	if code != exitFail || !strings.Contains(errOut, "not a flash mothership") || strings.Contains(errOut, "nginx") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// Commands never report success when their mothership cannot be reached.
func TestUnreachableMothershipIsAFailure(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	valid := firstValidManifest(t)
	t.Chdir(t.TempDir())
	t.Setenv("FLASH_MOTHERSHIP_URL", "")
	for _, args := range [][]string{
		{"undeploy", "--app", "pipeline", "--mothership", addr},
		{"invalidate", "--mothership", addr},
		{"deploy", "--mothership", addr, valid},
		{"status"},
		{"undeploy", "--app", "pipeline"}, // no flash run here and no state to clean
	} {
		if code, out, errOut := runCLI(t, args...); code != exitFail || strings.Contains(out, "stopped") {
			t.Errorf("flash %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}

func firstValidManifest(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("../../testdata/manifests/valid/*.json")
	if len(m) == 0 {
		t.Fatal("no valid manifest fixture")
	}
	abs, _ := filepath.Abs(m[0])
	return abs
}

func instance(resource, id string, applied int64, seen time.Time) mothership.InstanceStatus {
	return mothership.InstanceStatus{Resource: resource, Instance: id, AppliedVersion: applied, LastSeen: seen}
}

func TestPrintStatusShowsGoneInstances(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := statusView{Version: 3, Resources: map[string]statusResource{"api": {Status: "deployed", EndpointURL: "http://x"}}}
	st.Instances = append(st.Instances,
		instance("api", "old/0", 3, now.Add(-90*time.Second)),
		instance("api", "new/0", 3, now.Add(-5*time.Second)),
		instance("api", "lag/0", 2, now.Add(-5*time.Second)))
	undeployed := instance("api", "undeployed/0", 3, now.Add(-time.Second))
	undeployed.State = mothership.InstanceGone
	st.Instances = append(st.Instances, undeployed)
	var b strings.Builder
	printStatus(&b, "http://ms", st, now)
	for _, want := range []string{"old/0", "gone", "up to date", "behind", "REPLICAS"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Count(b.String(), "gone") != 2 {
		t.Errorf("old/0 and undeployed/0 are gone, and only they:\n%s", b.String())
	}
}

func TestStatusChanges(t *testing.T) {
	m := &manifest.Manifest{ProjectName: "p", Resources: map[string]*manifest.Resource{
		"api": {Name: "api", LoadBalanced: true}, "q": {Name: "q"}, "r": {Name: "r"}, "w": {Name: "w"}}}
	before := statusView{Resources: map[string]statusResource{
		"api": {Status: "deployed", EndpointURL: "http://127.0.0.1:1"},
		"q":   {Status: "deployed", EndpointURL: "http://127.0.0.1:2"},
		"r":   {Status: "deployed", EndpointURL: "http://127.0.0.1:4"},
		"w":   {Status: "deployed", EndpointURL: "http://127.0.0.1:3"}}}
	after := statusView{Resources: map[string]statusResource{
		"api": {Status: "deployed", EndpointURL: "http://127.0.0.1:9", Restarts: 1},
		"q":   {Status: "failed", Error: "exited"},
		"r":   {Status: "deployed", EndpointURL: "http://127.0.0.1:4", Restarts: 2},
		"w":   {Status: "deployed", EndpointURL: "http://127.0.0.1:3"}}}
	got := statusChanges(before, after, "http://ms", m)
	want := []string{
		"api moved to http://127.0.0.1:9 (its public address http://ms/api is unchanged)",
		"q failed: exited",
		"r restarted, at the same address (restarts so far: 2)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	const scaling = "REQUEST_COUNT 1, 1-3 replicas, idle 2s"
	one := statusView{Resources: map[string]statusResource{"w": {Status: "deployed", EndpointURL: "http://127.0.0.1:3", Scaling: scaling}}}
	two := statusView{Resources: map[string]statusResource{"w": {Status: "deployed", Scaling: scaling,
		EndpointURLs: []string{"http://127.0.0.1:3", "http://127.0.0.1:5"}}}}
	if got := statusChanges(one, two, "http://ms", m); len(got) != 1 || got[0] != "w scaled from 1 to 2 replicas (REQUEST_COUNT 1, 1-3 replicas, idle 2s)" {
		t.Errorf("scaling reported as %q", got)
	}
	if len(statusChanges(after, after, "http://ms", m)) != 0 {
		t.Error("no change reported as one")
	}
}

func TestPrintStatusShowsMotherships(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := statusView{Version: 3, Motherships: []mothership.MothershipStatus{
		{URL: "http://127.0.0.1:8080", Up: true, Version: 3, LastSeen: now.Add(-time.Second)},
		{URL: "http://127.0.0.1:8081", Up: true, Leader: true, Since: now.Add(-time.Minute), Version: 3, LastSeen: now},
		{URL: "http://127.0.0.1:8082", Version: 2, LastSeen: now.Add(-time.Minute)},
	}}
	var b strings.Builder
	printStatus(&b, "http://127.0.0.1:8080", st, now)
	out := b.String()
	for _, want := range []string{"MOTHERSHIP", "http://127.0.0.1:8080  follower", "http://127.0.0.1:8081  leader since", "(1m0s ago)", "http://127.0.0.1:8082  down"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var alone strings.Builder
	printStatus(&alone, "http://127.0.0.1:8080", statusView{Version: 1}, now)
	if strings.Contains(alone.String(), "MOTHERSHIP") {
		t.Errorf("a lone mothership's status lists motherships:\n%s", alone.String())
	}
}
