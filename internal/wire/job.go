package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Job statuses of the Runpod job API (SPEC §5.3).
const (
	StatusInQueue    = "IN_QUEUE"
	StatusInProgress = "IN_PROGRESS"
	StatusCompleted  = "COMPLETED"
	StatusFailed     = "FAILED"
	StatusCancelled  = "CANCELLED"
	StatusTimedOut   = "TIMED_OUT"
)

// FinalStatus reports whether a job in status s will not change any more.
func FinalStatus(s string) bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusTimedOut:
		return true
	}
	return false
}

// JobRequest is the body of POST /run and /runsync: the envelope Runpod's
// Python Flash sends, of which flash runs "execution_type": "function" with
// one JSON input.
type JobRequest struct {
	Input  *JobInput  `json:"input"`
	Policy *JobPolicy `json:"policy,omitempty"`
}

// JobInput is a JobRequest's "input".
type JobInput struct {
	FunctionName        string            `json:"function_name"`
	ExecutionType       *string           `json:"execution_type,omitempty"`
	Args                []json.RawMessage `json:"args"`
	Kwargs              json.RawMessage   `json:"kwargs,omitempty"`
	SerializationFormat *string           `json:"serialization_format,omitempty"`
	FunctionCode        json.RawMessage   `json:"function_code,omitempty"`
	ClassCode           json.RawMessage   `json:"class_code,omitempty"`
}

// JobPolicy is a JobRequest's "policy"; ExecutionTimeout is in milliseconds.
type JobPolicy struct {
	ExecutionTimeout *float64 `json:"executionTimeout,omitempty"`
}

// Invocation is a decoded JobRequest: which function, its one JSON input,
// and the execution timeout the caller asked for (0 = none).
type Invocation struct {
	Function string
	Input    json.RawMessage
	Timeout  time.Duration
}

// JobRequestHead returns the start of the envelope that calls fn, up to
// its argument; JobRequestTail ends it. A caller that sends many calls of
// one function keeps the head.
func JobRequestHead(fn string) []byte {
	name, _ := json.Marshal(fn)
	return []byte(`{"input":{"function_name":` + string(name) + `,"execution_type":"function","args":[`)
}

// JobRequestTail closes an envelope begun with JobRequestHead and the argument.
const JobRequestTail = `],"kwargs":{},"serialization_format":"json"}}`

// AppendJobRequest appends to dst the envelope that calls fn with arg,
// which must be JSON.
func AppendJobRequest(dst []byte, fn string, arg []byte) []byte {
	dst = append(dst, JobRequestHead(fn)...)
	dst = append(dst, arg...)
	return append(dst, JobRequestTail...)
}

var emptyObject = json.RawMessage(`{}`)

// DecodeJobRequest parses a /run or /runsync body. Every error describes
// the caller's mistake in words meant for the caller (an HTTP 400).
func DecodeJobRequest(body []byte) (Invocation, error) {
	if c, ok := decodeCanonical(body); ok {
		return c, nil
	}
	return decodeJobRequest(body)
}

