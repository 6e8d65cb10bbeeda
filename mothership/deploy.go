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
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/store"
)

// Names inside a build artifact.
const (
	artifactManifest = manifest.FileName // flash_manifest.json
	artifactBinary   = "app"
)

// ContentTypeNDJSON is the media type of the deploy progress stream.
const ContentTypeNDJSON = "application/x-ndjson"

// maxUploads bounds the deploy bodies read at once; more get 429.
const maxUploads = 2

// deployRequest is a validated POST /flash/deploy body.
type deployRequest struct {
	mf     *manifest.Manifest
	upload string // the uploaded binary, still a temporary file; "" for a manifest-only deploy
	digest string // "sha256:<hex>" of upload
}

// discard removes an upload that was not kept.
func (r *deployRequest) discard() {
	if r.upload != "" {
		os.Remove(r.upload)
	}
}

// keep moves the upload to ArtifactDir/<hex>/app, where its digest names it.
func (m *Mothership) keep(r *deployRequest) error {
	if r.upload == "" {
		return nil
	}
	dst, err := m.artifactPath(r.digest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	if err := os.Rename(r.upload, dst); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	r.upload = ""
	return nil
}

// badRequest carries every problem of a deploy body, for a 400 answer.
type badRequest struct{ problems []string }

func (e *badRequest) Error() string { return fmt.Sprintf("invalid deploy: %q", e.problems) }

// tooLarge is an artifact that unpacks to more than Config.MaxArtifactUnpacked.
type tooLarge struct{ limit int64 }

func (e *tooLarge) Error() string {
	return fmt.Sprintf("artifact unpacks to more than %d bytes (Config.MaxArtifactUnpacked)", e.limit)
}

// serveDeploy answers POST /flash/deploy: read and validate the body (a
// manifest, or a tar/tar.gz artifact with the manifest and the app binary)
// within DeployReadTimeout, before taking the deploy lock, so that a slow
// upload holds no one up; then record the desired state, reconcile and
// stream progress as NDJSON, one event per line, the last {"report": …}.
func (m *Mothership) serveDeploy(w http.ResponseWriter, r *http.Request) {
	if m.toLeader(w, r) {
		return
	}
	select {
	case m.uploads <- struct{}{}:
	default:
		w.Header().Set(wire.HeaderRetryAfter, "1")
		wire.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("%d deploys are being uploaded already; retry", maxUploads))
		return
	}
	ctl := http.NewResponseController(w)
	ctl.SetReadDeadline(time.Now().Add(m.cfg.DeployReadTimeout))
	req, err := m.readDeploy(w, r)
	ctl.SetReadDeadline(time.Time{})
	<-m.uploads
	defer req.discard()
	if err != nil {
		m.refuseDeploy(w, err)
		return
	}
	if err := m.checkDesired(req.mf); err != nil {
		m.refuseDeploy(w, err)
		return
	}
	if !m.tryLockDeploy() {
		wire.WriteError(w, http.StatusConflict, ErrBusy.Error())
		return
	}
	defer m.unlockDeploy()
	// A client that goes away must not leave a half-done deploy: the work
	// continues (each step is bounded by DeployTimeout); only writes fail.
	ctx, cancel := m.whileLeading(context.WithoutCancel(r.Context()))
	defer cancel()
	if err := m.keep(&req); err != nil {
		m.refuseDeploy(w, err)
		return
	}
	artifact := req.digest
	if artifact == "" {
		artifact = sameArtifact // a manifest alone: the deployed binary stays
	}
	d, err := m.recordDesired(ctx, req.mf, artifact)
	if err != nil {
		m.refuseDeploy(w, err)
		return
	}

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
		ctl.Flush()
	}
	report, err := m.reconcileLocked(ctx, d, req.mf, ReconcileOptions{
		Artifact: d.Artifact,
		Progress: func(e Event) { line(e) },
	})
	if err != nil {
		// Aborted before any step: nothing was streamed yet.
		wire.WriteError(w, http.StatusServiceUnavailable, RedactURLs(err.Error()))
		return
	}
	line(map[string]Report{"report": report})
}

