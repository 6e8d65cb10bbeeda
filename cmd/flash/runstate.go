package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/flash-go/flash/internal/atomicfile"
	"github.com/flash-go/flash/internal/layout"
)

// runRecord is what a running `flash run` writes to the app's run.json, so
// that other commands in the directory find its mothership.
type runRecord struct {
	App           string    `json:"app"`
	Mothership    string    `json:"mothership"`
	PID           int       `json:"pid"`                      // the flash run process
	MothershipPID int       `json:"mothership_pid,omitempty"` // its mothership process
	Started       time.Time `json:"started"`
}

// runLock is the app's run.lock, held (flock) for as long as a `flash run`
// of the app runs in this directory; the kernel releases it when the process
// ends in any way, so a lock that can be taken means nothing runs.
type runLock struct {
	f   *os.File
	app layout.App
}

// alreadyRunning says where the running `flash run` of an app is.
type alreadyRunning struct {
	app string
	rec runRecord // zero when run.json was unreadable
	cmd string    // how to call this CLI, for the hint
}

func (a alreadyRunning) Error() string {
	if a.rec.Mothership == "" {
		return fmt.Sprintf("%s is already running in this directory (`flash run` holds its lock); stop that one first", a.app)
	}
	return fmt.Sprintf("%s is already running in this directory: mothership %s, `flash run` pid %d.\n"+
		"Use it (`%s status`), or stop it (Ctrl-C in its terminal, or `kill %d`) before starting another.",
		a.app, a.rec.Mothership, a.rec.PID, a.cmd, a.rec.PID)
}

// lockRun takes the app's run lock, or returns alreadyRunning.
func lockRun(app layout.App, name, self string) (*runLock, error) {
	if err := os.MkdirAll(app.Path(), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", app.Path(), err)
	}
	f, err := os.OpenFile(app.Lock(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", app.Lock(), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			rec, _ := readRecord(app)
			return nil, alreadyRunning{app: name, rec: rec, cmd: self}
		}
		return nil, fmt.Errorf("lock %s: %w", app.Lock(), err)
	}
	return &runLock{f: f, app: app}, nil
}

// record writes run.json.
func (l *runLock) record(r runRecord) error {
	b, _ := json.MarshalIndent(r, "", "  ")
	return atomicfile.Write(l.app.Run(), append(b, '\n'), 0o644)
}

// release removes run.json and gives the lock up.
func (l *runLock) release() {
	os.Remove(l.app.Run())
	l.f.Close() // closing the descriptor releases the flock
}

func readRecord(app layout.App) (runRecord, error) {
	var r runRecord
	b, err := os.ReadFile(app.Run())
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", app.Run(), err)
	}
	return r, nil
}

// locked reports whether a `flash run` holds the app's lock now.
func locked(app layout.App) bool {
	f, err := os.Open(app.Lock())
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// runningHere returns the records of every `flash run` running in this
// directory (of app only, when app is not ""), by app name.
func runningHere(dir layout.Dir, app string) []runRecord {
	var out []runRecord
	for _, name := range dir.Apps() {
		if app != "" && name != layout.SafeName(app) {
			continue
		}
		a := dir.App(name)
		if !locked(a) {
			continue
		}
		if r, err := readRecord(a); err == nil && r.Mothership != "" {
			out = append(out, r)
		}
	}
	return out
}

// mothershipFlagHelp describes --mothership for every command that has it.
const mothershipFlagHelp = "mothership base URL (default $FLASH_MOTHERSHIP_URL, else the one a `flash run` in this directory runs)"

// noMothership is returned when no rule of findMothership gives a URL.
type noMothership struct{ cmd string }

func (n noMothership) Error() string {
	return fmt.Sprintf("no mothership to talk to: no `flash run` is running in this directory.\n"+
		"Start one (`%s run`), or name a mothership with --mothership URL or FLASH_MOTHERSHIP_URL.", n.cmd)
}

// findMothership is the one discovery rule of every command that talks to a
// mothership: --mothership, else FLASH_MOTHERSHIP_URL, else the URL recorded
// by a `flash run` running in this directory (of app, when given). Each may
// list several motherships, comma-separated (they share one store): the
// first that answers is used.
func findMothership(flagValue, app, self string) (string, error) {
	if flagValue != "" {
		return firstAnswering("--mothership", flagValue)
	}
	if v := os.Getenv("FLASH_MOTHERSHIP_URL"); v != "" {
		return firstAnswering("FLASH_MOTHERSHIP_URL", v)
	}
	recs := runningHere(layout.In(""), app)
	switch len(recs) {
	case 0:
		return "", noMothership{cmd: self}
	case 1:
		return firstAnswering("the run record", recs[0].Mothership)
	}
	var list []string
	for _, r := range recs {
		list = append(list, fmt.Sprintf("%s (%s)", r.App, r.Mothership))
	}
	return "", usageError{fmt.Sprintf("several apps run in this directory: %s; say which with --mothership URL", strings.Join(list, ", "))}
}

// probeTimeout bounds the probe of one mothership of a list.
const probeTimeout = 2 * time.Second

// firstAnswering returns the first mothership of a comma-separated list that
// answers GET /ping; the first of the list when none does (the command then
// fails on it with a clear error) or when there is only one.
func firstAnswering(from, list string) (string, error) {
	var urls []string
	for part := range strings.SplitSeq(list, ",") {
		u, err := normalizeURL(from, part)
		if err != nil {
			return "", err
		}
		urls = append(urls, u)
	}
	if len(urls) == 1 {
		return urls[0], nil
	}
	client := &http.Client{Timeout: probeTimeout}
	for _, u := range urls {
		resp, err := client.Get(u + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return u, nil
			}
		}
	}
	return urls[0], nil
}

// normalizeURL accepts host:port without a scheme (http is meant) and drops
// a trailing slash; anything that is not an http(s) URL with a host is a
// usage error naming where it came from.
func normalizeURL(from, s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	s = strings.TrimRight(s, "/")
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", usageError{fmt.Sprintf("%s %q is not a mothership URL (want http://host:port)", from, s)}
	}
	return s, nil
}
