package mothership

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// Names inside a build artifact.
const (
	artifactManifest = manifest.FileName // flash_manifest.json
	artifactBinary   = "app"
)

// ContentTypeNDJSON is the media type of the deploy progress stream.
const ContentTypeNDJSON = "application/x-ndjson"

// deployRequest is a validated POST /flash/deploy body.
type deployRequest struct {
	mf       *manifest.Manifest
	artifact string // stored binary, "" for a manifest-only deploy
}

// badRequest carries every problem of a deploy body, for a 400 answer.
type badRequest struct{ problems []string }

func (e *badRequest) Error() string { return fmt.Sprintf("invalid deploy: %q", e.problems) }

// serveDeploy answers POST /flash/deploy: validate the body (a manifest, or a
// tar/tar.gz artifact with the manifest and the app binary), then reconcile
// and stream progress as NDJSON, one event per line, the last {"report": …}.
func (m *Mothership) serveDeploy(w http.ResponseWriter, r *http.Request) {
	// Refuse a concurrent deploy before reading up to 512 MiB of body.
	select {
	case m.deploying <- struct{}{}:
	default:
		wire.WriteError(w, http.StatusConflict, ErrBusy.Error())
		return
	}
	defer func() { <-m.deploying }()

	req, err := m.readDeploy(w, r)
	if err != nil {
		var bad *badRequest
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &bad):
			wire.WriteError(w, http.StatusBadRequest, "invalid deploy", "problems", bad.problems)
		case errors.As(err, &tooBig):
			wire.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("deploy body larger than %d bytes", tooBig.Limit))
		case errors.Is(err, errUnsupportedType):
			wire.WriteError(w, http.StatusUnsupportedMediaType, err.Error())
		default:
			m.log.Error("deploy: cannot read the request", "err", err)
			wire.WriteError(w, http.StatusInternalServerError, "cannot read the deploy", "detail", err.Error())
		}
		return
	}

	rc := http.NewResponseController(w)
	var (
		mu      sync.Mutex
		started bool
	)
	line := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !started {
			started = true
			w.Header().Set("Content-Type", ContentTypeNDJSON)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
		}
		w.Write(append(b, '\n'))
		rc.Flush()
	}
	// A client that goes away must not leave a half-done deploy: the work
	// continues (each step is bounded by DeployTimeout); only writes fail.
	ctx := context.WithoutCancel(r.Context())
	report, err := m.reconcileLocked(ctx, req.mf, ReconcileOptions{
		Artifact: req.artifact,
		Progress: func(e Event) { line(e) },
	})
	if err != nil {
		// Aborted before any step: nothing was streamed yet.
		wire.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	line(map[string]Report{"report": report})
}

var errUnsupportedType = errors.New("deploy body must be application/json (a manifest) or application/x-tar / application/gzip (a build artifact)")

func (m *Mothership) readDeploy(w http.ResponseWriter, r *http.Request) (deployRequest, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && r.Header.Get("Content-Type") != "" {
		return deployRequest{}, errUnsupportedType
	}
	var req deployRequest
	switch ct {
	case "", "application/json":
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxManifestBody))
		if err != nil {
			return req, err
		}
		var problems []string
		req.mf = m.checkManifest(body, &problems)
		if len(problems) > 0 {
			return req, &badRequest{problems}
		}
	case "application/x-tar", "application/tar", "application/gzip", "application/x-gzip", "application/x-gtar":
		return m.readArtifact(http.MaxBytesReader(w, r.Body, MaxArtifactBody))
	default:
		return req, errUnsupportedType
	}
	return req, nil
}

