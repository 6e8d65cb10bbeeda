//go:build unix

package local

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
)

// supported reports whether this system has what the provider needs.
const supported = true

// detach starts cmd in its own process group: the terminal's Ctrl-C does not
// reach it, and signalGroup reaches it and its children.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// signalZero reports whether pid exists (signal 0; EPERM means it does).
func signalZero(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// signalGroup sends sig to pid's process group (it leads one: Setpgid), or to
// pid alone when it leads none. A missing process is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		err = syscall.Kill(pid, sig)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}
