package manifest

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Methods are the HTTP methods an LB function may use.
var Methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

var resourceName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

// reservedExact are paths served by flash itself; reservedTree are reserved
// with everything under them.
var (
	reservedExact = []string{"/ping", "/health", "/manifest", "/execute", "/run", "/runsync", "/purge-queue", "/metrics"}
	reservedTree  = []string{"/status", "/stream", "/cancel", "/retry", "/flash", "/v2"}
)

// ValidResourceName reports whether s may name a resource.
func ValidResourceName(s string) bool { return resourceName.MatchString(s) }

// ValidFunctionName reports whether s is a Go or Python identifier.
func ValidFunctionName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r)) {
			continue
		}
		return false
	}
	return true
}

// ReservedPath reports whether path, after normalisation (query dropped, case
// folded, trailing slashes removed), is or shadows a path flash serves itself.
func ReservedPath(path string) bool {
	p := normalisePath(path)
	if slices.Contains(reservedExact, p) {
		return true
	}
	for _, t := range reservedTree {
		if p == t || strings.HasPrefix(p, t+"/") {
			return true
		}
	}
	return false
}

func normalisePath(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	p := strings.ToLower(path)
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
	}
	if p == "" {
		p = "/"
	}
	return p
}

// SplitRoute splits a routes key "METHOD /path" into its parts.
func SplitRoute(key string) (method, path string, ok bool) {
	method, path, ok = strings.Cut(key, " ")
	return method, path, ok && method != "" && path != ""
}

// problems checks the rules of SPEC §2.2 on a decoded manifest.
func (m *Manifest) problems() problems {
	var ps problems
	if m.Version != "" && m.Version != SupportedVersion {
		ps.add("version", "unsupported version %q: only %q is accepted", m.Version, SupportedVersion)
	}
	owner := make(map[string]string, len(m.FunctionRegistry)) // function → the last resource listing it
	for _, name := range m.ResourceNames() {
		r := m.Resources[name]
		path := func() string { return child("resources", name) } // paths are built only for problems
		if !ValidResourceName(name) {
			ps.add(path(), "resource name %q must be 1-63 characters of A-Z a-z 0-9 _ . -", name)
		}
		checkEnv(&ps, func() string { return child(path(), "env") }, r.Env)
		var routes map[string]string // "METHOD /normalised" → function
		for i, f := range r.Functions {
			fp := func() string { return index(child(path(), "functions"), i) }
			switch prev := owner[f.Name]; {
			case !ValidFunctionName(f.Name):
				ps.add(child(fp(), "name"), "function name %q must be a Go or Python identifier", f.Name)
			case prev == name:
				ps.add(fp(), "function %q is listed twice on resource %q", f.Name, name)
			case prev != "":
				ps.add(fp(), "function %q is listed under two resources: %q and %q", f.Name, prev, name)
				owner[f.Name] = name // a second listing here is "twice on" this one
			default:
				owner[f.Name] = name
				if reg, ok := m.FunctionRegistry[f.Name]; ok && reg != name {
					ps.add(child("function_registry", f.Name), "names resource %q but function %q is listed under %q", reg, f.Name, name)
				}
			}
			if !r.LoadBalanced {
				if f.HTTPMethod != "" || f.HTTPPath != "" {
					ps.add(fp(), "function %q has an HTTP route but resource %q is queue-based", f.Name, name)
				}
				continue
			}
			if f.IsClass && f.HTTPMethod == "" && f.HTTPPath == "" {
				continue // a stateful object: reached at flash's own paths, not a route
			}
			if f.HTTPMethod == "" || f.HTTPPath == "" {
				ps.add(fp(), "load-balanced function %q needs both http_method and http_path", f.Name)
				continue
			}
			checkRoute(&ps, fp(), f.HTTPMethod, f.HTTPPath)
			key := strings.ToUpper(f.HTTPMethod) + " " + normalisePath(f.HTTPPath)
			if other, dup := routes[key]; dup {
				ps.add(fp(), "route %s %s of %q is already taken by %q", f.HTTPMethod, f.HTTPPath, f.Name, other)
			} else {
				if routes == nil {
					routes = make(map[string]string)
				}
				routes[key] = f.Name
			}
		}
	}
	// In map order, then the problems in the order of their paths: sorting
	// the keys of a large registry cost more than checking it.
	before := len(ps)
	for f, rn := range m.FunctionRegistry {
		if !ValidFunctionName(f) {
			ps.add(child("function_registry", f), "function name %q must be a Go or Python identifier", f)
		}
		if _, ok := m.Resources[rn]; !ok {
			ps.add(child("function_registry", f), "names resource %q, which is not in resources", rn)
		}
	}
	ps.sortFrom(before)
	for _, rn := range sortedKeys(m.Routes) {
		p := child("routes", rn)
		r, ok := m.Resources[rn]
		switch {
		case !ok:
			ps.add(p, "routes for resource %q, which is not in resources", rn)
			continue
		case !r.LoadBalanced && len(m.Routes[rn]) > 0:
			ps.add(p, "routes on queue-based resource %q: only load-balanced resources have routes", rn)
			continue
		}
		seen := map[string]string{}
		for _, key := range sortedKeys(m.Routes[rn]) {
			fn := m.Routes[rn][key]
			kp := child(p, key)
			method, path, ok := SplitRoute(key)
			if !ok {
				ps.add(kp, "route %q must be \"METHOD /path\"", key)
				continue
			}
			checkRoute(&ps, kp, method, path)
			norm := strings.ToUpper(method) + " " + normalisePath(path)
			if other, dup := seen[norm]; dup {
				ps.add(kp, "route %q clashes with %q", key, other)
			}
			seen[norm] = key
			if len(r.Functions) > 0 {
				if _, ok := r.Function(fn); !ok {
					ps.add(kp, "names function %q, which resource %q does not list", fn, rn)
				}
			} else if m.FunctionRegistry[fn] != rn {
				ps.add(kp, "names function %q, which is not registered on resource %q", fn, rn)
			}
		}
	}
	return ps
}

