package main

import (
	"testing"

	"go.uber.org/goleak"
)

// The CLI's own loops (progress, log tails, status watch) end with their
// command.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