// checkManifest parses and validates a deploy's manifest, adding every
// problem found (including a project other than this app) to problems.
func (m *Mothership) checkManifest(body []byte, problems *[]string) *manifest.Manifest {
	mf, err := manifest.Parse(body)
	var inv *manifest.InvalidError
	switch {
	case errors.As(err, &inv):
		for _, p := range inv.Problems {
			*problems = append(*problems, p.String())
		}
		return nil
	case err != nil:
		*problems = append(*problems, err.Error())
		return nil
	}
	if m.cfg.App != "" && mf.ProjectName != "" && mf.ProjectName != m.cfg.App {
		*problems = append(*problems, fmt.Sprintf("project_name: %q is not this app (%q)", mf.ProjectName, m.cfg.App))
	}
	return mf
}

// readArtifact reads a tar (gzip-compressed or not) holding flash_manifest.json
// and the app binary. The binary is streamed to ArtifactDir while hashed, then
// kept as ArtifactDir/<sha256>/app (mode 0700).
func (m *Mothership) readArtifact(body io.Reader) (deployRequest, error) {
	var req deployRequest
	br := bufio.NewReader(body)
	var src io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return req, &badRequest{[]string{"artifact: bad gzip stream: " + err.Error()}}
		}
		defer zr.Close()
		src = zr
	}
	if err := os.MkdirAll(m.cfg.ArtifactDir, 0o700); err != nil {
		return req, fmt.Errorf("artifact dir: %w", err)
	}
	var (
		problems   []string
		mfBody     []byte
		haveMF     bool
		tmp        string
		sum        string
		haveBinary bool
	)
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return req, err
			}
			problems = append(problems, "artifact: not a valid tar archive: "+err.Error())
			break
		}
		name := path.Clean("/" + hdr.Name)[1:]
		if name != artifactManifest && name != artifactBinary {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			problems = append(problems, fmt.Sprintf("artifact: %s must be a regular file", name))
			continue
		}
		switch name {
		case artifactManifest:
			if haveMF {
				problems = append(problems, "artifact: "+name+" appears twice")
				continue
			}
			b, err := io.ReadAll(io.LimitReader(tr, MaxManifestBody+1))
			if err != nil {
				return req, readErr(err)
			}
			if len(b) > MaxManifestBody {
				problems = append(problems, fmt.Sprintf("artifact: %s larger than %d bytes", name, MaxManifestBody))
				continue
			}
			mfBody, haveMF = b, true
		case artifactBinary:
			if haveBinary {
				problems = append(problems, "artifact: "+name+" appears twice")
				continue
			}
			t, s, err := m.spool(tr)
			if err != nil {
				return req, err
			}
			tmp, sum, haveBinary = t, s, true
		}
	}
	if !haveMF {
		problems = append(problems, "artifact: "+artifactManifest+" missing")
	} else {
		req.mf = m.checkManifest(mfBody, &problems)
	}
	if !haveBinary {
		problems = append(problems, "artifact: the app binary ("+artifactBinary+") missing")
	}
	if len(problems) > 0 {
		return req, &badRequest{problems}
	}
	dir := filepath.Join(m.cfg.ArtifactDir, sum)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return req, fmt.Errorf("artifact: %w", err)
	}
	dst := filepath.Join(dir, artifactBinary)
	if err := os.Rename(tmp, dst); err != nil {
		return req, fmt.Errorf("artifact: %w", err)
	}
	tmp = ""
	req.artifact = dst
	return req, nil
}

// spool copies the binary to a temporary file (0700) while hashing it.
func (m *Mothership) spool(r io.Reader) (tmp, sum string, err error) {
	f, err := os.CreateTemp(m.cfg.ArtifactDir, ".upload-*")
	if err != nil {
		return "", "", fmt.Errorf("artifact: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	if _, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
		return "", "", readErr(err)
	}
	if err = f.Chmod(0o700); err != nil {
		return "", "", fmt.Errorf("artifact: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", "", fmt.Errorf("artifact: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", "", fmt.Errorf("artifact: %w", err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// readErr keeps a body-limit error as is and reports a broken archive as a
// bad request.
func readErr(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	return &badRequest{[]string{"artifact: " + err.Error()}}
}
