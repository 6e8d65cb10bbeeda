package manifest

import (
	"bytes"
	"encoding/json"
)

// A manifest is checked once (topMembers); after that its nested objects
// and arrays are split into members by skipping over bytes, instead of
// running encoding/json's decoder again at every level (which also re-checks
// validity each time). The splits alias the checked copy of the input.

// topMembers splits the top-level object of a manifest into its members,
// checking that data is valid JSON without scanning twice what did not
// change: the structure is checked here, and each value with json.Valid
// unless prev (a valid manifest) had the same bytes under the same key. A
// split of invalid input that puts a boundary in the wrong place makes a
// value that json.Valid refuses, so ok is true exactly when
// json.Valid(data) and data is an object.
func topMembers(prev *Manifest, data []byte) (ms []member, ok bool) {
	i, end := skipSpace(data, 0), len(data)
	for end > i && isSpace(data[end-1]) {
		end--
	}
	data = data[:end]
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return ms, i+1 == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		end := skipString(data, i)
		if end > len(data) || !json.Valid(data[i:end]) {
			return nil, false
		}
		key := decodeKey(data[i:end])
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return nil, false
		}
		end = skipValue(data, i)
		if end > len(data) {
			return nil, false
		}
		val := data[i:end:end]
		if known, had := prev.rawValue(key); !had || !bytes.Equal(known, val) {
			if !json.Valid(val) {
				return nil, false
			}
		}
		ms = append(ms, member{key, val})
		i = skipSpace(data, end)
		switch {
		case i >= len(data):
			return nil, false
		case data[i] == '}':
			return ms, i+1 == len(data)
		case data[i] != ',':
			return nil, false
		}
		i = skipSpace(data, i+1)
	}
}

// rawValue is the raw value of a top-level key of m, which may be nil.
func (m *Manifest) rawValue(key string) (json.RawMessage, bool) {
	if m == nil {
		return nil, false
	}
	v, ok := m.raw[key]
	return v, ok
}

// member is one key and its raw value, trimmed of white space.
type member struct {
	key string
	val json.RawMessage
}

// members appends the members of a valid JSON object to ms, in order; ok
// is false when data is not an object.
func members(ms []member, data []byte) (_ []member, ok bool) {
	data = bytes.TrimSpace(data)
	if len(data) < 2 || data[0] != '{' {
		return ms, false
	}
	i := skipSpace(data, 1)
	for i < len(data) && data[i] != '}' {
		end := skipValue(data, i)
		key := decodeKey(data[i:end])
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the ':'
		end = skipValue(data, i)
		ms = append(ms, member{key, data[i:end:end]})
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return ms, true
}

// elements splits a valid JSON array into its elements; ok is false when
// data is not an array.
func elements(data []byte) (es []json.RawMessage, ok bool) {
	data = bytes.TrimSpace(data)
	if len(data) < 2 || data[0] != '[' {
		return nil, false
	}
	i := skipSpace(data, 1)
	for i < len(data) && data[i] != ']' {
		end := skipValue(data, i)
		es = append(es, data[i:end:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return es, true
}

// field returns the value of key in ms, nil when absent; of duplicate keys
// the last wins, as in encoding/json.
func field(ms []member, key string) json.RawMessage {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].key == key {
			return ms[i].val
		}
	}
	return nil
}

// decodeKey decodes a valid JSON string literal.
func decodeKey(raw []byte) string {
	if s, ok := plainString(raw); ok {
		return s
	}
	var s string
	json.Unmarshal(raw, &s) // valid: cannot fail
	return s
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

// isSpace reports JSON's white space (bytes.TrimSpace also trims others).
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipValue returns the end of the valid JSON value starting at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(data) { // number, true, false, null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// skipString returns the end of the string literal starting at data[i].
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}
