package flash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/serve"
)

// binder turns wire input into a job for one function.
type binder func(in serve.Input) (serve.Job, error)

// newBinder returns the binder of fn: JSON input decoded into In, then an
// LB request's query parameters and headers set on the fields tagged for
// them, then the route's path parameters set on In's fields of the same
// JSON name.
func newBinder[In, Out any](fn func(context.Context, In) (Out, error), path string) (binder, error) {
	set, err := paramSetter(reflect.TypeFor[In](), wire.PathParams(path))
	if err != nil {
		return nil, err
	}
	setMeta, err := metaSetter(reflect.TypeFor[In]())
	if err != nil {
		return nil, err
	}
	return func(in serve.Input) (serve.Job, error) {
		var v In
		if body := bytes.TrimSpace(in.JSON); len(body) > 0 && !bytes.Equal(body, []byte("null")) {
			if err := json.Unmarshal(body, &v); err != nil {
				return nil, fmt.Errorf("input does not fit %s: %w", reflect.TypeFor[In](), err)
			}
		}
		if setMeta != nil && (in.Query != nil || in.Header != nil) {
			if err := setMeta(reflect.ValueOf(&v).Elem(), in.Query, in.Header); err != nil {
				return nil, err
			}
		}
		if err := set(reflect.ValueOf(&v).Elem(), in.Params); err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) { return fn(ctx, v) }, nil
	}, nil
}

// paramSetter checks at registration that every path parameter has a field to
// go to, and returns the function that sets them from strings.
func paramSetter(t reflect.Type, params []string) (func(reflect.Value, map[string]string) error, error) {
	if len(params) == 0 {
		return func(reflect.Value, map[string]string) error { return nil }, nil
	}
	switch {
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String &&
		(t.Elem().Kind() == reflect.String || t.Elem().Kind() == reflect.Interface):
		return func(v reflect.Value, got map[string]string) error {
			if v.IsNil() {
				v.Set(reflect.MakeMap(t))
			}
			for _, p := range params {
				if s, ok := got[p]; ok {
					v.SetMapIndex(reflect.ValueOf(p), reflect.ValueOf(s).Convert(t.Elem()))
				}
			}
			return nil
		}, nil
	case t.Kind() != reflect.Struct:
		return nil, fmt.Errorf("path parameters %v need a struct or map input, not %s", params, t)
	}
	fields := map[string][]int{}
	for _, p := range params {
		idx, ok := jsonField(t, p)
		if !ok {
			return nil, fmt.Errorf("path parameter {%s} has no field in %s (json name %q)", p, t, p)
		}
		switch t.FieldByIndex(idx).Type.Kind() {
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		default:
			return nil, fmt.Errorf("path parameter {%s}: field of %s has type %s; want a string, number or bool", p, t, t.FieldByIndex(idx).Type)
		}
		fields[p] = idx
	}
	return func(v reflect.Value, got map[string]string) error {
		for p, idx := range fields {
			s, ok := got[p]
			if !ok {
				continue
			}
			if err := setString(v.FieldByIndex(idx), s); err != nil {
				return fmt.Errorf("path parameter {%s}=%q: %w", p, s, err)
			}
		}
		return nil
	}, nil
}

// jsonField finds the exported field encoding/json would fill for name.
func jsonField(t reflect.Type, name string) ([]int, bool) {
	var fold []int
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		key := f.Name
		if tag != "" {
			key = tag
		}
		if key == name {
			return f.Index, true
		}
		if fold == nil && strings.EqualFold(key, name) {
			fold = f.Index
		}
	}
	return fold, fold != nil
}

func setString(f reflect.Value, s string) error {
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a non-negative integer")
		}
		f.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a number")
		}
		f.SetFloat(n)
	}
	return nil
}
