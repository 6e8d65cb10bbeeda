package wire

import "encoding/json"

// Media types of a load-balanced route's streamed answer: NDJSON by
// default, server-sent events for a caller that asks for them.
const (
	ContentTypeNDJSON      = "application/x-ndjson"
	ContentTypeEventStream = "text/event-stream"
)

// StreamLine is one line of a streamed NDJSON answer, and one entry of a
// GET /stream/{id} answer: a value, or (last, NDJSON only) the error that
// ended the stream.
type StreamLine struct {
	Output    json.RawMessage `json:"output,omitempty"`
	Error     string          `json:"error,omitempty"`
	ErrorType string          `json:"error_type,omitempty"`
	Code      string          `json:"code,omitempty"`
}

// StreamAnswer is the answer of GET /stream/{id} (Runpod's shape): the
// job's state and the values produced since the last call, each once.
type StreamAnswer struct {
	JobAnswer
	Stream []StreamLine `json:"stream"`
}
