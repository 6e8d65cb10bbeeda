package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// HashEntry returns the config hash of a raw resource entry (SPEC §2.3): the
// lower-case hex SHA-256 of the entry without runtime keys, serialised as
// Python's json.dumps(entry, sort_keys=True) does. It needs no other validity.
func HashEntry(entry json.RawMessage) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(entry, &obj); err != nil || obj == nil {
		return "", fmt.Errorf("hash: resource entry must be a JSON object: %w", errOrNull(err))
	}
	return hashEntry(obj), nil
}

func hashEntry(obj map[string]json.RawMessage) string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if !slices.Contains(runtimeKeys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	size := 2
	for _, k := range keys {
		size += len(k) + len(obj[k]) + 8
	}
	var buf bytes.Buffer
	buf.Grow(size + size/8) // Python's separators add a few bytes
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteString(", ")
		}
		pythonString(&buf, k)
		buf.WriteString(": ")
		pythonRaw(&buf, obj[k])
	}
	buf.WriteByte('}')
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// pythonRaw is pythonJSON of a valid JSON value, written straight from its
// bytes without building generic values.
func pythonRaw(buf *bytes.Buffer, raw json.RawMessage) {
	var scratch [][]member
	pythonRawDepth(buf, raw, &scratch, 0)
}

// pythonRawDepth is pythonRaw reusing (*scratch)[depth] for the members of
// the object at that depth, so that hashing a resource allocates little.
func pythonRawDepth(buf *bytes.Buffer, raw json.RawMessage, scratch *[][]member, depth int) {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '{':
		for len(*scratch) <= depth {
			*scratch = append(*scratch, nil)
		}
		ms, _ := members((*scratch)[depth][:0], raw)
		(*scratch)[depth] = ms
		// Sorted by key; of duplicate keys the last wins, as in a decoded map.
		slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
		buf.WriteByte('{')
		first := true
		for i, m := range ms {
			if i+1 < len(ms) && ms[i+1].key == m.key {
				continue
			}
			if !first {
				buf.WriteString(", ")
			}
			first = false
			pythonString(buf, m.key)
			buf.WriteString(": ")
			pythonRawDepth(buf, m.val, scratch, depth+1)
		}
		buf.WriteByte('}')
	case '[':
		buf.WriteByte('[')
		i := skipSpace(raw, 1)
		for n := 0; i < len(raw) && raw[i] != ']'; n++ {
			end := skipValue(raw, i)
			if n > 0 {
				buf.WriteString(", ")
			}
			pythonRawDepth(buf, raw[i:end], scratch, depth+1)
			i = skipSpace(raw, end)
			if i < len(raw) && raw[i] == ',' {
				i = skipSpace(raw, i+1)
			}
		}
		buf.WriteByte(']')
	case '"':
		if printableASCII(raw[1 : len(raw)-1]) {
			buf.Write(raw) // ensure_ascii writes such a string as it is
			return
		}
		pythonString(buf, decodeKey(raw))
	case 't', 'f', 'n':
		buf.Write(raw)
	default:
		buf.WriteString(pythonNumber(string(raw)))
	}
}

// printableASCII reports a string literal's body that needs no escape in
// either direction: bytes 0x20–0x7e other than '"' and '\\'.
func printableASCII(body []byte) bool {
	for _, c := range body {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// PythonJSON serialises the JSON document data exactly as Python's
// json.dumps(value, sort_keys=True) would after json.loads.
func PythonJSON(data []byte) ([]byte, error) {
	v, err := decodeValue(data)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	pythonJSON(&buf, v)
	return buf.Bytes(), nil
}

func errOrNull(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("got null")
}

func decodeValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// pythonJSON writes v with sorted keys, ", " and ": " separators and
// ensure_ascii escaping — json.dumps(v, sort_keys=True).
func pythonJSON(buf *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(v))
	case string:
		pythonString(buf, v)
	case json.Number:
		buf.WriteString(pythonNumber(string(v)))
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteString(", ")
			}
			pythonJSON(buf, e)
		}
		buf.WriteByte(']')
	case map[string]any:
		// Python sorts str keys by code point; Go's byte order on UTF-8 is the same.
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteString(", ")
			}
			pythonString(buf, k)
			buf.WriteString(": ")
			pythonJSON(buf, v[k])
		}
		buf.WriteByte('}')
	}
}

// pythonNumber renders a JSON number literal as Python would after json.loads:
// integers verbatim (arbitrary precision), floats as repr(float).
func pythonNumber(lit string) string {
	if !strings.ContainsAny(lit, ".eE") {
		if strings.TrimLeft(lit, "-0") == "" {
			return "0" // -0 is the integer 0
		}
		return lit
	}
	f, _ := strconv.ParseFloat(lit, 64) // ±Inf on overflow, as Python's float()
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	// repr uses the shortest round-tripping digits, in exponent form when the
	// decimal exponent is below -4 or at least 16.
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(sci[strings.IndexByte(sci, 'e')+1:])
	if f != 0 && (exp < -4 || exp >= 16) {
		return sci
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsRune(s, '.') {
		s += ".0"
	}
	return s
}

const hexDigits = "0123456789abcdef"

// pythonString writes s as json.dumps does with ensure_ascii=True.
func pythonString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		default:
			if r >= 0x20 && r <= 0x7e {
				buf.WriteByte(byte(r))
				continue
			}
			if r > 0xffff {
				hi, lo := utf16.EncodeRune(r)
				writeU(buf, hi)
				writeU(buf, lo)
				continue
			}
			writeU(buf, r)
		}
	}
	buf.WriteByte('"')
}

func writeU(buf *bytes.Buffer, r rune) {
	buf.WriteString(`\u`)
	buf.WriteByte(hexDigits[r>>12&0xf])
	buf.WriteByte(hexDigits[r>>8&0xf])
	buf.WriteByte(hexDigits[r>>4&0xf])
	buf.WriteByte(hexDigits[r&0xf])
}
