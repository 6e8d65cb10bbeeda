//go:build !unix

package flash

// processExists cannot tell without Unix signals: the parent counts as alive.
func processExists(int) bool { return true }