// decodeJobRequest is DecodeJobRequest for any body.
func decodeJobRequest(body []byte) (Invocation, error) {
	var env JobRequest
	if err := json.Unmarshal(body, &env); err != nil {
		return Invocation{}, fmt.Errorf("malformed JSON body: %s", jsonErrorText(err))
	}
	in := env.Input
	if in == nil {
		return Invocation{}, errors.New(`missing "input": the body must be {"input": {"function_name": ..., "args": [...]}}`)
	}
	if present(in.FunctionCode) || present(in.ClassCode) ||
		(in.ExecutionType != nil && *in.ExecutionType != "function") {
		return Invocation{}, errors.New(`this endpoint runs compiled-in functions only: "execution_type" must be "function" and no "function_code" or "class_code" may be sent`)
	}
	if in.SerializationFormat != nil && *in.SerializationFormat != "json" {
		return Invocation{}, fmt.Errorf(`unsupported serialization_format %q: only "json" is accepted`, *in.SerializationFormat)
	}
	if in.FunctionName == "" {
		return Invocation{}, errors.New(`missing "input.function_name"`)
	}
	c := Invocation{Function: in.FunctionName}

	kwargs := present(in.Kwargs)
	if kwargs && !isObject(in.Kwargs) {
		return Invocation{}, errors.New(`"input.kwargs" must be a JSON object`)
	}
	nonEmptyKwargs := kwargs && !isEmptyObject(in.Kwargs)
	switch {
	case len(in.Args) > 1:
		return Invocation{}, fmt.Errorf(`%d positional arguments given: a flash function takes exactly one input, sent as "args": [<input>] or as "kwargs": {<input fields>}`, len(in.Args))
	case len(in.Args) == 1 && nonEmptyKwargs:
		return Invocation{}, errors.New(`both "args" and "kwargs" given: send the input either as "args": [<input>] or as "kwargs": {<input fields>}, not both`)
	case len(in.Args) == 1:
		c.Input = in.Args[0]
	case kwargs:
		c.Input = in.Kwargs
	default:
		c.Input = emptyObject
	}

	if env.Policy != nil && env.Policy.ExecutionTimeout != nil {
		ms := *env.Policy.ExecutionTimeout
		switch {
		case ms < 0:
			return Invocation{}, errors.New(`"policy.executionTimeout" must be milliseconds >= 0`)
		case ms >= float64(math.MaxInt64/int64(time.Millisecond)):
			// Longer than time can express: no limit in practice.
		default:
			c.Timeout = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return c, nil
}

// canonicalHead and the name after it start what AppendJobRequest writes.
const (
	canonicalHead = `{"input":{"function_name":"`
	canonicalMid  = `","execution_type":"function","args":[`
)

// decodeCanonical decodes, without encoding/json, the exact envelope that
// flash callers send (AppendJobRequest with a plain function name and an
// argument without surrounding space), so that a call's input is scanned
// once here and decoded once by its function. Any other body, however
// valid, reports false and takes the general decoder.
func decodeCanonical(body []byte) (Invocation, bool) {
	rest, ok := bytes.CutPrefix(body, []byte(canonicalHead))
	if !ok {
		return Invocation{}, false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return Invocation{}, false
	}
	for _, c := range rest[:end] {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return Invocation{}, false
		}
	}
	name := rest[:end]
	arg, ok := bytes.CutPrefix(rest[end:], []byte(canonicalMid))
	if !ok {
		return Invocation{}, false
	}
	if arg, ok = bytes.CutSuffix(arg, []byte(JobRequestTail)); !ok || len(arg) == 0 {
		return Invocation{}, false
	}
	if spaceAt(arg[0]) || spaceAt(arg[len(arg)-1]) || !json.Valid(arg) {
		return Invocation{}, false
	}
	return Invocation{Function: string(name), Input: arg}, true
}

// present reports whether a raw field was sent with a value: absent, null
// and "" all count as absent (Python clients serialise unset fields as null).
func present(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null")) && !bytes.Equal(raw, []byte(`""`))
}

// isObject and isEmptyObject inspect already-validated JSON.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

func isEmptyObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) >= 2 && raw[0] == '{' && len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

// jsonErrorText describes a decoding error without Go type names where the
// caller would not understand them.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Sprintf("the body must be a JSON object, not %s", te.Value)
		}
		return fmt.Sprintf("field %q must not be %s", te.Field, te.Value)
	}
	return err.Error()
}

// JobAnswer is the answer of /runsync and /status/{id} (Runpod's job shape).
type JobAnswer struct {
	ID            string     `json:"id"`
	Status        string     `json:"status"`
	Output        *JobOutput `json:"output,omitempty"`
	Error         string     `json:"error,omitempty"`
	DelayTime     int64      `json:"delayTime"`
	ExecutionTime int64      `json:"executionTime"`

	// RawOutput is "output" as received, set by DecodeJobAnswer (never
	// sent): the only trace of an output that is not flash's JobOutput,
	// such as a Python worker's {"result": "<base64>"}.
	RawOutput json.RawMessage `json:"-"`
}

