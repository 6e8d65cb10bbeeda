package manifest

import (
	"bytes"
	"encoding/json"
)

// A manifest is checked once with json.Valid; after that its nested objects
// and arrays are split into members by skipping over bytes, instead of
// running encoding/json's decoder again at every level (which also re-checks
// validity each time). The splits alias the checked copy of the input.

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
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

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
