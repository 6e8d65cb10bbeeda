package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// MaxStreamPending bounds the bytes of values a streaming QB job holds that
// no GET /stream/{id} has taken yet; a producer past it fails with
// resource_exhausted rather than hold memory for a reader that is not there.
const MaxStreamPending = 4 << 20

// streamBuf is a streaming job's values not read yet, guarded by the job
// table's mutex.
type streamBuf struct {
	pending []json.RawMessage
	bytes   int64
}

// runStream runs a QB job's stream: each value joins j's pending values,
// which /stream/{id} hands out once each. Its result is the number of
// values produced.
func (t *jobTable) runStream(j *job, st Stream) (out any, err error) {
	t.mu.Lock()
	j.stream = &streamBuf{}
	t.mu.Unlock()
	n := 0
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	for v, verr := range st {
		if j.ctx.Err() != nil {
			return nil, j.ctx.Err()
		}
		if verr != nil {
			return nil, verr
		}
		b, merr := json.Marshal(v)
		if merr != nil {
			return nil, &typedError{typ: "SerializationError", err: fmt.Errorf("encoding a streamed value: %w", merr)}
		}
		t.mu.Lock()
		full := j.stream.bytes+int64(len(b)) > MaxStreamPending
		if !full {
			j.stream.pending = append(j.stream.pending, b)
			j.stream.bytes += int64(len(b))
		}
		t.mu.Unlock()
		if full {
			return nil, flasherr.Errorf(flasherr.CodeResourceExhausted,
				"stream: %d bytes of values not read through /stream yet (limit %d)", MaxStreamPending, MaxStreamPending)
		}
		n++
	}
	if err := j.ctx.Err(); err != nil {
		return nil, err
	}
	return map[string]int{"values": n}, nil
}

// takeStream returns job id's state and the values produced since the last
// take; ok is false for an unknown id. Values are taken under the same lock
// as the state, so a final state comes with the last values.
func (t *jobTable) takeStream(id string) (v jobView, values []json.RawMessage, ok bool) {
	j := t.lookup(id)
	if j == nil {
		return jobView{}, nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if j.stream != nil {
		values = j.stream.pending
		j.stream.pending, j.stream.bytes = nil, 0
	}
	return j.viewLocked(t.now()), values, true
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validJobPath(id); err != nil {
		return err
	}
	v, values, ok := s.jobs.takeStream(id)
	if !ok {
		return notFoundJob(id)
	}
	a := wire.StreamAnswer{JobAnswer: v.response(), Stream: make([]wire.StreamLine, len(values))}
	for i, b := range values {
		a.Stream[i] = wire.StreamLine{Output: b}
	}
	wire.WriteJSON(w, http.StatusOK, a)
	return nil
}
