package mothership

import (
	"bytes"
	"encoding/json"
	"strings"
)

// masked is what a secret-looking env value is served as.
const masked = "***"

// secretName reports whether an env variable name looks like it holds a
// secret: it contains KEY, TOKEN, SECRET, PASSWORD (or PASSWD, CREDENTIAL),
// in any case.
func secretName(name string) bool {
	up := strings.ToUpper(name)
	for _, w := range [...]string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"} {
		if strings.Contains(up, w) {
			return true
		}
	}
	return false
}

// maskManifest returns the manifest JSON as served (GET /manifest): every
// resource's env value whose name looks secret replaced by "***". The
// store, the local file and reconciliation keep the real values; only
// what leaves the mothership is masked. A manifest without env (or that is
// not the expected shape) comes back as the same bytes; one with env is
// re-encoded, which also drops duplicate keys (a value hidden in an earlier
// duplicate would otherwise be served as it is).
func maskManifest(body []byte) []byte {
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
		env, ok := maskEnv(entry["env"])
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

// maskEnv masks an env value: an object of name → value, or a list of
// {"key"|"name": …, "value": …} (Runpod's template shape), re-encoded. ok
// is false for a value of neither shape (absent, null, a string, …).
func maskEnv(raw json.RawMessage) (json.RawMessage, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	star := json.RawMessage(`"` + masked + `"`)
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil && obj != nil {
		for k := range obj {
			if secretName(k) {
				obj[k] = star
			}
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
		if _, has := item["value"]; has && secretName(name) {
			item["value"] = star
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
