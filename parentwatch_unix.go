//go:build unix

package flash

import (
	"errors"
	"syscall"
)

// processExists reports whether pid names a process (of any user).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
