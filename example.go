package flash

import (
	"encoding/json"
	"reflect"
	"strings"
)

// exampleInput returns a JSON example of t for people: every field present
// with a plausible value, so that `flash run` can print a call that works
// for most functions. It is written as the function's "example_input".
func exampleInput(t reflect.Type) json.RawMessage {
	b, err := json.Marshal(example(t, 0))
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

func example(t reflect.Type, depth int) any {
	if depth > 4 {
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return example(t.Elem(), depth+1)
	case reflect.String:
		return "hello flash"
	case reflect.Bool:
		return true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return 1
	case reflect.Float32, reflect.Float64:
		return 1.5
	case reflect.Slice, reflect.Array:
		return []any{example(t.Elem(), depth+1)}
	case reflect.Map:
		return map[string]any{}
	case reflect.Struct:
		obj := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			obj[name] = example(f.Type, depth+1)
		}
		return obj
	}
	return nil
}
