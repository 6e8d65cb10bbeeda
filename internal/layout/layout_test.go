package layout

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSafeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pipeline", "pipeline"},
		{"my-app.v2_x", "my-app.v2_x"},
		{"", "_"},
		{".", "_"},
		{"..", "_"},
		{"../etc", ".._etc"},
		{"a/b", "a_b"},
		{"é", "_"},
	} {
		if got := SafeName(tc.in); got != tc.want {
			t.Errorf("SafeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	d := In(dir)
	if d.Path() != filepath.Join(dir, ".flash") {
		t.Fatalf("In = %s", d)
	}
	a := d.App("pipeline")
	if got, want := a.State(), filepath.Join(dir, ".flash", "apps", "pipeline", "state.db"); got != want {
		t.Errorf("State = %s, want %s", got, want)
	}
	if d.App("x").Cache() == d.App("y").Cache() {
		t.Error("two apps share a cache directory")
	}
	if len(d.Apps()) != 0 {
		t.Errorf("Apps of an empty directory = %v", d.Apps())
	}
	for _, n := range []string{"b", "a"} {
		if err := os.MkdirAll(d.App(n).Path(), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.Apps(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("Apps = %v, want [a b]", got)
	}
}
