package manifest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/flash-go/flash/flasherr"
)

// Problem is one reason a manifest is invalid, with where it is.
type Problem struct {
	Path    string // e.g. `routes.api["POST /x"]`; "" for the document itself
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// InvalidError lists every problem of an invalid manifest. Callers get it
// with errors.As.
type InvalidError struct {
	Problems []Problem
}

// Is makes errors.Is(err, flasherr.ErrInvalidManifest) true.
func (e *InvalidError) Is(target error) bool { return target == flasherr.ErrInvalidManifest }

func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid manifest: %d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteByte('s')
	}
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// problems collects Problems in the order found.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// sortFrom sorts the problems from index i on by path, keeping the order of
// those with the same path: problems found in map order come out as if the
// keys had been visited sorted.
func (ps problems) sortFrom(i int) {
	slices.SortStableFunc(ps[i:], func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &InvalidError{Problems: ps}
}

// plainKey reports whether key is an identifier, written a.key in paths.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return key != ""
}

// child appends a key to a location path: a.b for plain keys, a["x y"] otherwise.
func child(path, key string) string {
	if plainKey(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
