package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// Parse decodes and validates a manifest, reporting every problem at once as
// an *InvalidError. The returned manifest is nil when err is not nil.
func Parse(data []byte) (*Manifest, error) { return ParseNext(nil, data) }

// ParseNext is Parse for the manifest that follows prev (which may be nil):
// a resource entry whose bytes equal its entry in prev reuses prev's parsed
// resource (and its config hash, once computed), the function registry and
// routes are shared in the same way, and no unchanged top-level value is
// checked again, so that applying a new version costs mostly in proportion
// to what changed. The two manifests share those parts: treat both as
// read-only.
func ParseNext(prev *Manifest, data []byte) (*Manifest, error) {
	m, ps := decodeNext(prev, data)
	if m != nil {
		ps = append(ps, m.problems()...)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Decode decodes a manifest, checking only its JSON shape (types of known
// keys), not the rules of SPEC §2.2. Use Validate for those, or Parse for both.
func Decode(data []byte) (*Manifest, error) {
	m, ps := decode(data)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate reports every rule of SPEC §2.2 the manifest breaks, as an *InvalidError.
func (m *Manifest) Validate() error { return m.problems().err() }

// decode returns the manifest (nil only when data is not a JSON object) and the
// type problems found; fields of the wrong type are left zero.
func decode(data []byte) (*Manifest, problems) { return decodeNext(nil, data) }

func decodeNext(prev *Manifest, data []byte) (*Manifest, problems) {
	var ps problems
	// One copy of the input, which every raw value below aliases.
	ms, ok := topMembers(prev, bytes.Clone(data))
	if !ok {
		return nil, invalidJSON(data)
	}
	top := make(map[string]json.RawMessage, len(ms))
	for _, mb := range ms {
		top[mb.key] = mb.val
	}
	m := &Manifest{raw: top}
	d := decoder{ps: &ps, scratch: new([]member)}
	m.Version = d.str(top, "", "version")
	m.GeneratedAt = d.str(top, "", "generated_at")
	m.ProjectName = d.str(top, "", "project_name")

	if raw, ok := top["resources"]; !ok || isNull(raw) {
		ps.add("resources", "missing: the manifest must have a \"resources\" object")
	} else if objs, ok := d.object(raw, "resources"); ok {
		m.Resources = make(map[string]*Resource, len(objs))
		for name, entry := range objs {
			if p := prev.reusable(name, entry); p != nil {
				m.Resources[name] = p
				continue
			}
			before := len(ps)
			if r := d.resource(name, entry); r != nil {
				r.src, r.clean = entry, len(ps) == before
				m.Resources[name] = r
			}
		}
	}
	if prev.same("function_registry", top) {
		m.FunctionRegistry = prev.FunctionRegistry
	} else {
		m.FunctionRegistry = d.stringMap(top["function_registry"], "function_registry")
	}
	if prev.same("routes", top) {
		m.Routes = prev.Routes
	} else if raw, ok := top["routes"]; ok && !isNull(raw) {
		if objs, ok := d.object(raw, "routes"); ok {
			m.Routes = make(map[string]map[string]string, len(objs))
			for name, rt := range objs {
				if sm := d.stringMap(rt, child("routes", name)); sm != nil {
					m.Routes[name] = sm
				}
			}
		}
	}
	m.clean = len(ps) == 0
	return m, ps
}

// same reports whether prev (a valid manifest) has the same bytes under the
// top-level key as top: what prev decoded from them can be shared.
func (prev *Manifest) same(key string, top map[string]json.RawMessage) bool {
	a, inPrev := prev.rawValue(key)
	b, inTop := top[key]
	return inPrev && inTop && prev.clean && bytes.Equal(a, b)
}

// reusable returns prev's resource name when its entry was exactly entry and
// decoded without a problem; nil otherwise.
func (prev *Manifest) reusable(name string, entry json.RawMessage) *Resource {
	if prev == nil {
		return nil
	}
	if r := prev.Resources[name]; r != nil && r.clean && bytes.Equal(r.src, entry) {
		return r
	}
	return nil
}

// invalidJSON reports why data is not a JSON object, in encoding/json's words.
func invalidJSON(data []byte) problems {
	var ps problems
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			ps.add("", "the manifest must be a JSON object, not %s", typeErr.Value)
		} else {
			ps.add("", "not valid JSON: %v", err)
		}
		return ps
	}
	ps.add("", "the manifest must be a JSON object, not null")
	return ps
}

// decoder decodes a checked manifest, collecting problems.
type decoder struct {
	ps      *problems
	scratch *[]member // reused by object, which copies the members out
}

func (d decoder) resource(name string, data json.RawMessage) *Resource {
	path := child("resources", name)
	obj, ok := d.object(data, path)
	if !ok {
		return nil
	}
	r := &Resource{Name: name, raw: obj}
	// Only the mothership and the CLI need hashes: compute on first use.
	r.hash = sync.OnceValue(func() string { return hashEntry(obj) })
	r.Type = d.str(obj, path, "resource_type")
	r.HandlerFile = d.str(obj, path, "handler_file")
	r.SourceFingerprint = d.str(obj, path, "source_fingerprint")
	if lb, ok := d.boolean(obj, path, "is_load_balanced"); ok {
		r.LoadBalanced = lb
	} else {
		r.LoadBalanced = isLoadBalancedType(r.Type)
	}
	r.WorkersMin = d.integer(obj, path, "workersMin")
	r.WorkersMax = d.integer(obj, path, "workersMax")
	r.Env = d.stringMap(obj["env"], child(path, "env"))
	r.ConfigHash = d.str(obj, path, "config_hash")
	r.EndpointURL = d.str(obj, path, "endpoint_url")
	if raw, ok := obj["endpoint_urls"]; ok && !isNull(raw) {
		p := child(path, "endpoint_urls")
		if err := json.Unmarshal(raw, &r.EndpointURLs); err != nil {
			d.ps.add(p, "must be an array of strings")
		}
	}
	r.Status = Status(d.str(obj, path, "status"))
	r.Error = d.str(obj, path, "error")
	examples := d.examples(obj, path)
	if raw, ok := obj["functions"]; ok && !isNull(raw) {
		p := child(path, "functions")
		items, ok := elements(raw)
		if !ok {
			d.ps.add(p, "must be an array of function objects, not %s", jsonKind(raw))
		}
		r.Functions = make([]Function, 0, len(items))
		var fo []member // reused: a function's members, looked up without a map
		for i, item := range items {
			fp := index(p, i)
			if fo, ok = members(fo[:0], item); !ok {
				d.ps.add(fp, "must be an object, not %s", jsonKind(item))
				continue
			}
			var f Function
			f.Name = d.strRaw(field(fo, "name"), fp, "name")
			f.Module = d.strRaw(field(fo, "module"), fp, "module")
			f.IsAsync, _ = d.booleanRaw(field(fo, "is_async"), fp, "is_async")
			f.IsClass, _ = d.booleanRaw(field(fo, "is_class"), fp, "is_class")
			f.HTTPMethod = d.strRaw(field(fo, "http_method"), fp, "http_method")
			f.HTTPPath = d.strRaw(field(fo, "http_path"), fp, "http_path")
			if ex, ok := examples[f.Name]; ok && !isNull(ex) {
				f.ExampleInput = ex
			} else if ex := field(fo, "example_input"); ex != nil && !isNull(ex) {
				f.ExampleInput = ex // written by Go builds before x_flash
			}
			r.Functions = append(r.Functions, f)
		}
	}
	return r
}

// examples returns the resource's x_flash.example_inputs, nil when absent.
func (d decoder) examples(obj map[string]json.RawMessage, path string) map[string]json.RawMessage {
	raw, ok := obj[XFlashKey]
	if !ok || isNull(raw) {
		return nil
	}
	xp := child(path, XFlashKey)
	x, ok := d.object(raw, xp)
	if !ok {
		return nil
	}
	raw, ok = x["example_inputs"]
	if !ok || isNull(raw) {
		return nil
	}
	examples, _ := d.object(raw, child(xp, "example_inputs"))
	return examples
}

// object decodes an object, reporting a problem when data is something else.
// data is valid JSON (decodeNext checked the whole manifest).
func (d decoder) object(data json.RawMessage, path string) (map[string]json.RawMessage, bool) {
	ms, ok := members(*d.scratch, data)
	*d.scratch = ms[:0]
	if !ok {
		d.ps.add(path, "must be an object, not %s", jsonKind(data))
		return nil, false
	}
	obj := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		obj[m.key] = m.val // the last of duplicate keys wins, as in encoding/json
	}
	return obj, true
}

// stringMap decodes an optional object of strings; absent or null gives nil.
func (d decoder) stringMap(data json.RawMessage, path string) map[string]string {
	if data == nil || isNull(data) {
		return nil
	}
	obj, ok := d.object(data, path)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		s, ok := plainString(v)
		if ok {
			out[k] = s
			continue
		}
		if err := json.Unmarshal(v, &s); err != nil {
			d.ps.add(child(path, k), "must be a string, not %s", jsonKind(v))
			continue
		}
		out[k] = s
	}
	return out
}

