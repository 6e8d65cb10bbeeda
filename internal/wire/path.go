package wire

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// PathParams returns the names of a route's wildcards, in order:
// "/items/{id}/{rest...}" → ["id", "rest"]. The end anchor {$} is not a
// parameter.
func PathParams(path string) []string {
	var names []string
	for {
		open := strings.IndexByte(path, '{')
		if open < 0 {
			return names
		}
		end := strings.IndexByte(path[open:], '}')
		if end < 0 {
			return names
		}
		name := strings.TrimSuffix(path[open+1:open+end], "...")
		if name != "$" && name != "" {
			names = append(names, name)
		}
		path = path[open+end+1:]
	}
}

// FillPath replaces each {name} of a route with value(name), path-escaped;
// a {name...} wildcard keeps the slashes of its value. {$} is dropped.
func FillPath(path string, value func(name string) (string, error)) (string, error) {
	if !strings.Contains(path, "{") {
		return path, nil
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(path, '{')
		if open < 0 {
			b.WriteString(path)
			return b.String(), nil
		}
		end := strings.IndexByte(path[open:], '}')
		if end < 0 {
			return "", fmt.Errorf("route %s: unclosed {", path)
		}
		b.WriteString(path[:open])
		name := path[open+1 : open+end]
		path = path[open+end+1:]
		if name == "$" {
			continue
		}
		name, rest := strings.CutSuffix(name, "...")
		v, err := value(name)
		if err != nil {
			return "", err
		}
		if !rest {
			b.WriteString(url.PathEscape(v))
			continue
		}
		for i, p := range strings.Split(v, "/") {
			if i > 0 {
				b.WriteByte('/')
			}
			b.WriteString(url.PathEscape(p))
		}
	}
}

// FillPathJSON fills a route's parameters from the same-named fields of a
// JSON object (matched as encoding/json matches them: exactly first, then
// case-insensitively): a string's value, a number or bool as written. It
// is how a caller sends a typed argument to an LB route such as /items/{id}.
func FillPathJSON(path string, arg []byte) (string, error) {
	if !strings.Contains(path, "{") {
		return path, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(arg, &fields); err != nil || fields == nil {
		return "", fmt.Errorf("route %s takes its parameters from the argument's fields, but the argument is not a JSON object", path)
	}
	return FillPath(path, func(name string) (string, error) { return fieldText(fields, name) })
}

// fieldText is the text of field name of a JSON object.
func fieldText(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		for k, v := range fields {
			if strings.EqualFold(k, name) {
				raw, ok = v, true
				break
			}
		}
	}
	if !ok || string(raw) == "null" {
		return "", fmt.Errorf("path parameter {%s}: the argument has no field %q", name, name)
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("path parameter {%s}: %w", name, err)
		}
		return s, nil
	case '{', '[':
		return "", fmt.Errorf("path parameter {%s}: field %q is not a string, number or bool", name, name)
	}
	return string(raw), nil
}
