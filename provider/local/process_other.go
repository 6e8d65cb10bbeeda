//go:build !unix

package local

import (
	"os/exec"
	"syscall"
)

// supported reports whether this system has what the provider needs: process
// groups and signals are Unix's, so elsewhere New returns ErrUnsupported.
const supported = false

func detach(*exec.Cmd) {}

func signalZero(int) bool { return false }

func signalGroup(int, syscall.Signal) error { return ErrUnsupported }
