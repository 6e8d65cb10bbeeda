package mothership

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
)

// masked is what a hidden env value is served as.
const masked = "***"

// defaultEnvVisible are the env variables whose values are shown by
// default: settings that hold no secret. Every other value is masked.
var defaultEnvVisible = [...]string{"LOG_LEVEL", "TZ", "LANG", "GOMAXPROCS", "GOMEMLIMIT", "GODEBUG"}

// envMask decides what leaves the mothership of a resource's env: a value is
// shown only when its name is on the allow-list, and even then without the
// credentials of any URL in it. The store, the mothership's own manifest
// copy and reconciliation keep the real values.
type envMask struct{ visible map[string]bool }

// newEnvMask allows defaultEnvVisible plus extra.
func newEnvMask(extra []string) envMask {
	m := envMask{visible: map[string]bool{}}
	for _, n := range append(defaultEnvVisible[:], extra...) {
		m.visible[n] = true
	}
	return m
}

// value returns what is shown of the value v of env variable name.
func (m envMask) value(name string, v json.RawMessage) json.RawMessage {
	if !m.visible[name] {
		return json.RawMessage(`"` + masked + `"`)
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return json.RawMessage(`"` + masked + `"`) // not a string: nothing to show safely
	}
	out, ok := marshalRaw(RedactURLs(s))
	if !ok {
		return json.RawMessage(`"` + masked + `"`)
	}
	return out
}

// manifest returns the manifest JSON as served (GET /manifest): every
// resource's env value masked unless allowed. A manifest without env (or
// that is not the expected shape) comes back as the same bytes; one with env
// is re-encoded, which also drops duplicate keys (a value hidden in an
// earlier duplicate would otherwise be served as it is).
func (m envMask) manifest(body []byte) []byte {
	if !bytes.Contains(body, []byte(`"env"`)) {
		return body // the common case: no env anywhere, no decoding
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return body
	}
	var resources map[string]json.RawMessage
	if json.Unmarshal(doc["resources"], &resources) != nil {
		return body
	}
	changed := false
	for name, raw := range resources {
		var entry map[string]json.RawMessage
		if json.Unmarshal(raw, &entry) != nil {
			continue
		}
		env, ok := m.env(entry["env"])
		if !ok {
			continue
		}
		entry["env"] = env
		if resources[name], ok = marshalRaw(entry); !ok {
			return body
		}
		changed = true
	}
	if !changed {
		return body
	}
	var ok bool
	if doc["resources"], ok = marshalRaw(resources); !ok {
		return body
	}
	out, ok := marshalRaw(doc)
	if !ok {
		return body
	}
	return out
}

// env masks an env value: an object of name → value, or a list of
// {"key"|"name": …, "value": …} (Runpod's template shape), re-encoded. ok
// is false for a value of neither shape (absent, null, a string, …).
func (m envMask) env(raw json.RawMessage) (json.RawMessage, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil && obj != nil {
		for k, v := range obj {
			obj[k] = m.value(k, v)
		}
		return marshalRaw(obj)
	}
	var list []map[string]json.RawMessage
	if json.Unmarshal(raw, &list) != nil || list == nil {
		return nil, false
	}
	for _, item := range list {
		var name string
		if json.Unmarshal(item["key"], &name) != nil || name == "" {
			json.Unmarshal(item["name"], &name)
		}
		if v, has := item["value"]; has {
			item["value"] = m.value(name, v)
		}
	}
	return marshalRaw(list)
}

// marshalRaw encodes v without HTML escaping (as manifests are written).
func marshalRaw(v any) (json.RawMessage, bool) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return nil, false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

// urlCredentials matches the user information of a URL: scheme://user[:password]@.
var urlCredentials = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s"']*@`)

// RedactURLs replaces the credentials of every URL in s by "***", as
// everything the mothership logs or shows must: "postgres://u:pw@db/x"
// becomes "postgres://***@db/x".
func RedactURLs(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return urlCredentials.ReplaceAllString(s, "${1}"+masked+"@")
}

// redactAll returns urls with their credentials redacted (nil for nil).
func redactAll(urls []string) []string {
	if urls == nil {
		return nil
	}
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = RedactURLs(u)
	}
	return out
}
