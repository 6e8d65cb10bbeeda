package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/layout"
)

// Bounds of flash logs: the lines it shows before following, the rotated
// copies it reads, how often it looks for new lines.
const (
	defaultLogTail = 200
	maxLogTail     = 100_000
	maxLogRotated  = 1000 // rotated copies looked at per log (path.1 … path.N)
	followEvery    = 200 * time.Millisecond
)

func runLogs(e *env) int {
	fs := flag.NewFlagSet("flash logs", flag.ContinueOnError)
	follow := fs.Bool("f", false, "follow: keep printing new lines (Ctrl-C stops)")
	level := fs.String("level", "", "show structured lines at this level or above (debug, info, warn, error)")
	tail := fs.Int("n", defaultLogTail, "how many of the last lines to show first (per process, at most 100000)")
	app := fs.String("app", "", "the app (default: the one `flash run` runs here, else the last build's)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash logs [RESOURCE…] [-f] [--level L] [-n N] [--app NAME]")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	minLevel := slog.Level(math.MinInt) // everything
	if *level != "" {
		if err := minLevel.UnmarshalText([]byte(*level)); err != nil {
			return fail(e, usageError{fmt.Sprintf("logs: --level %q: want debug, info, warn or error", *level)})
		}
	}
	if *tail < 0 || *tail > maxLogTail {
		return fail(e, usageError{fmt.Sprintf("logs: -n %d: want 0 to %d", *tail, maxLogTail)})
	}
	name, err := targetApp("logs", *app, e.self)
	if err != nil {
		return fail(e, err)
	}
	dir := layout.In("").App(name).Logs()
	sources, err := logSources(dir, args)
	if err != nil {
		return fail(e, err)
	}
	out := newLogStreamer(e.stdout, isTerminal(e.stdout), true, nil)
	r := &logReader{min: minLevel, sources: sources}
	r.print(out, r.last(*tail))
	if !*follow {
		return exitOK
	}
	r.follow(e.ctx, out)
	return exitOK
}

// logSources returns the processes whose logs are in dir (<source>.log),
// only those named when names is not empty.
func logSources(dir string, names []string) ([]*logSource, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var have []string
	for _, p := range paths {
		have = append(have, strings.TrimSuffix(filepath.Base(p), ".log"))
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("no logs in %s: start the app with `flash run` first", dir)
	}
	want := have
	if len(names) > 0 {
		for _, n := range names {
			if !slices.Contains(have, n) {
				return nil, usageError{fmt.Sprintf("logs: no log of %q in %s (there are: %s)", n, dir, strings.Join(have, ", "))}
			}
		}
		want = names
	}
	var out []*logSource
	for _, n := range want {
		out = append(out, &logSource{name: n, path: filepath.Join(dir, n+".log")})
	}
	return out, nil
}

// logSource is one process's log file, its rotated copies beside it
// (path.1 the newest) as the local provider writes them.
type logSource struct {
	name   string
	path   string
	offset int64     // of path read so far (follow)
	at     time.Time // of the last line with a time
	shown  bool      // whether the last structured line passed the filter
}

// logLine is one line of a process with the time it sorts by.
type logLine struct {
	at     time.Time
	source string
	text   []byte
}

type logReader struct {
	min     slog.Level
	sources []*logSource
}

// last returns up to n of the last lines of each source, merged in time
// order. It reads the rotated copies oldest first, then the live file, and
// leaves each source's offset at the live file's end.
func (r *logReader) last(n int) []logLine {
	var all []logLine
	for _, s := range r.sources {
		var lines []logLine
		keep := func(l logLine) {
			if len(lines) == n { // a ring would be cheaper; n is small
				lines = lines[1:]
			}
			if n > 0 {
				lines = append(lines, l)
			}
		}
		for _, p := range rotatedCopies(s.path) {
			r.scan(s, p, 0, keep)
		}
		s.offset = r.scan(s, s.path, 0, keep)
		all = append(all, lines...)
	}
	sortLines(all)
	return all
}

// rotatedCopies lists path.N … path.1 that exist, oldest first.
func rotatedCopies(path string) []string {
	var out []string
	for i := 1; i <= maxLogRotated; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		out = append(out, p)
	}
	slices.Reverse(out)
	return out
}

// scan reads path from offset to its last complete line, passing the lines
// the filter keeps to emit, and returns the offset after that line.
func (r *logReader) scan(s *logSource, path string, offset int64, emit func(logLine)) int64 {
	f, err := os.Open(path)
	if err != nil {
		return offset
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) { // a very long line is shown in pieces
			return offset // a partial last line waits for its end
		}
		offset += int64(len(line))
		if l, ok := r.filter(s, bytes.TrimRight(line, "\r\n")); ok {
			emit(l)
		}
	}
}

// filter decides whether a line is shown and gives it its time: a line
// without one (a panic's trace) goes with the line before it.
func (r *logReader) filter(s *logSource, text []byte) (logLine, bool) {
	if at, ok := lineTime(text); ok {
		s.at = at
	}
	if rec, ok := parseLogLine(text); ok {
		s.shown = rec.level() >= r.min
	} else if s.at.IsZero() {
		s.shown = true
	}
	return logLine{at: s.at, source: s.name, text: slices.Clone(text)}, s.shown
}

// lineTime reads the time of a structured line (slog's text or JSON format).
func lineTime(text []byte) (time.Time, bool) {
	var raw string
	switch {
	case bytes.HasPrefix(text, []byte("time=")):
		raw, _, _ = strings.Cut(string(text[len("time="):]), " ")
	case len(text) > 0 && text[0] == '{':
		var v struct {
			Time string `json:"time"`
		}
		if json.Unmarshal(text, &v) != nil {
			return time.Time{}, false
		}
		raw = v.Time
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	return t, err == nil
}

// sortLines orders lines by time; lines of one time keep their order.
func sortLines(lines []logLine) {
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
}

func (r *logReader) print(out *logStreamer, lines []logLine) {
	for _, l := range lines {
		out.line(l.source, l.text)
	}
}

// follow prints the lines appended to each log until ctx ends, merged in
// time order within each poll. A log that shrank was rotated (copied to
// path.1, then emptied): the rest of its old content is read from path.1,
// then the new file from its start.
func (r *logReader) follow(ctx context.Context, out *logStreamer) {
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var batch []logLine
		add := func(l logLine) { batch = append(batch, l) }
		for _, s := range r.sources {
			fi, err := os.Stat(s.path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					s.offset = 0
				}
				continue
			}
			if fi.Size() < s.offset {
				r.scan(s, s.path+".1", s.offset, add)
				s.offset = 0
			}
			s.offset = r.scan(s, s.path, s.offset, add)
		}
		sortLines(batch)
		r.print(out, batch)
	}
}
