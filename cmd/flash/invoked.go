package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// selfCommand is how a hint tells the user to call this CLI again, in the
// form they used: "flash" when that is what PATH finds, "go run ./cmd/flash"
// for a binary `go run` built (from the repository's root, else by module
// path), else the name or path they typed.
func selfCommand(arg0 string) string {
	if isGoRunBinary(arg0) {
		if _, err := os.Stat(filepath.Join("cmd", "flash", "main.go")); err == nil {
			return "go run ./cmd/flash"
		}
		return "go run github.com/flash-go/flash/cmd/flash"
	}
	if onPath, err := exec.LookPath("flash"); err == nil && sameFile(onPath, arg0) {
		return "flash"
	}
	return arg0
}

// isGoRunBinary reports whether path is a binary `go run` left in its build
// cache (…/go-build…/exe/<name>).
func isGoRunBinary(path string) bool {
	return strings.Contains(path, "go-build") && filepath.Base(filepath.Dir(path)) == "exe"
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	if !strings.ContainsRune(b, filepath.Separator) {
		if p, err := exec.LookPath(b); err == nil {
			b = p
		}
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