// refuseDeploy answers a deploy that was not started.
func (m *Mothership) refuseDeploy(w http.ResponseWriter, err error) {
	var (
		bad    *badRequest
		tooBig *http.MaxBytesError
		unpack *tooLarge
		limit  *LimitError
	)
	switch {
	case errors.As(err, &bad):
		wire.WriteError(w, http.StatusBadRequest, "invalid deploy", "problems", bad.problems)
	case errors.As(err, &limit):
		wire.WriteError(w, http.StatusBadRequest, "deploy refused, nothing started: it asks for more than this mothership allows",
			"problems", limit.Problems)
	case errors.As(err, &tooBig):
		wire.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("deploy body larger than %d bytes", tooBig.Limit))
	case errors.As(err, &unpack):
		wire.WriteError(w, http.StatusRequestEntityTooLarge, unpack.Error())
	case errors.Is(err, errUnsupportedType):
		wire.WriteError(w, http.StatusUnsupportedMediaType, err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded):
		wire.WriteError(w, http.StatusRequestTimeout, fmt.Sprintf("deploy body not received within %s", m.cfg.DeployReadTimeout))
	case errors.Is(err, store.ErrConflict):
		wire.WriteError(w, http.StatusConflict, "another deploy was recorded at the same time; nothing deployed: look at the status and deploy again",
			"detail", err.Error())
	default:
		m.log.Error("deploy: refused", "err", err)
		wire.WriteError(w, http.StatusServiceUnavailable, "deploy not started", "detail", RedactURLs(err.Error()))
	}
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
// and the app binary. The binary is streamed to a temporary file in
// ArtifactDir while hashed (keep moves it in place). Everything unpacked
// counts toward MaxArtifactUnpacked; entries other than regular files and
// directories (links, devices, sparse files) are refused.
func (m *Mothership) readArtifact(body io.Reader) (req deployRequest, err error) {
	defer func() {
		if err != nil {
			req.discard()
		}
	}()
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
	src = &unpackLimit{r: src, limit: m.cfg.MaxArtifactUnpacked}
	if err := os.MkdirAll(m.cfg.ArtifactDir, 0o700); err != nil {
		return req, fmt.Errorf("artifact dir: %w", err)
	}
	var (
		problems []string
		mfBody   []byte
		haveMF   bool
	)
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if isLimit(err) {
				return req, err
			}
			problems = append(problems, "artifact: not a valid tar archive: "+err.Error())
			break
		}
		name := path.Clean("/" + hdr.Name)[1:]
		if p := refusedEntry(hdr); p != "" {
			problems = append(problems, fmt.Sprintf("artifact: %s: %s", name, p))
			continue
		}
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
			if req.upload != "" {
				problems = append(problems, "artifact: "+name+" appears twice")
				continue
			}
			t, sum, err := m.spool(tr)
			if err != nil {
				return req, err
			}
			req.upload, req.digest = t, digestPrefix+sum
		}
	}
	if !haveMF {
		problems = append(problems, "artifact: "+artifactManifest+" missing")
	} else {
		req.mf = m.checkManifest(mfBody, &problems)
	}
	if req.upload == "" {
		problems = append(problems, "artifact: the app binary ("+artifactBinary+") missing")
	}
	if len(problems) > 0 {
		return req, &badRequest{problems}
	}
	return req, nil
}

// refusedEntry says why a tar entry is refused, "" when it is not: only
// regular files and directories may be in an artifact (and the global
// headers some tar writers add); sparse files would unpack to far more than
// they weigh.
func refusedEntry(hdr *tar.Header) string {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "sparse files are refused"
		}
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeXGlobalHeader:
		return ""
	case tar.TypeGNUSparse:
		return "sparse files are refused"
	}
	return fmt.Sprintf("entries of type %q (links, devices, fifos) are refused: an artifact holds regular files", hdr.Typeflag)
}

// unpackLimit fails with *tooLarge once more than limit bytes were read.
type unpackLimit struct {
	r           io.Reader
	read, limit int64
}

func (u *unpackLimit) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if u.read += int64(n); u.read > u.limit {
		return n, &tooLarge{u.limit}
	}
	return n, err
}

// isLimit reports whether err is one of the body or unpacked-size limits.
func isLimit(err error) bool {
	var tooBig *http.MaxBytesError
	var unpack *tooLarge
	return errors.As(err, &tooBig) || errors.As(err, &unpack) || errors.Is(err, os.ErrDeadlineExceeded)
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

// readErr keeps a limit error as is and reports a broken archive as a bad
// request.
func readErr(err error) error {
	if isLimit(err) {
		return err
	}
	return &badRequest{[]string{"artifact: " + err.Error()}}
}