// str decodes an optional string key; absent or null gives "".
func (d decoder) str(obj map[string]json.RawMessage, path, key string) string {
	return d.strRaw(obj[key], path, key)
}

// strRaw is str of the value raw, nil when absent.
func (d decoder) strRaw(raw json.RawMessage, path, key string) string {
	if raw == nil || isNull(raw) {
		return ""
	}
	if s, ok := plainString(raw); ok {
		return s
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		d.ps.add(child(path, key), "must be a string, not %s", jsonKind(raw))
	}
	return s
}

// plainString decodes the common case of a JSON string without escapes
// directly; ok is false when the full decoder is needed.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
			return "", false
		}
	}
	return string(body), true
}

// boolean decodes an optional bool key; ok is false when absent, null or wrong.
func (d decoder) boolean(obj map[string]json.RawMessage, path, key string) (v, ok bool) {
	return d.booleanRaw(obj[key], path, key)
}

// booleanRaw is boolean of the value raw, nil when absent.
func (d decoder) booleanRaw(raw json.RawMessage, path, key string) (v, ok bool) {
	if raw == nil || isNull(raw) {
		return false, false
	}
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		d.ps.add(child(path, key), "must be true or false, not %s", jsonKind(raw))
		return false, false
	}
	return v, true
}

// integer decodes an optional non-negative integer key.
func (d decoder) integer(obj map[string]json.RawMessage, path, key string) int {
	raw, ok := obj[key]
	if !ok || isNull(raw) {
		return 0
	}
	if v, err := strconv.Atoi(string(raw)); err == nil && v >= 0 {
		return v
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil || v < 0 {
		d.ps.add(child(path, key), "must be a non-negative integer, not %s", raw)
		return 0
	}
	return v
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// jsonKind names the JSON type of raw for messages ("a string", "an array", …).
func jsonKind(raw json.RawMessage) string {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return fmt.Sprintf("the string %s", truncate(string(b), 40))
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "the number " + truncate(string(b), 40)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
