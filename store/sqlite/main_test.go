package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
)

// childEnv, when set, makes the test binary act as a second process that
// publishes to the store: "<prev> <path>". Exit 0 = published, 2 = conflict.
const childEnv = "FLASH_SQLITE_TEST_CHILD"

func TestMain(m *testing.M) {
	if arg := os.Getenv(childEnv); arg != "" {
		os.Exit(runChild(arg))
	}
	goleak.VerifyTestMain(m)
}

func runChild(arg string) int {
	var prev int64
	var path string
	if _, err := fmt.Sscanf(arg, "%d %s", &prev, &path); err != nil {
		fmt.Fprintln(os.Stderr, "bad", childEnv, err)
		return 1
	}
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	p, err := s.Publish(ctx, prev, []byte(`{"from":"child `+strconv.Itoa(os.Getpid())+`"}`))
	switch {
	case errors.Is(err, store.ErrConflict):
		return 2
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(p.Version)
	return 0
}
