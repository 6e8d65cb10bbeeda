package serve

import (
	"fmt"
	"net/http"

	"github.com/flash-go/flash/internal/wire"
)

// decodeEnvelope parses a /run or /runsync body (wire.DecodeJobRequest);
// every error is an *httpError with status 400.
func decodeEnvelope(body []byte) (wire.Invocation, error) {
	c, err := wire.DecodeJobRequest(body)
	if err != nil {
		return c, &httpError{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	return c, nil
}

// httpError is an error with the HTTP answer it deserves; handlers return it
// and one adaptor renders it (see handlerFunc).
type httpError struct {
	Status int
	Msg    string
	KV     []any // extra body keys, as for wire.WriteError
	Header http.Header
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func badRequest(format string, args ...any) *httpError {
	return &httpError{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}
