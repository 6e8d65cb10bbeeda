package serve

import (
	"encoding/json"
	"errors"
	"testing"
)

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
