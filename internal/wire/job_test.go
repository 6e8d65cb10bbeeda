package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeJobRequest(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		fn      string
		input   string
		timeout time.Duration
		err     string // substring of the error; "" = success
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
			c, err := DecodeJobRequest([]byte(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v; want one containing %q", err, tt.err)
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

// TestJobRequestRoundTrip: what a caller encodes is what an endpoint decodes.
func TestJobRequestRoundTrip(t *testing.T) {
	for _, arg := range []string{`{"x":1}`, `42`, `null`, `"s"`, `[1,{"a":[]}]`} {
		for _, fn := range []string{"embed", `we"ird\name`, "ünï"} {
			body := AppendJobRequest(nil, fn, []byte(arg))
			c, err := DecodeJobRequest(body)
			if err != nil || c.Function != fn || string(c.Input) != arg || c.Timeout != 0 {
				t.Fatalf("%s: %+v, %v", body, c, err)
			}
		}
	}
}

func TestDecodeJobAnswer(t *testing.T) {
	tests := []struct {
		name, body string
		status     string
		output     bool   // Output is flash's shape
		raw        string // RawOutput
		failed     bool
		err        bool
	}{
		{name: "completed", body: `{"id":"j","status":"COMPLETED","output":{"success":true,"json_result":{"v":1}},"delayTime":3,"executionTime":4}`,
			status: "COMPLETED", output: true, raw: `{"success":true,"json_result":{"v":1}}`},
		{name: "failed", body: `{"id":"j","status":"FAILED","error":"ValueError: x","output":{"success":false,"error":"x","error_type":"ValueError"}}`,
			status: "FAILED", output: true, raw: `{"success":false,"error":"x","error_type":"ValueError"}`, failed: true},
		{name: "python worker", body: `{"id":"j","status":"COMPLETED","output":{"result":"gASV"}}`, status: "COMPLETED", raw: `{"result":"gASV"}`},
		{name: "string output", body: `{"id":"j","status":"COMPLETED","output":"hello"}`, status: "COMPLETED", raw: `"hello"`},
		{name: "null output", body: `{"id":"j","status":"IN_QUEUE","output":null}`, status: "IN_QUEUE"},
		{name: "no output", body: `{"id":"j","status":"IN_PROGRESS"}`, status: "IN_PROGRESS"},
		{name: "runpod failed", body: `{"id":"j","status":"FAILED","error":"handler crashed"}`, status: "FAILED"},
		{name: "not json", body: `{"id":`, err: true},
		{name: "array", body: `[]`, err: true},
		{name: "status number", body: `{"status":1}`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := DecodeJobAnswer([]byte(tt.body))
			if tt.err {
				if err == nil {
					t.Fatalf("no error for %s", tt.body)
				}
				return
			}
			if err != nil || a.Status != tt.status || (a.Output != nil) != tt.output || string(a.RawOutput) != tt.raw {
				t.Fatalf("got %+v, %v", a, err)
			}
			if a.Output != nil && a.Output.Failed() != tt.failed {
				t.Fatalf("Failed() = %v", a.Output.Failed())
			}
		})
	}
}

// TestJobAnswerRoundTrip: what an endpoint encodes is what a caller decodes.
func TestJobAnswerRoundTrip(t *testing.T) {
	for _, in := range []JobAnswer{
		{ID: "a", Status: StatusCompleted, Output: Completed(json.RawMessage(`{"v":[1,2]}`)), DelayTime: 1, ExecutionTime: 2},
		{ID: "b", Status: StatusFailed, Error: "KeyError: k", Output: Failed("KeyError", "k")},
		{ID: "c", Status: StatusInQueue},
	} {
		body, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := DecodeJobAnswer(body)
		if err != nil {
			t.Fatal(err)
		}
		out.RawOutput = nil
		a, _ := json.Marshal(out)
		if string(a) != string(body) {
			t.Fatalf("round trip\n got %s\nwant %s", a, body)
		}
	}
}

func TestDecodeCanonical(t *testing.T) {
	for _, c := range []struct {
		body  string
		fast  bool
		input string
	}{
		{`{"input":{"function_name":"embed","execution_type":"function","args":[{"text":"hi"}],"kwargs":{},"serialization_format":"json"}}`, true, `{"text":"hi"}`},
		{`{"input":{"function_name":"f","execution_type":"function","args":[null],"kwargs":{},"serialization_format":"json"}}`, true, `null`},
		// Valid envelopes that are not exactly flash's take the general decoder.
		{`{"input":{"function_name":"f","execution_type":"function","args":[1],"kwargs":{"a":1},"x":[2],"kwargs":{},"serialization_format":"json"}}`, false, `1`},
		{`{"input":{"function_name":"f","execution_type":"function","args":[ 1 ],"kwargs":{},"serialization_format":"json"}}`, false, `1`},
		{`{"input":{"function_name":"f\u0041","execution_type":"function","args":[1],"kwargs":{},"serialization_format":"json"}}`, false, `1`},
		{`{"input":{"function_name":"f","execution_type":"function","args":[1],"kwargs":{},"serialization_format":"json"},"policy":{"executionTimeout":5}}`, false, `1`},
	} {
		_, fast := decodeCanonical([]byte(c.body))
		got, err := DecodeJobRequest([]byte(c.body))
		if fast != c.fast || err != nil || string(got.Input) != c.input {
			t.Errorf("%s: fast %v, input %s, err %v; want fast %v, input %s", c.body, fast, got.Input, err, c.fast, c.input)
		}
	}
}

func FuzzDecodeJobRequest(f *testing.F) {
	for _, s := range []string{
		`{"input":{"function_name":"f","execution_type":"function","args":[{"x":1}],"kwargs":{},"serialization_format":"json"}}`,
		`{"input":{"function_name":"f","kwargs":{"a":[1,2,{"b":null}]}},"policy":{"executionTimeout":10}}`,
		`{"input":{"function_name":"f","args":[1,2]}}`,
		`{"input":{"function_name":"f","kwargs":{ } ,"args":[ "x" ]}}`,
		`{"input":null}`, `[]`, ``, `{"input":{"function_code":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"input":{"function_name":"f","execution_type":"function","args":[1],"kwargs":{"a":1},"x":[2],"kwargs":{},"serialization_format":"json"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeJobRequest(body)
		// The fast path for flash's own envelope agrees with the general decoder.
		if fast, ok := decodeCanonical(body); ok {
			slow, err := decodeJobRequest(body)
			if err != nil || slow.Function != fast.Function || string(slow.Input) != string(fast.Input) || slow.Timeout != 0 {
				t.Fatalf("canonical %+v, general %+v, %v", fast, slow, err)
			}
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
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
		// Re-encoding what was decoded gives the same call.
		again, err := DecodeJobRequest(AppendJobRequest(nil, c.Function, c.Input))
		if err != nil || again.Function != c.Function || string(again.Input) != string(c.Input) {
			t.Fatalf("re-encoded %+v: %+v, %v", c, again, err)
		}
	})
}

func FuzzDecodeJobAnswer(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","status":"COMPLETED","output":{"success":true,"json_result":{"vector":[1]}}}`,
		`{"status":"FAILED","error":"ValueError: x","output":"str"}`,
		`{"id":"j","status":"COMPLETED","output":{"result":"gASV"}}`,
		`{"status":"IN_QUEUE","output":null}`, `[]`, ``, `{"output":{"success":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"id":"ab_c","status":"COMPLETED","output":{"success":true,"json_result":{"x":"},\"delayTime\":1"}},"delayTime":0,"executionTime":12}`))
	f.Add([]byte(`{"id":"j","status":"COMPLETED","output":{"success":true,"json_result":[1]},"delayTime":01,"executionTime":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := DecodeJobAnswer(body)
		// The fast path for flash's own COMPLETED answer agrees with the general decoder.
		if fast, ok := decodeCompleted(body); ok {
			slow, err := decodeJobAnswer(body)
			if err != nil || slow.ID != fast.ID || slow.Status != fast.Status || slow.Error != fast.Error ||
				slow.DelayTime != fast.DelayTime || slow.ExecutionTime != fast.ExecutionTime ||
				string(slow.RawOutput) != string(fast.RawOutput) || slow.Output == nil ||
				slow.Output.Success == nil || !*slow.Output.Success || string(slow.Output.JSONResult) != string(fast.Output.JSONResult) ||
				slow.Output.Error != "" || slow.Output.ErrorType != "" {
				t.Fatalf("fast %+v, general %+v, %v", fast, slow, err)
			}
		}
		if err != nil {
			return
		}
		if a.Output != nil && len(a.RawOutput) == 0 {
			t.Fatal("Output without RawOutput")
		}
		if len(a.RawOutput) > len(body) {
			t.Fatalf("RawOutput longer than the body")
		}
	})
}

func TestJobError(t *testing.T) {
	tests := []struct{ in, typ, msg string }{
		{"ValueError: bad text", "ValueError", "bad text"},
		{`{"error_type": "<class 'ValueError'>", "error_message": "bad text", "error_traceback": "Traceback…", "hostname": "h", "worker_id": "w", "runpod_version": "1.7"}`, "ValueError", "bad text"},
		{`{"error_type": "<class 'torch.cuda.OutOfMemoryError'>", "error_message": "CUDA out of memory"}`, "torch.cuda.OutOfMemoryError", "CUDA out of memory"},
		{`{"error_message": "no type"}`, "", "no type"},
		{"handler crashed", "", "handler crashed"},
		{"worker lost: timeout", "", "worker lost: timeout"},
		{`{"not":"an error"}`, "", `{"not":"an error"}`},
		{"", "", ""},
	}
	for _, tt := range tests {
		if typ, msg := JobError(tt.in); typ != tt.typ || msg != tt.msg {
			t.Errorf("JobError(%q) = %q, %q; want %q, %q", tt.in, typ, msg, tt.typ, tt.msg)
		}
	}
}

func FuzzJobError(f *testing.F) {
	f.Add("ValueError: x")
	f.Add(`{"error_type": "<class 'KeyError'>", "error_message": "k"}`)
	f.Add("{")
	f.Fuzz(func(t *testing.T, s string) {
		typ, msg := JobError(s)
		if strings.ContainsAny(typ, " \t\n") && !strings.HasPrefix(strings.TrimSpace(s), "{") {
			t.Fatalf("type %q with spaces from %q", typ, s)
		}
		if len(typ)+len(msg) > len(s) {
			t.Fatalf("JobError(%q) made text up: %q %q", s, typ, msg)
		}
	})
}

// TestDecodeCompleted: what an endpoint writes for a COMPLETED job takes the
// fast path and decodes as the general decoder does; near misses do not.
func TestDecodeCompleted(t *testing.T) {
	body, err := json.Marshal(JobAnswer{ID: "Ab-9_x", Status: StatusCompleted, DelayTime: 3, ExecutionTime: 12,
		Output: Completed(json.RawMessage(`{"vector":[1,2],"s":"},\"delayTime\":1"}`))})
	if err != nil {
		t.Fatal(err)
	}
	fast, ok := decodeCompleted(body)
	slow, err := decodeJobAnswer(body)
	if !ok || err != nil || fast.ID != slow.ID || fast.DelayTime != 3 || fast.ExecutionTime != 12 ||
		string(fast.RawOutput) != string(slow.RawOutput) || string(fast.Output.JSONResult) != string(slow.Output.JSONResult) {
		t.Fatalf("fast %+v (%v), general %+v (%v)\n%s", fast, ok, slow, err, body)
	}
	for _, near := range []string{
		`{"id":"j","status":"COMPLETED","output":{"success":true,"json_result":1},"delayTime":0,"executionTime":0,"error":"x"}`,
		`{"id":"j","status":"COMPLETED","output":{"success":true,"json_result": 1},"delayTime":0,"executionTime":0}`,
		`{"id":"j","status":"COMPLETED","output":{"success":true,"json_result":1},"delayTime":-1,"executionTime":0}`,
		`{"id":"j k","status":"COMPLETED","output":{"success":true,"json_result":1},"delayTime":0,"executionTime":0}`,
	} {
		if _, ok := decodeCompleted([]byte(near)); ok {
			t.Errorf("fast path took %s", near)
		}
	}
}

// TestJobAnswerAppendJSON: the hand-written encoding decodes as
// json.Marshal's, and is byte for byte the same for plain values.
func TestJobAnswerAppendJSON(t *testing.T) {
	yes, no := true, false
	for _, a := range []JobAnswer{
		{},
		{ID: "job-1", Status: StatusCompleted, Output: Completed(json.RawMessage(`{"len":3,"n":[1,2]}`)), DelayTime: 3, ExecutionTime: 12},
		{ID: "j", Status: StatusFailed, Error: "ValueError: bad <input> & \"quotes\"", Output: &JobOutput{Success: &no, Error: "bad\n\tline é \u2028", ErrorType: "ValueError", Code: "invalid_argument"}},
		{ID: "j", Status: StatusInProgress, Output: &JobOutput{}},
		{Status: StatusCompleted, Output: &JobOutput{Success: &yes, JSONResult: json.RawMessage(`null`)}},
		{Status: StatusTimedOut, Error: "\x00\x1f\x7f", DelayTime: -1, ExecutionTime: math.MaxInt64},
	} {
		got, err := a.AppendJSON(nil)
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		want, _ := json.Marshal(a)
		if !bytes.Equal(got, want) {
			t.Errorf("AppendJSON =\n\t%s\njson.Marshal =\n\t%s", got, want)
		}
	}
	// A result that is not JSON fails as json.Marshal fails.
	bad := JobAnswer{Output: Completed(json.RawMessage(`{"a":`))}
	if _, err := bad.AppendJSON(nil); err == nil {
		t.Error("AppendJSON accepted an invalid result")
	}
}

// FuzzJobAnswerAppendJSON: any strings and result give what json.Marshal
// gives, once decoded.
func FuzzJobAnswerAppendJSON(f *testing.F) {
	f.Add("job-1", "COMPLETED", "", "", `{"x":1}`, int64(5))
	f.Add("é<>&", "\u2028", "bad\xffutf8", "Type\n", `"s"`, int64(-3))
	f.Fuzz(func(t *testing.T, id, status, errMsg, errType, result string, n int64) {
		a := JobAnswer{ID: id, Status: status, Error: errMsg, DelayTime: n, ExecutionTime: -n,
			Output: &JobOutput{JSONResult: json.RawMessage(result), Error: errMsg, ErrorType: errType}}
		got, gerr := a.AppendJSON(nil)
		want, werr := json.Marshal(&a)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("AppendJSON err %v, json.Marshal err %v", gerr, werr)
		}
		if gerr != nil {
			return
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("AppendJSON gave invalid JSON %q: %v", got, err)
		}
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("AppendJSON =\n\t%s\njson.Marshal =\n\t%s", got, want)
		}
	})
}
