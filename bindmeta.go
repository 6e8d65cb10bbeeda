package flash

import (
	"fmt"
	"net/http"
	"net/url"
	"reflect"
)

// metaField is a field of In filled from an LB request's query or headers.
type metaField struct {
	index  []int
	query  string // the query parameter's name, or ""
	header string // the canonical header name, or ""
}

// metaSetter checks at registration the fields of t tagged `query:"name"`
// or `header:"Name"` (a string, number or bool, or a slice of them for a
// repeated parameter), and returns the function that fills them from a
// request; nil when t has none.
func metaSetter(t reflect.Type) (func(v reflect.Value, q url.Values, h http.Header) error, error) {
	if t.Kind() != reflect.Struct {
		return nil, nil
	}
	var fields []metaField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		q, hasQ := f.Tag.Lookup("query")
		h, hasH := f.Tag.Lookup("header")
		if !hasQ && !hasH {
			continue
		}
		switch {
		case !f.IsExported():
			return nil, fmt.Errorf("field %s of %s: tagged query/header but not exported", f.Name, t)
		case hasQ && hasH:
			return nil, fmt.Errorf("field %s of %s: both query and header tags", f.Name, t)
		case hasQ && q == "", hasH && h == "":
			return nil, fmt.Errorf("field %s of %s: empty query/header tag", f.Name, t)
		case !scalarKind(f.Type.Kind()) && (f.Type.Kind() != reflect.Slice || !scalarKind(f.Type.Elem().Kind())):
			return nil, fmt.Errorf("field %s of %s has type %s; a query/header field must be a string, number or bool, or a slice of them", f.Name, t, f.Type)
		}
		fields = append(fields, metaField{index: f.Index, query: q, header: http.CanonicalHeaderKey(h)})
	}
	if len(fields) == 0 {
		return nil, nil
	}
	return func(v reflect.Value, q url.Values, h http.Header) error {
		for _, mf := range fields {
			vals, what := q[mf.query], "query parameter "+mf.query
			if mf.query == "" {
				vals, what = h[mf.header], "header "+mf.header
			}
			if len(vals) == 0 {
				continue // absent: the body's value, or the zero value, stays
			}
			if err := setStrings(v.FieldByIndex(mf.index), vals); err != nil {
				return fmt.Errorf("%s=%q: %w", what, vals[0], err)
			}
		}
		return nil
	}, nil
}

func scalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// setStrings sets f from a parameter's values: the first for a scalar,
// every one for a slice.
func setStrings(f reflect.Value, vals []string) error {
	if f.Kind() != reflect.Slice {
		return setString(f, vals[0])
	}
	s := reflect.MakeSlice(f.Type(), len(vals), len(vals))
	for i, v := range vals {
		if err := setString(s.Index(i), v); err != nil {
			return err
		}
	}
	f.Set(s)
	return nil
}
