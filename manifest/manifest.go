// Package manifest is the one place every role gets manifests from: the
// schema types, tolerant parsing that keeps unknown keys verbatim, the
// validator, the Python-compatible config hash, the diff, and atomic files.
//
// A *Manifest is an immutable value: it is parsed and validated once and
// never mutated. Methods that change something (WithRuntime, Without, …)
// return a new value, so a new version can replace the old one by a single
// pointer swap while readers keep using the old one without locks.
package manifest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// SupportedVersion is the only manifest schema version accepted.
const SupportedVersion = "1.0"

// Status is the deployment state the mothership records for a resource.
type Status string

// The resource states of SPEC §2.1.
const (
	StatusPending  Status = "pending"
	StatusDeployed Status = "deployed"
	StatusUpdated  Status = "updated"
	StatusFailed   Status = "failed"
	StatusRemoving Status = "removing"
	// StatusIdle is an autoscaled resource scaled to zero: no replica
	// runs, and a call through the mothership's gateway starts one.
	StatusIdle Status = "idle"
)

// RuntimeKeys are the resource keys written only by the mothership. They are
// excluded from the config hash.
var runtimeKeys = []string{"config_hash", "endpoint_url", "endpoint_urls", "status", "error"}

// Manifest is a parsed flash_manifest.json. Treat it as read-only.
type Manifest struct {
	Version          string // "" when absent (treated as "1.0")
	GeneratedAt      string
	ProjectName      string
	Resources        map[string]*Resource
	FunctionRegistry map[string]string            // function name → resource name
	Routes           map[string]map[string]string // LB resource → "METHOD /path" → function

	raw   map[string]json.RawMessage // every top-level key as read; the source of serialisation
	clean bool                       // decoded without a type problem: ParseNext may share its parts
}

// Resource is one resource entry. Treat it as read-only.
type Resource struct {
	Name              string
	Type              string // resource_type
	LoadBalanced      bool   // is_load_balanced, or a type name containing "LoadBalancer"
	HandlerFile       string
	Functions         []Function
	SourceFingerprint string
	WorkersMin        int
	WorkersMax        int
	Env               map[string]string

	// Runtime keys (written by the mothership).
	ConfigHash   string
	EndpointURL  string
	EndpointURLs []string
	Status       Status
	Error        string

	hash  func() string              // Hash of the entry without runtime keys, computed once when asked
	raw   map[string]json.RawMessage // every key as read
	src   json.RawMessage            // the entry's bytes as read, for ParseNext
	clean bool                       // decoded without a problem: reusable by ParseNext
}

// Function is one entry of a resource's "functions" array.
type Function struct {
	Name       string
	Module     string
	IsAsync    bool
	IsClass    bool
	HTTPMethod string
	HTTPPath   string
	// ExampleInput is a sample input, so that tools can show a working call;
	// may be nil. Go builds write it in the resource's x_flash object
	// (Extensions); a function entry's "example_input", written by earlier
	// builds, is still read.
	ExampleInput json.RawMessage
}

// XFlashKey is the key of flash's own extensions: an object on a resource
// entry (Extensions) or at the top level. Function entries carry only the
// seed's typed fields, so that Python's FunctionMetadata(**entry) accepts
// what a Go build writes (SPEC §2.1).
const XFlashKey = "x_flash"

// Extensions is the x_flash object of a resource entry.
type Extensions struct {
	// ExampleInputs maps function names to a sample input.
	ExampleInputs map[string]json.RawMessage `json:"example_inputs,omitempty"`
}

// Hash returns the resource's config hash (SPEC §2.3): the entry without its
// runtime keys, hashed as the seed's mothership does.
func (r *Resource) Hash() string { return r.hash() }

// URLs returns every URL the resource is served at: endpoint_urls when given,
// else endpoint_url, else nil.
func (r *Resource) URLs() []string {
	if len(r.EndpointURLs) > 0 {
		return r.EndpointURLs
	}
	if r.EndpointURL != "" {
		return []string{r.EndpointURL}
	}
	return nil
}

// Function returns the named function of the resource.
func (r *Resource) Function(name string) (Function, bool) {
	for _, f := range r.Functions {
		if f.Name == name {
			return f, true
		}
	}
	return Function{}, false
}

// Raw returns the resource entry as JSON, every key included.
func (r *Resource) Raw() json.RawMessage {
	b, _ := marshal(r.raw)
	return b
}

