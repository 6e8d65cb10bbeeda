package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/layout"
)

// logsDir makes the logs directory of app "demo" in a fresh working directory.
func logsDir(t *testing.T) string {
	t.Chdir(t.TempDir())
	dir := layout.In("").App("demo").Logs()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// slogLine is a line as slog's text handler writes it, at second s.
func slogLine(s int, level, msg string) string {
	at := time.Date(2026, 12, 1, 4, 0, s, 0, time.UTC).Format(time.RFC3339Nano)
	return fmt.Sprintf("time=%s level=%s msg=%q\n", at, level, msg)
}

func writeLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "")); err != nil {
		t.Fatal(err)
	}
}

// msgs lists "source msg" for each structured line of out, and the text of others.
func msgs(out string) []string {
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		source, text, _ := strings.Cut(l, "| ")
		source = strings.TrimSpace(source)
		if rec, ok := parseLogLine([]byte(text)); ok {
			got = append(got, source+" "+rec.get("msg"))
		} else {
			got = append(got, source+" "+text)
		}
	}
	return got
}

func TestLogsMergeFilter(t *testing.T) {
	dir := logsDir(t)
	writeLog(t, filepath.Join(dir, "api.log.1"), slogLine(1, "INFO", "api old"))
	writeLog(t, filepath.Join(dir, "api.log"),
		slogLine(3, "INFO", "api starts"), slogLine(6, "ERROR", "api panics"), "goroutine 1 [running]:\n", slogLine(7, "DEBUG", "api debug"))
	writeLog(t, filepath.Join(dir, "embedder.log"), slogLine(2, "WARN", "embedder slow"), slogLine(5, "INFO", "embedder ready"))
	writeLog(t, filepath.Join(dir, "mothership.log"),
		`{"time":"2026-12-01T04:00:04Z","level":"INFO","msg":"mothership deploys"}`+"\n")

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"all, merged in time order", nil, []string{
			"api api old", "embedder embedder slow", "api api starts", "mothership mothership deploys",
			"embedder embedder ready", "api api panics", "api goroutine 1 [running]:", "api api debug"}},
		{"one resource", []string{"embedder"}, []string{"embedder embedder slow", "embedder embedder ready"}},
		{"two resources", []string{"embedder", "mothership"}, []string{
			"embedder embedder slow", "mothership mothership deploys", "embedder embedder ready"}},
		{"level warn keeps a trace with its line", []string{"--level", "warn"}, []string{
			"embedder embedder slow", "api api panics", "api goroutine 1 [running]:"}},
		{"the last line of each", []string{"-n", "1"}, []string{
			"mothership mothership deploys", "embedder embedder ready", "api api debug"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"logs", "--app", "demo"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if got := msgs(out); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestLogsBadInput(t *testing.T) {
	dir := logsDir(t)
	writeLog(t, filepath.Join(dir, "api.log"), slogLine(1, "INFO", "hi"))
	for _, args := range [][]string{
		{"nosuch"}, {"--level", "loud"}, {"-n", "-1"}, {"-n", "100001"},
	} {
		code, _, errOut := runCLI(t, append([]string{"logs", "--app", "demo"}, args...)...)
		if code != exitUsage || errOut == "" {
			t.Errorf("logs %v: exit %d (%s), want a usage error", args, code, errOut)
		}
	}
	code, _, errOut := runCLI(t, "logs", "--app", "other")
	if code != exitFail || !strings.Contains(errOut, "no logs") {
		t.Errorf("logs of an app without logs: exit %d: %s", code, errOut)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsFollow: -f prints appended lines, and the lines of a log across
// its rotation (copied to .1, then emptied) once each.
func TestLogsFollow(t *testing.T) {
	dir := logsDir(t)
	api := filepath.Join(dir, "api.log")
	writeLog(t, api, slogLine(1, "INFO", "first"))
	writeLog(t, filepath.Join(dir, "embedder.log"))

	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"logs", "--app", "demo", "-f"}, strings.NewReader(""), &out, &out)
	}()
	wait := func(what string, cond func([]string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(msgs(out.String())) {
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("waiting for %s; output:\n%s", what, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	count := func(got []string, s string) int {
		n := 0
		for _, g := range got {
			if g == s {
				n++
			}
		}
		return n
	}
	wait("the first line", func(got []string) bool { return count(got, "api first") == 1 })

	appendLog(t, api, slogLine(2, "INFO", "second"))
	appendLog(t, filepath.Join(dir, "embedder.log"), slogLine(3, "INFO", "third"))
	wait("appended lines", func(got []string) bool {
		return count(got, "api second") == 1 && count(got, "embedder third") == 1
	})

	// Rotation as the local provider does it.
	appendLog(t, api, slogLine(4, "INFO", "before rotation"))
	data, err := os.ReadFile(api)
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, api+".1", string(data))
	if err := os.Truncate(api, 0); err != nil {
		t.Fatal(err)
	}
	appendLog(t, api, slogLine(5, "INFO", "after"))
	wait("lines around the rotation", func(got []string) bool {
		return count(got, "api before rotation") == 1 && count(got, "api after") == 1
	})
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d", code)
	}
	got := msgs(out.String())
	for _, s := range []string{"api first", "api second", "embedder third", "api before rotation", "api after"} {
		if count(got, s) != 1 {
			t.Errorf("%q shown %d times:\n%s", s, count(got, s), out.String())
		}
	}
}

// FuzzLogLine: any line gets a verdict and, with a time, a parsed one,
// without a panic.
func FuzzLogLine(f *testing.F) {
	for _, s := range []string{slogLine(1, "INFO", "x"), `{"time":"2026-12-01T04:00:04Z","level":"WARN","msg":"m"}`,
		"goroutine 1 [running]:", "time=bad level=INFO msg=x", "time=", "{", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r := &logReader{min: slog.LevelWarn}
		s := &logSource{name: "api"}
		l, _ := r.filter(s, []byte(line))
		if at, ok := lineTime([]byte(line)); ok && !l.at.Equal(at) {
			t.Fatalf("line time %v, parsed %v", l.at, at)
		}
	})
}
