package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
	"github.com/flash-go/flash/store/storetest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.OpenConfig(t.Context(), sqlite.Config{Path: path, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.OpenConfig(t.Context(), sqlite.Config{
			Path:         filepath.Join(t.TempDir(), "state.db"),
			PollInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", ".flash")
	path := filepath.Join(dir, "state.db")
	s := open(t, path)
	if _, err := s.Publish(t.Context(), 0, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{dir: 0o700 | fs.ModeDir, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := t.Context()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Publish(ctx, 0, []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutDeployment(ctx, store.Deployment{Resource: "r", Status: "deployed"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, path) // schema already current: the migration is a no-op
	got, err := s2.Latest(ctx)
	if err != nil || got.Version != 1 || !bytes.Equal(got.Manifest, p.Manifest) || !got.PublishedAt.Equal(p.PublishedAt) {
		t.Errorf("Latest after reopen = %+v, %v; want %+v", got, err, p)
	}
	if ds, err := s2.Deployments(ctx); err != nil || len(ds) != 1 || ds[0].Status != "deployed" {
		t.Errorf("Deployments after reopen = %+v, %v", ds, err)
	}
}

func TestOpenEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, path) // a zero-length file is an empty database
	if _, err := s.Publish(t.Context(), 0, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
}

// snapshot is what must not change when Open refuses a file.
type snapshot struct {
	data    []byte
	modTime time.Time
	entries []string
}

func takeSnapshot(t *testing.T, path string) snapshot {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return snapshot{data, fi.ModTime(), names}
}

func (a snapshot) same(b snapshot) bool {
	return bytes.Equal(a.data, b.data) && a.modTime.Equal(b.modTime) && slices.Equal(a.entries, b.entries)
}

// validStore returns the path of a closed, valid store with a few versions.
func validStore(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "state.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	var prev int64
	for i := range 20 {
		p, err := s.Publish(t.Context(), prev, bytes.Repeat([]byte{'a' + byte(i)}, 3000))
		if err != nil {
			t.Fatal(err)
		}
		prev = p.Version
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawDB runs statements on a plain SQLite file, bypassing the store.
func rawDB(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	write := func(data []byte) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "state.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	random := make([]byte, 8192)
	for i := range random {
		random[i] = byte(i*7919 + i/13)
	}
	for _, tc := range []struct {
		name    string
		make    func(t *testing.T, dir string) string
		badFile bool   // errors.Is(err, ErrBadFile)
		want    string // in the message
	}{
		{"Text", write([]byte("this is my shopping list\n")), true, "not a database"},
		{"RandomBytes", write(random), true, "not a database"},
		{"HeaderThenGarbage", write(append([]byte("SQLite format 3\x00"), random...)), true, ""},
		{"CorruptPage", func(t *testing.T, dir string) string {
			path := validStore(t, dir)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Page 2 onwards holds the tables' b-trees; overwrite two pages.
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xAA}, 8192), 4096); err != nil {
				t.Fatal(err)
			}
			return path
		}, true, ""},
		{"ForeignDatabase", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "state.db")
			rawDB(t, path, `CREATE TABLE recipes (name TEXT)`, `INSERT INTO recipes VALUES ('soup')`)
			return path
		}, true, "no flash application_id"},
		{"OtherApplicationID", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "state.db")
			rawDB(t, path, `PRAGMA application_id = 1234`)
			return path
		}, true, "application_id"},
		{"NewerSchema", func(t *testing.T, dir string) string {
			path := validStore(t, dir)
			rawDB(t, path, `PRAGMA user_version = 99`)
			return path
		}, false, "schema version 99 is newer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.make(t, t.TempDir())
			before := takeSnapshot(t, path)
			s, err := sqlite.Open(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			t.Logf("error: %v", err)
			if errors.Is(err, sqlite.ErrBadFile) != tc.badFile {
				t.Errorf("errors.Is(err, ErrBadFile) = %v, want %v", !tc.badFile, tc.badFile)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should name %s and contain %q", err, path, tc.want)
			}
			if after := takeSnapshot(t, path); !before.same(after) {
				t.Errorf("Open changed the file or its directory: %v -> %v", before.entries, after.entries)
			}
		})
	}
}

func TestOpenRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := sqlite.Open(t.Context(), dir)
	if !errors.Is(err, sqlite.ErrBadFile) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Open(directory) = %v, want ErrBadFile naming %s", err, dir)
	}
}

func TestOpenReadOnly(t *testing.T) {
	path := validStore(t, t.TempDir())
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, path)
	s, err := sqlite.Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a read-only file succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("error %q: want fs.ErrPermission, naming %s, saying read-only", err, path)
	}
	if after := takeSnapshot(t, path); !before.same(after) {
		t.Error("Open changed the read-only file")
	}
}

func TestPrunesBeyondKeepVersions(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := t.Context()
	const extra = 5
	var prev int64
	for range sqlite.KeepVersions + extra {
		p, err := s.Publish(ctx, prev, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		prev = p.Version
	}
	if _, err := s.Get(ctx, extra); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%d) = %v, want ErrNotFound (pruned)", extra, err)
	}
	if _, err := s.Get(ctx, extra+1); err != nil {
		t.Errorf("Get(%d): %v", extra+1, err)
	}
	if h, err := s.History(ctx, 1000); err != nil || len(h) != sqlite.KeepVersions {
		t.Errorf("History = %d versions, %v; want %d", len(h), err, sqlite.KeepVersions)
	}
}

// With a synchronous notifier the first value a slow reader gets after the
// publishes return is the newest one, never an older one.
func TestWatchNeverStale(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := t.Context()
	ch := s.Watch(ctx, 0)
	var prev int64
	for range 5 {
		p, err := s.Publish(ctx, prev, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		prev = p.Version
	}
	if v := <-ch; v != 5 {
		t.Errorf("first value = %d, want 5", v)
	}
}

func TestCloseEndsWatches(t *testing.T) {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.Watch(t.Context(), 0), s.Watch(t.Context(), 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan int64{a, b} {
		if _, ok := <-ch; ok {
			t.Error("watch channel still open after Close")
		}
	}
}

// Two *Store values on one file behave like two processes: separate pools,
// coordinated only through the file.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	a, b := open(t, path), open(t, path)
	ctx := t.Context()
	ch := b.Watch(ctx, 0)
	for want := int64(1); want <= 3; want++ {
		if _, err := a.Publish(ctx, want-1, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-ch:
			if v != want {
				t.Fatalf("b's watch got %d, want %d", v, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("b's watch did not see version %d", want)
		}
	}
	if _, err := b.Publish(ctx, 2, []byte(`{}`)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("b.Publish(prev=2) = %v, want ErrConflict", err)
	}
	if p, err := b.Publish(ctx, 3, []byte(`{"b":1}`)); err != nil || p.Version != 4 {
		t.Errorf("b.Publish(prev=3) = %+v, %v", p, err)
	}
	if p, err := a.Latest(ctx); err != nil || string(p.Manifest) != `{"b":1}` {
		t.Errorf("a.Latest = %+v, %v", p, err)
	}
}

// A real second process publishes; this process's watch sees it, and the
// compare-and-swap holds across processes.
func TestOtherProcessPublish(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	ctx := t.Context()
	ch := s.Watch(ctx, 0)

	child := func(prev int64) (int, string) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+strconv.FormatInt(prev, 10)+" "+path)
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(ee.Stderr)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, strings.TrimSpace(string(out))
	}
	if code, out := child(0); code != 0 || out != "1" {
		t.Fatalf("child publish: exit %d, %q", code, out)
	}
	select {
	case v := <-ch:
		if v != 1 {
			t.Errorf("watch got %d, want 1", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not see the other process's publish")
	}
	if code, out := child(0); code != 2 {
		t.Errorf("child publish on stale prev: exit %d (%s), want 2 (conflict)", code, out)
	}
}

// Watchers come and go while versions are published: the shared poller is
// started and stopped many times. Run with -race; goleak checks the end.
func TestWatchChurn(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := t.Context()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				wctx, cancel := context.WithCancel(ctx)
				ch := s.Watch(wctx, 0)
				cancel()
				for range ch { // drains until closed
				}
			}
		})
	}
	var prev int64
	for range 20 {
		p, err := s.Publish(ctx, prev, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		prev = p.Version
	}
	wg.Wait()
}
