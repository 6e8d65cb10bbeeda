package runpodemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// checker collects what is wrong with a request body, as Runpod's REST v2
// sorts it (RUNPOD_REST_V2.md §3.3): schema violations answer 422 with one
// entry per failure, broken rules answer 400. Paths are written "$.a.b".
type checker struct {
	schema []string // → 422
	rules  []string // → 400
}

func (c *checker) schemaf(format string, a ...any) {
	c.schema = append(c.schema, fmt.Sprintf(format, a...))
}
func (c *checker) rulef(format string, a ...any) {
	c.rules = append(c.rules, fmt.Sprintf(format, a...))
}

// problem returns the error answer for what was collected, or nil.
func (c *checker) problem() *apiError {
	if len(c.schema) > 0 {
		return &apiError{Status: 422, Detail: "Request validation failed.", Errors: c.schema}
	}
	if len(c.rules) > 0 {
		return &apiError{Status: 400, Detail: strings.Join(c.rules, "; "), Errors: c.rules}
	}
	return nil
}

// object is one JSON object of a request body and where it sits.
type object struct {
	c    *checker
	path string
	m    map[string]json.RawMessage
}

// parseObject decodes raw as a JSON object whose keys must all be in
// allowed; every other key is a schema violation ("additional properties"),
// as the v2 request schemas forbid them. ok is false when raw is no object.
func (c *checker) parseObject(path string, raw json.RawMessage, allowed ...string) (object, bool) {
	o := object{c: c, path: path}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &o.m) != nil || o.m == nil {
		c.schemaf("%s: expected object", path)
		return o, false
	}
	var extra []string
	for k := range o.m {
		if !slices.Contains(allowed, k) {
			extra = append(extra, "'"+k+"'")
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		c.schemaf("%s: additional properties %s not allowed", path, strings.Join(extra, ", "))
	}
	return o, true
}

func (o object) has(k string) bool  { _, ok := o.m[k]; return ok }
func (o object) at(k string) string { return o.path + "." + k }

// decode fills v from key k; present reports whether k was sent. A value of
// the wrong JSON type is a schema violation named after want.
func (o object) decode(k, want string, v any) (present bool) {
	raw, ok := o.m[k]
	if !ok {
		return false
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, v) != nil {
		o.c.schemaf("%s: expected %s", o.at(k), want)
		return false
	}
	return true
}

func (o object) str(k string) (string, bool) {
	var s string
	ok := o.decode(k, "string", &s)
	return s, ok
}

// nullableStr decodes a string|null field: present, and nil for null.
func (o object) nullableStr(k string) (*string, bool) {
	raw, ok := o.m[k]
	if !ok {
		return nil, false
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, true
	}
	s, ok := o.str(k)
	return &s, ok
}

func (o object) boolean(k string) (bool, bool) {
	var b bool
	ok := o.decode(k, "boolean", &b)
	return b, ok
}

func (o object) number(k string) (float64, bool) {
	var f float64
	ok := o.decode(k, "number", &f)
	return f, ok
}

// integer decodes an integer within [lo, hi].
func (o object) integer(k string, lo, hi int64) (int64, bool) {
	f, ok := o.number(k)
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		o.c.schemaf("%s: expected integer", o.at(k))
		return 0, false
	}
	n := int64(f)
	if n < lo || n > hi {
		o.c.schemaf("%s: must be between %d and %d", o.at(k), lo, hi)
		return 0, false
	}
	return n, true
}

// strs decodes an array of strings of at most maxItems entries.
func (o object) strs(k string, maxItems int) ([]string, bool) {
	var s []string
	if !o.decode(k, "array of strings", &s) {
		return nil, false
	}
	if len(s) > maxItems {
		o.c.schemaf("%s: at most %d items", o.at(k), maxItems)
		return nil, false
	}
	if s == nil {
		s = []string{}
	}
	return s, true
}

// env decodes a string→string map of bounded size.
func (o object) env(k string) (map[string]string, bool) {
	var m map[string]string
	if !o.decode(k, "object of strings", &m) {
		return nil, false
	}
	size := 0
	for name, v := range m {
		size += len(name) + len(v)
		if name == "" || strings.ContainsAny(name, "=\x00") || strings.Contains(v, "\x00") {
			o.c.schemaf("%s: invalid variable %q", o.at(k), name)
			return nil, false
		}
	}
	if len(m) > maxEnvVars || size > maxEnvBytes {
		o.c.schemaf("%s: at most %d variables and %d bytes", o.at(k), maxEnvVars, maxEnvBytes)
		return nil, false
	}
	if m == nil {
		m = map[string]string{}
	}
	return m, true
}

// oneOf checks that s is one of the allowed values.
func (o object) oneOf(k, s string, allowed []string) bool {
	if !slices.Contains(allowed, s) {
		o.c.schemaf("%s: must be one of %s", o.at(k), strings.Join(allowed, ", "))
		return false
	}
	return true
}

var (
	cudaPattern = regexp.MustCompile(`^\d+\.\d+$`)
	portPattern = regexp.MustCompile(`^[1-9][0-9]{0,4}/(http|tcp)$`)
)

// Bounds on what one resource may hold.
const (
	maxEnvVars   = 256
	maxEnvBytes  = 64 << 10
	maxNameLen   = 191 // v1's limit; v2 states none, clients stay under it
	maxStrLen    = 4096
	maxListItems = 64
)

func (o object) ports(k string) ([]string, bool) {
	p, ok := o.strs(k, maxListItems)
	if !ok {
		return nil, false
	}
	http := 0
	for _, s := range p {
		if !portPattern.MatchString(s) {
			o.c.schemaf("%s: %q is not of the form port/http or port/tcp", o.at(k), s)
			return nil, false
		}
		if strings.HasSuffix(s, "/http") {
			http++
		}
	}
	if http > 10 {
		o.c.rulef("%s: at most 10 HTTP ports", o.at(k))
	}
	return p, true
}

func (o object) cudaVersions(k string) ([]string, bool) {
	v, ok := o.strs(k, maxListItems)
	if !ok {
		return nil, false
	}
	for _, s := range v {
		if !cudaPattern.MatchString(s) {
			o.c.schemaf("%s: %q does not match ^\\d+\\.\\d+$", o.at(k), s)
			return nil, false
		}
	}
	return v, true
}

// boundedStr decodes a string of at most n bytes (and at least min).
func (o object) boundedStr(k string, minLen, n int) (string, bool) {
	s, ok := o.str(k)
	if !ok {
		return "", false
	}
	if len(s) < minLen || len(s) > n {
		o.c.schemaf("%s: length must be between %d and %d", o.at(k), minLen, n)
		return "", false
	}
	return s, true
}

// requireKeys reports each missing required key.
func (o object) requireKeys(keys ...string) {
	for _, k := range keys {
		if !o.has(k) {
			o.c.schemaf("%s: missing property '%s'", o.path, k)
		}
	}
}
