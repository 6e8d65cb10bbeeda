package flash

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestWatchParent(t *testing.T) {
	defer goleak.VerifyNone(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// A parent that exits ends the context.
	parent := exec.Command("sleep", "60")
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := watchParent(context.Background(), strconv.Itoa(parent.Process.Pid), time.Millisecond, quiet)
	defer cancel()
	select {
	case <-ctx.Done():
		t.Fatal("ended while the parent runs")
	case <-time.After(50 * time.Millisecond):
	}
	parent.Process.Kill()
	parent.Wait() // reaped: the pid no longer exists
	<-ctx.Done()

	// Unset, invalid or live: the context ends only with its parent context.
	for _, v := range []string{"", "x", "1", "-5", strconv.Itoa(os.Getpid())} {
		ctx, cancel := watchParent(context.Background(), v, time.Millisecond, quiet)
		select {
		case <-ctx.Done():
			t.Errorf("%q: ended by itself", v)
		case <-time.After(10 * time.Millisecond):
		}
		cancel()
	}
}
