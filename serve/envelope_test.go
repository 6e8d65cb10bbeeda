package serve

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeEnvelope(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		fn      string
		input   string
		timeout time.Duration
		err     string // substring of the 400 message; "" = success
	}{
		{name: "args", body: `{"input":{"function_name":"f","execution_type":"function","args":[{"x":1}],"kwargs":{},"serialization_format":"json"}}`, fn: "f", input: `{"x":1}`},
		{name: "args scalar", body: `{"input":{"function_name":"f","args":[42]}}`, fn: "f", input: `42`},
		{name: "args null", body: `{"input":{"function_name":"f","args":[null]}}`, fn: "f", input: `null`},
		{name: "kwargs", body: `{"input":{"function_name":"f","kwargs":{"x":1,"y":"z"}}}`, fn: "f", input: `{"x":1,"y":"z"}`},
		{name: "kwargs with empty args", body: `{"input":{"function_name":"f","args":[],"kwargs":{"x":1}}}`, fn: "f", input: `{"x":1}`},
		{name: "args with empty kwargs", body: `{"input":{"function_name":"f","args":[1],"kwargs":{ }}}`, fn: "f", input: `1`},
		{name: "neither", body: `{"input":{"function_name":"f"}}`, fn: "f", input: `{}`},
		{name: "null args and kwargs", body: `{"input":{"function_name":"f","args":null,"kwargs":null}}`, fn: "f", input: `{}`},
		{name: "empty kwargs only", body: `{"input":{"function_name":"f","kwargs":{}}}`, fn: "f", input: `{}`},
		{name: "null code fields", body: `{"input":{"function_name":"f","function_code":null,"class_code":""}}`, fn: "f", input: `{}`},
		{name: "policy", body: `{"input":{"function_name":"f"},"policy":{"executionTimeout":1500}}`, fn: "f", input: `{}`, timeout: 1500 * time.Millisecond},
		{name: "policy zero", body: `{"input":{"function_name":"f"},"policy":{"executionTimeout":0}}`, fn: "f", input: `{}`},
		{name: "policy huge", body: `{"input":{"function_name":"f"},"policy":{"executionTimeout":1e300}}`, fn: "f", input: `{}`},
		{name: "unknown keys ignored", body: `{"input":{"function_name":"f","extra":1},"webhook":"x","policy":{"ttl":5}}`, fn: "f", input: `{}`},

		{name: "not json", body: `{"input":`, err: "malformed JSON"},
		{name: "empty body", body: ``, err: "malformed JSON"},
		{name: "array body", body: `[1]`, err: "must be a JSON object"},
		{name: "null body", body: `null`, err: `missing "input"`},
		{name: "no input", body: `{}`, err: `missing "input"`},
		{name: "input null", body: `{"input":null}`, err: `missing "input"`},
		{name: "input string", body: `{"input":"x"}`, err: `field "input"`},
		{name: "no function name", body: `{"input":{"args":[1]}}`, err: "function_name"},
		{name: "function name number", body: `{"input":{"function_name":7}}`, err: "function_name"},
		{name: "two args", body: `{"input":{"function_name":"f","args":[1,2]}}`, err: "2 positional arguments"},
		{name: "args and kwargs", body: `{"input":{"function_name":"f","args":[1],"kwargs":{"a":1}}}`, err: "not both"},
		{name: "kwargs array", body: `{"input":{"function_name":"f","kwargs":[1]}}`, err: "must be a JSON object"},
		{name: "args object", body: `{"input":{"function_name":"f","args":{"a":1}}}`, err: "args"},
		{name: "class execution", body: `{"input":{"function_name":"f","execution_type":"class"}}`, err: "compiled-in functions only"},
		{name: "function code", body: `{"input":{"function_name":"f","function_code":"def f(): pass"}}`, err: "compiled-in functions only"},
		{name: "class code", body: `{"input":{"function_name":"f","class_code":"class A: pass"}}`, err: "compiled-in functions only"},
		{name: "cloudpickle", body: `{"input":{"function_name":"f","serialization_format":"cloudpickle"}}`, err: `only "json"`},
		{name: "negative timeout", body: `{"input":{"function_name":"f"},"policy":{"executionTimeout":-1}}`, err: "executionTimeout"},
		{name: "string timeout", body: `{"input":{"function_name":"f"},"policy":{"executionTimeout":"5s"}}`, err: "executionTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeEnvelope([]byte(tt.body))
			if tt.err != "" {
				var he *httpError
				if !errors.As(err, &he) || he.Status != 400 || !strings.Contains(he.Msg, tt.err) {
					t.Fatalf("err = %v; want 400 containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if c.Function != tt.fn || string(c.Input) != tt.input || c.Timeout != tt.timeout {
				t.Fatalf("got %q %s %v; want %q %s %v", c.Function, c.Input, c.Timeout, tt.fn, tt.input, tt.timeout)
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"input":{"function_name":"f","execution_type":"function","args":[{"x":1}],"kwargs":{},"serialization_format":"json"}}`,
		`{"input":{"function_name":"f","kwargs":{"a":[1,2,{"b":null}]}},"policy":{"executionTimeout":10}}`,
		`{"input":{"function_name":"f","args":[1,2]}}`,
		`{"input":{"function_name":"f","kwargs":{ } ,"args":[ "x" ]}}`,
		`{"input":null}`, `[]`, ``, `{"input":{"function_code":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodeEnvelope(body)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.Status != 400 || he.Msg == "" {
				t.Fatalf("error %v is not a 400 httpError", err)
			}
			return
		}
		if c.Function == "" {
			t.Fatal("accepted an envelope without function name")
		}
		if !json.Valid(c.Input) {
			t.Fatalf("input %q is not JSON", c.Input)
		}
		if c.Timeout < 0 {
			t.Fatalf("negative timeout %v", c.Timeout)
		}
	})
}