// JobOutput is a flash function's outcome in a JobAnswer: its JSON result,
// or its error's message and type.
type JobOutput struct {
	Success    *bool           `json:"success,omitempty"`
	JSONResult json.RawMessage `json:"json_result,omitempty"`
	Error      string          `json:"error,omitempty"`
	ErrorType  string          `json:"error_type,omitempty"`
	Code       string          `json:"code,omitempty"` // the error's flasherr.Code, if it has one
}

// Completed is the output of a function that returned result (JSON).
func Completed(result json.RawMessage) *JobOutput {
	ok := true
	return &JobOutput{Success: &ok, JSONResult: result}
}

// Failed is the output of a function that failed with an error of type
// typ ("ValueError", "TimeoutError", …) and message msg.
func Failed(typ, msg string) *JobOutput {
	ok := false
	return &JobOutput{Success: &ok, Error: msg, ErrorType: typ}
}

// Failed reports whether o is a function's failure.
func (o *JobOutput) Failed() bool { return o.Success != nil && !*o.Success }

// JobRef is the answer of /run and /cancel/{id}: a job and its status.
type JobRef struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// DecodeJobAnswer decodes a /runsync or /status answer. An "output" that
// is not flash's JobOutput leaves Output nil (RawOutput keeps it), so the
// status and error of any Runpod worker's answer can still be read.
func DecodeJobAnswer(data []byte) (JobAnswer, error) {
	if a, ok := decodeCompleted(data); ok {
		return a, nil
	}
	return decodeJobAnswer(data)
}

