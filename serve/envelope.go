package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// envelope is the Runpod-shaped request body of /run and /runsync (SPEC §5.3).
type envelope struct {
	Input  *envInput `json:"input"`
	Policy *struct {
		ExecutionTimeout *float64 `json:"executionTimeout"`
	} `json:"policy"`
}

type envInput struct {
	FunctionName        string            `json:"function_name"`
	ExecutionType       *string           `json:"execution_type"`
	Args                []json.RawMessage `json:"args"`
	Kwargs              json.RawMessage   `json:"kwargs"`
	SerializationFormat *string           `json:"serialization_format"`
	FunctionCode        json.RawMessage   `json:"function_code"`
	ClassCode           json.RawMessage   `json:"class_code"`
}

// invocation is a decoded envelope: which function, its single JSON input, and the
// execution timeout the caller asked for (0 = none).
type invocation struct {
	Function string
	Input    json.RawMessage
	Timeout  time.Duration
}

var emptyObject = json.RawMessage(`{}`)

// decodeEnvelope parses a /run or /runsync body. Every error is an
// *httpError with status 400 and a message meant for the caller.
func decodeEnvelope(body []byte) (invocation, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return invocation{}, badRequest("malformed JSON body: %s", jsonErrorText(err))
	}
	in := env.Input
	if in == nil {
		return invocation{}, badRequest(`missing "input": the body must be {"input": {"function_name": ..., "args": [...]}}`)
	}
	if present(in.FunctionCode) || present(in.ClassCode) ||
		(in.ExecutionType != nil && *in.ExecutionType != "function") {
		return invocation{}, badRequest(`this endpoint runs compiled-in functions only: "execution_type" must be "function" and no "function_code" or "class_code" may be sent`)
	}
	if in.SerializationFormat != nil && *in.SerializationFormat != "json" {
		return invocation{}, badRequest(`unsupported serialization_format %q: only "json" is accepted`, *in.SerializationFormat)
	}
	if in.FunctionName == "" {
		return invocation{}, badRequest(`missing "input.function_name"`)
	}
	c := invocation{Function: in.FunctionName}

	kwargs := present(in.Kwargs)
	if kwargs && !isObject(in.Kwargs) {
		return invocation{}, badRequest(`"input.kwargs" must be a JSON object`)
	}
	nonEmptyKwargs := kwargs && !isEmptyObject(in.Kwargs)
	switch {
	case len(in.Args) > 1:
		return invocation{}, badRequest(`%d positional arguments given: a flash function takes exactly one input, sent as "args": [<input>] or as "kwargs": {<input fields>}`, len(in.Args))
	case len(in.Args) == 1 && nonEmptyKwargs:
		return invocation{}, badRequest(`both "args" and "kwargs" given: send the input either as "args": [<input>] or as "kwargs": {<input fields>}, not both`)
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
			return invocation{}, badRequest(`"policy.executionTimeout" must be milliseconds >= 0`)
		case ms >= float64(math.MaxInt64/int64(time.Millisecond)):
			// Longer than time can express: no limit in practice.
		default:
			c.Timeout = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return c, nil
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

// httpError is an error with the HTTP answer it deserves; handlers return it
// and one adaptor renders it (see handlerFunc).
type httpError struct {
	Status int
	Msg    string
	KV     []any // extra body keys, as for httpx.WriteError
	Header http.Header
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func badRequest(format string, args ...any) *httpError {
	return &httpError{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}
