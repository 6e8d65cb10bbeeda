package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// logStreamer writes the logs of every process of a topology to one output,
// each line prefixed with its source, coloured on a terminal. Unless verbose,
// it shows only what a person needs: one line per reconcile step, warnings
// and errors, and lines that are not structured logs (a panic's trace).
type logStreamer struct {
	mu       sync.Mutex
	out      io.Writer
	color    bool
	colors   map[string]string
	verbose  bool
	shown    slog.Level      // with verbose, structured lines below it are dropped
	observe  func(logRecord) // sees every structured line of the mothership
	stopping atomic.Bool     // while stopping, the expected complaints are not shown
}

var palette = []string{"\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[31m"}

func newLogStreamer(out io.Writer, color, verbose bool, observe func(logRecord)) *logStreamer {
	return &logStreamer{out: out, color: color, colors: map[string]string{}, verbose: verbose, observe: observe}
}

// emit shows one line of a process, or not (see logStreamer).
func (l *logStreamer) emit(source string, text []byte) {
	rec, structured := parseLogLine(text)
	if structured && source == mothershipSource && l.observe != nil {
		l.observe(rec)
	}
	switch {
	case l.verbose:
		if !structured || rec.level() >= l.shown {
			l.line(source, text)
		}
	case l.stopping.Load():
	case !structured:
		if !bytes.HasPrefix(text, []byte("flash: ")) { // the local provider's note at each start
			l.line(source, text)
		}
	case rec.get("msg") == msgReconcile:
		if s := reconcileLine(rec); s != "" {
			l.notice(s)
		}
	case strings.HasPrefix(rec.get("msg"), "endpoint "):
		if s := endpointLine(rec); s != "" {
			l.notice(s)
		} else if rec.important() {
			l.line(source, []byte(rec.short(source)))
		}
	case rec.important():
		l.line(source, []byte(rec.short(source)))
	}
}

// mothershipSource is the prefix of the mothership's lines.
const mothershipSource = "mothership"

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// line writes one line with its source's prefix.
func (l *logStreamer) line(source string, text []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.color {
		fmt.Fprintf(l.out, "%-11s| %s\n", source, text)
		return
	}
	c, ok := l.colors[source]
	if !ok {
		c = palette[len(l.colors)%len(palette)]
		l.colors[source] = c
	}
	fmt.Fprintf(l.out, "%s%-11s|\x1b[0m %s\n", c, source, text)
}

// notice writes a line of flash run's own.
func (l *logStreamer) notice(msg string) { l.line("flash", []byte(msg)) }

// writer returns an io.Writer that prefixes each complete line with source.
func (l *logStreamer) writer(source string) io.Writer { return &lineWriter{l: l, source: source} }

type lineWriter struct {
	l      *logStreamer
	source string
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.l.emit(w.source, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// tail follows dir/<resource>.log for every resource from its current end,
// until the returned stop function is called (which reads what is left).
func (l *logStreamer) tail(dir string, resources []string) (stop func()) {
	type file struct {
		name   string
		offset int64
		w      *lineWriter
	}
	files := make([]*file, 0, len(resources))
	for _, r := range resources {
		f := &file{name: filepath.Join(dir, r+".log"), w: &lineWriter{l: l, source: r}}
		if fi, err := os.Stat(f.name); err == nil {
			f.offset = fi.Size() // earlier runs' lines are not news
		}
		files = append(files, f)
	}
	poll := func() {
		for _, f := range files {
			fh, err := os.Open(f.name)
			if err != nil {
				continue
			}
			if fi, err := fh.Stat(); err == nil && fi.Size() < f.offset {
				f.offset = 0 // truncated or replaced
			}
			fh.Seek(f.offset, io.SeekStart)
			n, _ := io.Copy(f.w, fh)
			f.offset += n
			fh.Close()
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				poll()
				return
			case <-t.C:
				poll()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}
}
