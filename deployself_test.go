package flash

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/flash-go/flash/store/sqlite"
)

// A mothership of flash run deploys its own build unless a deploy was
// recorded after it started (by another mothership of the same run).
func TestDeployedSince(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before := time.Now().Add(-time.Minute)
	if deployedSince(ctx, st, before) {
		t.Error("an empty store reports a deploy")
	}
	if _, err := st.PutDesired(ctx, 0, []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	if !deployedSince(ctx, st, before) {
		t.Error("a deploy recorded after the start is not seen")
	}
	if deployedSince(ctx, st, time.Now().Add(time.Minute)) {
		t.Error("a deploy recorded before the start is taken for a later one")
	}
}