// decodeJobAnswer is DecodeJobAnswer for any body.
func decodeJobAnswer(data []byte) (JobAnswer, error) {
	var a struct {
		ID, Status, Error string
		Output            json.RawMessage
		DelayTime         int64 `json:"delayTime"`
		ExecutionTime     int64 `json:"executionTime"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return JobAnswer{}, fmt.Errorf("job answer: %s", jsonErrorText(err))
	}
	ans := JobAnswer{ID: a.ID, Status: a.Status, Error: a.Error, DelayTime: a.DelayTime, ExecutionTime: a.ExecutionTime}
	if !present(a.Output) {
		return ans, nil
	}
	ans.RawOutput = a.Output
	var o JobOutput
	if json.Unmarshal(a.Output, &o) == nil && (o.Success != nil || o.JSONResult != nil || o.Error != "" || o.ErrorType != "") {
		ans.Output = &o
	}
	return ans, nil
}

// The parts of a COMPLETED answer as flash's endpoints encode it
// (json.Marshal of JobAnswer with a Completed output).
const (
	completedHead   = `{"id":"`
	completedMid    = `","status":"COMPLETED","output":{"success":true,"json_result":`
	completedDelay  = `},"delayTime":`
	completedExec   = `,"executionTime":`
	completedOutput = `{"success":true,"json_result":`
)

// decodeCompleted decodes, with one json.Valid of the result, the exact
// COMPLETED answer flash's endpoints write, so that a caller scans the
// result once here and decodes it once into its type. Any other body,
// however valid, reports false and takes the general decoder.
func decodeCompleted(data []byte) (JobAnswer, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(completedHead))
	if !ok {
		return JobAnswer{}, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || !ValidJobID(string(rest[:end])) {
		return JobAnswer{}, false
	}
	id := string(rest[:end])
	result, ok := bytes.CutPrefix(rest[end:], []byte(completedMid))
	if !ok {
		return JobAnswer{}, false
	}
	tail := bytes.LastIndex(result, []byte(completedDelay))
	if tail <= 0 {
		return JobAnswer{}, false
	}
	times, ok := bytes.CutSuffix(result[tail+len(completedDelay):], []byte("}"))
	delay, exec, found := bytes.Cut(times, []byte(completedExec))
	d, ok1 := jsonCount(delay)
	e, ok2 := jsonCount(exec)
	result = result[:tail]
	if !ok || !found || !ok1 || !ok2 || len(result) == 0 || spaceAt(result[0]) || spaceAt(result[len(result)-1]) || !json.Valid(result) {
		return JobAnswer{}, false
	}
	outStart := len(completedHead) + end + len(completedMid) - len(completedOutput)
	out := data[outStart : outStart+len(completedOutput)+len(result)+1]
	return JobAnswer{ID: id, Status: StatusCompleted, Output: Completed(result), RawOutput: out,
		DelayTime: d, ExecutionTime: e}, true
}

// jsonCount parses a JSON number made of digits only (no leading zero).
func jsonCount(b []byte) (int64, bool) {
	if len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n, err := parseDigits(string(b), 18)
	return n, err == nil
}

func spaceAt(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// ErrorBody is the body of every error answer: {"error": "<message>"},
// with "error_type" and "code" (a flasherr.Code) when a function's error is
// the cause (LB routes).
type ErrorBody struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type,omitempty"`
	Code      string `json:"code,omitempty"`
}

// JobError splits a FAILED job's "error" into the error's type and
// message. It reads the shapes in use: a Python worker's JSON text
// {"error_type": "<class 'ValueError'>", "error_message": "…", …} (Runpod's
// SDK; the traceback and host are dropped), flash's "<Type>: <message>",
// and any other text, whose type is "".
func JobError(s string) (typ, msg string) {
	if t := bytes.TrimSpace([]byte(s)); len(t) > 0 && t[0] == '{' {
		var e struct {
			Type    string `json:"error_type"`
			Message string `json:"error_message"`
		}
		if json.Unmarshal(t, &e) == nil && (e.Type != "" || e.Message != "") {
			typ = e.Type
			if inner, ok := strings.CutPrefix(typ, "<class '"); ok {
				typ = strings.TrimSuffix(inner, "'>")
			}
			return typ, e.Message
		}
	}
	if typ, msg, ok := strings.Cut(s, ": "); ok && typ != "" && !strings.ContainsAny(typ, " \t\n{") {
		return typ, msg
	}
	return "", s
}

// AppendJSON appends a's JSON to b: what json.Marshal gives, decoded alike,
// without encoding/json's reflection and its second pass over the result.
// Plain strings (printable ASCII without characters JSON or HTML escape) are
// written as they are, others through encoding/json; a result that is not
// valid JSON falls back to json.Marshal, and so to its error.
func (a *JobAnswer) AppendJSON(b []byte) ([]byte, error) {
	if o := a.Output; o != nil && len(o.JSONResult) > 0 && !json.Valid(o.JSONResult) {
		out, err := json.Marshal(a)
		return append(b, out...), err
	}
	b = append(b, `{"id":`...)
	b = appendString(b, a.ID)
	b = append(b, `,"status":`...)
	b = appendString(b, a.Status)
	if o := a.Output; o != nil {
		b = append(b, `,"output":{`...)
		n := len(b)
		field := func(name string) {
			if len(b) > n {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, `":`...)
		}
		if o.Success != nil {
			field("success")
			b = strconv.AppendBool(b, *o.Success)
		}
		if len(o.JSONResult) > 0 {
			field("json_result")
			b = append(b, o.JSONResult...)
		}
		for _, f := range [...]struct{ name, v string }{{"error", o.Error}, {"error_type", o.ErrorType}, {"code", o.Code}} {
			if f.v != "" {
				field(f.name)
				b = appendString(b, f.v)
			}
		}
		b = append(b, '}')
	}
	if a.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, a.Error)
	}
	b = append(b, `,"delayTime":`...)
	b = strconv.AppendInt(b, a.DelayTime, 10)
	b = append(b, `,"executionTime":`...)
	b = strconv.AppendInt(b, a.ExecutionTime, 10)
	return append(b, '}'), nil
}

// appendString appends s as a JSON string the way encoding/json writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// JSON is AppendJSON into a buffer of about the answer's size.
func (a *JobAnswer) JSON() ([]byte, error) {
	n := 128 + len(a.Error)
	if o := a.Output; o != nil {
		n += len(o.JSONResult) + len(o.Error)
	}
	return a.AppendJSON(make([]byte, 0, n))
}

// WriteJobAnswer writes a as a JSON answer with the given status.
func WriteJobAnswer(w http.ResponseWriter, status int, a *JobAnswer) {
	body, err := a.JSON()
	if err != nil {
		WriteJSON(w, status, a) // the same failure, answered as WriteJSON does
		return
	}
	WriteRawJSON(w, status, body)
}