// platformEnv are variables the platform sets for every endpoint: Runpod's
// injected ones (RUNPOD.md §4.1, and RUNPOD_ENDPOINT_BASE_URL, from which
// Flash derives its host) and the ports. A resource's env must not override
// them, nor flash's own FLASH_* variables: the endpoint would then disagree
// with the rest of the app (a FLASH_API_KEY of its own fails every call).
var platformEnv = []string{
	"PORT", "PORT_HEALTH",
	"RUNPOD_WEBHOOK_GET_JOB", "RUNPOD_WEBHOOK_POST_OUTPUT", "RUNPOD_WEBHOOK_POST_STREAM", "RUNPOD_WEBHOOK_PING",
	"RUNPOD_PING_INTERVAL", "RUNPOD_POD_ID", "RUNPOD_POD_HOSTNAME", "RUNPOD_AI_API_KEY", "RUNPOD_API_KEY",
	"RUNPOD_ENDPOINT_ID", "RUNPOD_ENDPOINT_BASE_URL", "RUNPOD_DC_ID", "RUNPOD_GPU_COUNT", "RUNPOD_CPU_COUNT",
	"RUNPOD_PUBLIC_IP", "RUNPOD_TCP_PORT_22", "RUNPOD_VOLUME_ID",
}

// ReservedEnv reports why a resource's env may not set name, or "" when it may.
func ReservedEnv(name string) string {
	switch {
	case name == "":
		return "an environment variable name must not be empty"
	case strings.ContainsAny(name, "=\x00"):
		return fmt.Sprintf("environment variable name %q must not contain '=' or NUL", name)
	case strings.HasPrefix(strings.ToUpper(name), "FLASH_"):
		return fmt.Sprintf("%s is flash's own variable: flash sets it for every endpoint of the app", name)
	case slices.Contains(platformEnv, strings.ToUpper(name)):
		return fmt.Sprintf("%s is set by the platform for every endpoint", name)
	}
	return ""
}

func checkEnv(ps *problems, path func() string, env map[string]string) {
	before := len(*ps)
	for k, v := range env {
		if why := ReservedEnv(k); why != "" {
			ps.add(child(path(), k), "%s", why)
		} else if strings.ContainsRune(v, 0) {
			ps.add(child(path(), k), "the value of %s must not contain a NUL byte", k)
		}
	}
	ps.sortFrom(before)
}

func checkRoute(ps *problems, path, method, httpPath string) {
	if !slices.Contains(Methods, method) {
		ps.add(path, "HTTP method %q is not one of %s", method, strings.Join(Methods, ", "))
	}
	switch {
	case !strings.HasPrefix(httpPath, "/"):
		ps.add(path, "http path %q must start with /", httpPath)
	case ReservedPath(httpPath):
		ps.add(path, "http path %q is reserved (or shadows %q, which flash serves itself)", httpPath, normalisePath(httpPath))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
