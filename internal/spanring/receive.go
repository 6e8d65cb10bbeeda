package spanring

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/flash-go/flash/internal/wire"
)

// Bounds of one export.
const (
	MaxExportBody     = 4 << 20  // as sent (maybe gzip)
	MaxExportUnpacked = 16 << 20 // once gunzipped
	maxDecoding       = 4        // exports decoded at once; more get 429
)

// Receiver answers OTLP/HTTP trace exports (POST /v1/traces, protobuf,
// maybe gzip) into a Ring.
type Receiver struct {
	ring  *Ring
	slots chan struct{}
}

// NewReceiver returns a Receiver that keeps what it receives in ring.
func NewReceiver(ring *Ring) *Receiver {
	return &Receiver{ring: ring, slots: make(chan struct{}, maxDecoding)}
}

var exportOK, _ = proto.Marshal(&collectorpb.ExportTraceServiceResponse{})

// ServeHTTP implements http.Handler. Errors follow OTLP/HTTP: 415 for
// another encoding, 413 for too big, 429 when busy (the exporter retries),
// 400 for undecodable data, which then changes nothing.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-protobuf" {
		wire.WriteError(w, http.StatusUnsupportedMediaType, "OTLP/HTTP traces are accepted as application/x-protobuf only (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)")
		return
	}
	if r.ContentLength > MaxExportBody {
		wire.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("an export is at most %d bytes", MaxExportBody))
		return
	}
	select {
	case rc.slots <- struct{}{}:
		defer func() { <-rc.slots }()
	default:
		w.Header().Set(wire.HeaderRetryAfter, "1")
		wire.WriteError(w, http.StatusTooManyRequests, "too many trace exports at once")
		return
	}
	body, err := readExport(r)
	if err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) || errors.Is(err, errUnpacked) {
			status = http.StatusRequestEntityTooLarge
		}
		wire.WriteError(w, status, "cannot read the export", "detail", err.Error())
		return
	}
	spans, err := Decode(body)
	if err != nil {
		wire.WriteError(w, http.StatusBadRequest, "not an OTLP ExportTraceServiceRequest", "detail", err.Error())
		return
	}
	rc.ring.Add(spans)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
	w.Write(exportOK)
}

var errUnpacked = fmt.Errorf("the export unpacks to more than %d bytes", MaxExportUnpacked)

// readExport reads the body within the bounds, gunzipping it when sent so.
func readExport(r *http.Request) ([]byte, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxExportBody))
	if err != nil {
		return nil, err
	}
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
		return raw, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, MaxExportUnpacked+1))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if len(out) > MaxExportUnpacked {
			return nil, errUnpacked
		}
		return out, nil
	default:
		return nil, fmt.Errorf("Content-Encoding %q: want gzip or none", r.Header.Get("Content-Encoding"))
	}
}
