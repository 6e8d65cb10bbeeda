package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOwns(t *testing.T) {
	p := &Provider{cfg: Config{App: "app"}}
	tests := []struct {
		id   string
		want bool
	}{
		{"app/api/0a1b2c3d4e", true},
		{"app/my.res_1-x/ff", true},
		{"other/api/0a1b2c3d4e", false},
		{"app/x/api/0a1b2c3d4e", false}, // app "app/x"
		{"app/api", false},
		{"app//ff", false},
		{"app/api/", false},
		{"app/api/ff/0", false},
		{"", false},
		{"app", false},
	}
	for _, tt := range tests {
		if got := p.owns(tt.id); got != tt.want {
			t.Errorf("owns(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func FuzzOwns(f *testing.F) {
	f.Add("app", "api", "app/x")
	f.Add("a/b", "r", "a")
	f.Add("x", "..", "x/..")
	f.Fuzz(func(t *testing.T, app, resource, otherApp string) {
		if app == "" || otherApp == "" || app == otherApp {
			return
		}
		p := &Provider{cfg: Config{App: app}}
		q := &Provider{cfg: Config{App: otherApp}}
		id := p.newID(resource)
		if validResource(resource) && !p.owns(id) {
			t.Fatalf("app %q does not own its id %q", app, id)
		}
		if q.owns(id) {
			t.Fatalf("app %q owns %q of app %q", otherApp, id, app)
		}
	})
}

func TestPortOf(t *testing.T) {
	tests := map[string]int{
		"http://127.0.0.1:8080":  8080,
		"http://127.0.0.1:8080/": 8080,
		"http://127.0.0.1":       0,
		"http://127.0.0.1:0":     0,
		"http://127.0.0.1:70000": 0,
		"":                       0,
		"garbage":                0,
	}
	for url, want := range tests {
		if got := portOf(url); got != want {
			t.Errorf("portOf(%q) = %d, want %d", url, got, want)
		}
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	old := "old line\n"
	var b strings.Builder
	for i := range 30 {
		b.WriteString("line " + string(rune('a'+i%26)) + "\n")
	}
	if err := os.WriteFile(path, []byte(old+b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := logTail(path, int64(len(old)))
	lines := strings.Split(got, "\n")
	if len(lines) != tailLines || strings.Contains(got, "old") || lines[len(lines)-1] != "line d" {
		t.Fatalf("logTail = %q", got)
	}
	if got := logTail(path, 1<<20); got != "" {
		t.Errorf("tail past the end = %q", got)
	}
	if got := logTail(filepath.Join(t.TempDir(), "missing"), 0); got != "" {
		t.Errorf("tail of a missing file = %q", got)
	}
	if got := lastLines("a\nb\n", 5); got != "a\nb" {
		t.Errorf("lastLines = %q", got)
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("FLASH_IS_MOTHERSHIP", "true")
	t.Setenv("FLASH_INSTANCE_ID", "parent")
	env := childEnv(map[string]string{"A": "base", "B": "base"}, map[string]string{"B": "spec", "PORT": "1"}, "res")
	m := make(map[string]string)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := m[k]; dup {
			t.Errorf("duplicate %s", k)
		}
		m[k] = v
	}
	for k, want := range map[string]string{"A": "base", "B": "spec", "FLASH_RESOURCE_NAME": "res", "FLASH_HOST": "127.0.0.1"} {
		if m[k] != want {
			t.Errorf("%s = %q, want %q", k, m[k], want)
		}
	}
	for _, k := range []string{"FLASH_IS_MOTHERSHIP", "PORT", "FLASH_INSTANCE_ID"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present", k)
		}
	}
}

func TestBackoffTunables(t *testing.T) {
	p, err := New(Config{App: "a", Store: newTestStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.cfg.LogDir != filepath.Join(".flash", "apps", "a", "logs") || p.cfg.HealthTimeout != DefaultHealthTimeout || p.cfg.StopGrace != DefaultStopGrace ||
		p.minBackoff != 500e6 || p.maxBackoff != 30e9 || p.resetAfter != 60e9 {
		t.Fatalf("defaults: %+v", p)
	}
}

func TestFindInstance(t *testing.T) {
	// A running process is found by its instance id; an unknown id is not.
	cmd := exec.Command(childBin)
	cmd.Env = append(os.Environ(), "PORT=0", "FLASH_INSTANCE_ID=app/res/abc/0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if got := findInstance(childBin, "app/res/abc/0"); got != cmd.Process.Pid {
		t.Fatalf("found pid %d, want %d", got, cmd.Process.Pid)
	}
	if findInstance(childBin, "app/res/abc/1") != 0 || findInstance(childBin, "") != 0 {
		t.Fatal("an unknown instance was found")
	}
}
