package sqlite_test

import (
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		errHas   string // non-empty: an error containing this is expected
	}{
		{in: "sqlite:///var/lib/flash/state.db", want: "/var/lib/flash/state.db"},
		{in: "sqlite://.flash/state.db", want: ".flash/state.db"},
		{in: "sqlite://state.db", want: "state.db"},
		{in: "SQLite:///x.db", want: "/x.db"},
		{in: "sqlite:///a//b/../c.db", want: "/a/c.db"},
		{in: "sqlite:///my%20dir/q%3F.db", want: "/my dir/q?.db"},
		{in: "sqlite:////x.db", want: "/x.db"},
		{in: "etcd://h1:2379,h2:2379", errHas: `unsupported scheme "etcd"`},
		{in: "postgres://u@h/db", errHas: `unsupported scheme "postgres"`},
		{in: "file:///x.db", errHas: "supported: sqlite:///absolute/path"},
		{in: "/var/lib/flash/state.db", errHas: "no scheme"},
		{in: "", errHas: "no scheme"},
		{in: "sqlite://", errHas: "names no file"},
		{in: "sqlite:///", errHas: "directory"},
		{in: "sqlite://dir/", errHas: "directory"},
		{in: "sqlite://.", errHas: "directory"},
		{in: "sqlite://a/..", errHas: "directory"},
		{in: "sqlite:///x.db?mode=ro", errHas: "query strings"},
		{in: "sqlite:///x.db#frag", errHas: "fragments"},
		{in: "sqlite:///x%zz.db", errHas: "invalid URL escape"},
		{in: "sqlite:///x%00.db", errHas: "NUL"},
	} {
		got, err := sqlite.ParseURL(tc.in)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("ParseURL(%q): %v", tc.in, err)
		case tc.errHas == "" && got != tc.want:
			t.Errorf("ParseURL(%q) = %q, want %q", tc.in, got, tc.want)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("ParseURL(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.errHas)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"sqlite:///a/b.db", "sqlite://rel.db", "etcd://h:1", "sqlite://%41", "sqlite:///x?y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := sqlite.ParseURL(in)
		if err != nil {
			if p != "" {
				t.Errorf("ParseURL(%q) returned %q with error %v", in, p, err)
			}
			return
		}
		if p == "" || p != filepath.Clean(p) || strings.ContainsRune(p, 0) {
			t.Fatalf("ParseURL(%q) = %q: empty, unclean or NUL", in, p)
		}
		// The path survives a round trip through its own URL.
		u := "sqlite://" + (&url.URL{Path: p}).EscapedPath()
		if strings.HasPrefix(p, "/") != strings.HasPrefix(u, "sqlite:///") {
			t.Fatalf("absolute/relative changed: %q -> %q", p, u)
		}
		again, err := sqlite.ParseURL(u)
		if err != nil || again != p {
			t.Fatalf("ParseURL(%q) = %q, %v; want %q (from %q)", u, again, err, p, in)
		}
	})
}

func TestOpenURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "state.db")
	s, err := sqlite.OpenURL(t.Context(), "sqlite://"+path, store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the URL's file was not created: %v", err)
	}
	if _, err := sqlite.OpenURL(t.Context(), "sqlite://"+path+"?mode=ro", store.Options{}); err == nil {
		t.Error("a URL with a query was accepted")
	}
}