// ResourceNames returns the resource names in sorted order.
func (m *Manifest) ResourceNames() []string {
	names := make([]string, 0, len(m.Resources))
	for n := range m.Resources {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// MarshalJSON serialises the manifest compactly with every key it was parsed
// with, unknown ones included, keys sorted, no HTML escaping.
func (m *Manifest) MarshalJSON() ([]byte, error) { return marshal(m.raw) }

// Pretty serialises the manifest indented by two spaces, ending in a newline.
func (m *Manifest) Pretty() []byte {
	b, _ := marshal(m.raw)
	var out bytes.Buffer
	json.Indent(&out, b, "", "  ")
	out.WriteByte('\n')
	return out.Bytes()
}

// Runtime is what the mothership records on a resource.
type Runtime struct {
	ConfigHash   string
	EndpointURLs []string // the first one is also written as endpoint_url
	Status       Status
	Error        string
}

// WithRuntime returns a copy of m whose resource name carries rt; zero fields
// remove their keys. It returns m unchanged when name is not a resource.
func (m *Manifest) WithRuntime(name string, rt Runtime) *Manifest {
	r, ok := m.Resources[name]
	if !ok {
		return m
	}
	entry := cloneRaw(r.raw)
	for _, k := range runtimeKeys {
		delete(entry, k)
	}
	set := func(key string, v any) {
		b, _ := marshal(v)
		entry[key] = b
	}
	if rt.ConfigHash != "" {
		set("config_hash", rt.ConfigHash)
	}
	if len(rt.EndpointURLs) > 0 {
		set("endpoint_url", rt.EndpointURLs[0])
		if len(rt.EndpointURLs) > 1 {
			set("endpoint_urls", rt.EndpointURLs)
		}
	}
	if rt.Status != "" {
		set("status", rt.Status)
	}
	if rt.Error != "" {
		set("error", rt.Error)
	}
	return m.edit(func(res map[string]json.RawMessage, _ map[string]string, _ map[string]json.RawMessage) {
		b, _ := marshal(entry)
		res[name] = b
	})
}

// Without returns a copy of m without the resource name, its function_registry
// entries and its routes.
func (m *Manifest) Without(name string) *Manifest {
	if _, ok := m.Resources[name]; !ok {
		return m
	}
	return m.edit(func(res map[string]json.RawMessage, reg map[string]string, routes map[string]json.RawMessage) {
		delete(res, name)
		delete(routes, name)
		for f, r := range reg {
			if r == name {
				delete(reg, f)
			}
		}
	})
}

// WithResourceFrom returns a copy of m in which resource name, its
// function_registry entries and its routes are taken from src (replacing what m
// had for it). It returns m unchanged when src has no such resource.
func (m *Manifest) WithResourceFrom(src *Manifest, name string) *Manifest {
	r, ok := src.Resources[name]
	if !ok {
		return m
	}
	return m.Without(name).edit(func(res map[string]json.RawMessage, reg map[string]string, routes map[string]json.RawMessage) {
		b, _ := marshal(r.raw)
		res[name] = b
		for f, rn := range src.FunctionRegistry {
			if rn == name {
				reg[f] = rn
			}
		}
		if rt, ok := src.Routes[name]; ok {
			b, _ := marshal(rt)
			routes[name] = b
		}
	})
}

// WithTop returns a copy of m whose top-level key is set to v (JSON-encoded);
// a nil v removes the key. Resources, registry and routes cannot be set this way.
func (m *Manifest) WithTop(key string, v any) *Manifest {
	top := cloneRaw(m.raw)
	if v == nil {
		delete(top, key)
	} else {
		b, _ := marshal(v)
		top[key] = b
	}
	return mustRedecode(top)
}

// edit rebuilds the manifest after fn changed copies of its resources,
// function_registry and routes.
func (m *Manifest) edit(fn func(res map[string]json.RawMessage, reg map[string]string, routes map[string]json.RawMessage)) *Manifest {
	res := make(map[string]json.RawMessage, len(m.Resources))
	for n, r := range m.Resources {
		b, _ := marshal(r.raw)
		res[n] = b
	}
	reg := make(map[string]string, len(m.FunctionRegistry))
	for f, r := range m.FunctionRegistry {
		reg[f] = r
	}
	routes := make(map[string]json.RawMessage, len(m.Routes))
	for n, rt := range m.Routes {
		b, _ := marshal(rt)
		routes[n] = b
	}
	fn(res, reg, routes)
	top := cloneRaw(m.raw)
	set := func(key string, v any, present bool) {
		if !present {
			delete(top, key)
			return
		}
		b, _ := marshal(v)
		top[key] = b
	}
	set("resources", res, true)
	_, hadReg := m.raw["function_registry"]
	set("function_registry", reg, hadReg || len(reg) > 0)
	_, hadRoutes := m.raw["routes"]
	set("routes", routes, hadRoutes || len(routes) > 0)
	return mustRedecode(top)
}

// mustRedecode turns edited raw keys back into a Manifest. The input came from
// a decoded manifest, so decoding cannot meet a new type error.
func mustRedecode(top map[string]json.RawMessage) *Manifest {
	b, _ := marshal(top)
	m, _ := decode(b)
	return m
}

func cloneRaw(in map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// marshal encodes v compactly without HTML escaping (json.Marshal escapes <, >
// and &, which would change values a Python build wrote).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isLoadBalancedType reports the seed's rule for entries without is_load_balanced.
func isLoadBalancedType(t string) bool { return strings.Contains(t, "LoadBalancer") }
