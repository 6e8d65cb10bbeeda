package flash

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/serve"
)

// ManifestFlag is the argument that makes an app binary print its own
// manifest to standard output and exit (0 when valid, 1 listing every
// problem otherwise). `flash build` uses it.
const ManifestFlag = "--flash-manifest"

// Manifest describes the app as a manifest (SPEC §2): its resources, their
// functions and routes, and source_fingerprint, the digest of the running
// executable, so that a code-only change is a change. Registration mistakes
// and manifest rules are checked together; the error lists every problem.
func (a *App) Manifest() (*manifest.Manifest, error) {
	digest, built := executableInfo()
	return a.describe(digest, built)
}

// describe builds and checks the app's manifest; digest may be empty for
// roles that never compare config hashes.
func (a *App) describe(digest string, built time.Time) (*manifest.Manifest, error) {
	doc, err := a.manifestDoc(digest, built)
	if err != nil {
		return nil, err
	}
	m, perr := manifest.Parse(doc)
	var inv *manifest.InvalidError
	if perr != nil && !errors.As(perr, &inv) {
		return nil, perr
	}
	if len(a.problems) > 0 || perr != nil {
		var lines []string
		lines = append(lines, a.problems...)
		if inv != nil {
			for _, p := range inv.Problems {
				lines = append(lines, p.String())
			}
		}
		return nil, fmt.Errorf("%w %q: %d problem(s):\n  - %s", ErrInvalidApp, a.name, len(lines), strings.Join(lines, "\n  - "))
	}
	return m, nil
}

// docFunction is a function entry: exactly the fields of the seed's typed
// FunctionMetadata (SPEC §2.1); flash's extensions go in the resource's x_flash.
type docFunction struct {
	Name       string `json:"name"`
	Module     string `json:"module"`
	IsAsync    bool   `json:"is_async"`
	IsClass    bool   `json:"is_class"`
	HTTPMethod string `json:"http_method,omitempty"`
	HTTPPath   string `json:"http_path,omitempty"`
}

func (a *App) manifestDoc(fingerprint string, built time.Time) ([]byte, error) {
	resources := map[string]map[string]any{}
	registry := map[string]string{}
	routes := map[string]map[string]string{}
	for _, r := range a.resources {
		entry := map[string]any{}
		for k, v := range r.cfg.Extra {
			entry[k] = v
		}
		typ := r.cfg.Type
		if typ == "" {
			typ = "LiveServerless"
			if r.loadBalanced {
				typ = "LiveLoadBalancer"
			}
		}
		entry["resource_type"] = typ
		entry["is_load_balanced"] = r.loadBalanced
		if r.cfg.WorkersMin > 0 {
			entry["workersMin"] = r.cfg.WorkersMin
		}
		if r.cfg.WorkersMax > 0 {
			entry["workersMax"] = r.cfg.WorkersMax
		}
		if r.cfg.GPUIDs != "" {
			entry["gpuIds"] = r.cfg.GPUIDs
		}
		if r.cfg.ImageName != "" {
			entry["imageName"] = r.cfg.ImageName
		}
		if len(r.cfg.Env) > 0 {
			entry["env"] = r.cfg.Env
		}
		if fingerprint != "" {
			entry["source_fingerprint"] = fingerprint
		}
		fns := []docFunction{}
		ext := manifest.Extensions{ExampleInputs: map[string]json.RawMessage{}}
		for _, f := range a.funcs {
			if f.resource != r {
				continue
			}
			fns = append(fns, docFunction{Name: f.name, Module: f.module, IsClass: f.isClass, HTTPMethod: f.method, HTTPPath: f.path})
			if f.example != nil {
				ext.ExampleInputs[f.name] = f.example
			}
			registry[f.name] = r.name
			if f.method != "" {
				if routes[r.name] == nil {
					routes[r.name] = map[string]string{}
				}
				routes[r.name][f.method+" "+f.path] = f.name
			}
		}
		entry["functions"] = fns
		if len(ext.ExampleInputs) > 0 {
			entry[manifest.XFlashKey] = ext
		}
		resources[r.name] = entry
	}
	doc := map[string]any{
		"version":           manifest.SupportedVersion,
		"generated_at":      built.UTC().Format(time.RFC3339),
		"project_name":      a.name,
		"resources":         resources,
		"function_registry": registry,
	}
	if len(routes) > 0 {
		doc["routes"] = routes
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("describe app: %w", err)
	}
	return b, nil
}

// executableInfo returns the SHA-256 of the running binary ("" when it
// cannot be read) and its modification time, which stands for the build
// time: the same binary describes itself the same way at every start, so a
// restart publishes no new manifest version.
func executableInfo() (digest string, built time.Time) {
	built = time.Now()
	exe, err := os.Executable()
	if err != nil {
		return "", built
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", built
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		built = fi.ModTime()
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", built
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), built
}

// serveFuncs returns the functions and objects of the given resources ("" =
// all) as the serving layer wants them.
func (a *App) serveFuncs(resource string) []serve.Func {
	var out []serve.Func
	for _, f := range a.funcs {
		if resource != "" && f.resource.name != resource || f.isClass {
			continue
		}
		out = append(out, serve.Func{Name: f.name, Resource: f.resource.name, Method: f.method, Path: f.path, Bind: f.bind})
	}
	return append(out, a.objectFuncs(resource)...)
}
