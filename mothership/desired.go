package mothership

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flash-go/flash/internal/scaler"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/store"
)

// The desired state (SPEC §4.3): what the last deploy asked for, recorded in
// the store before anything is done about it, so that a restarted mothership
// carries on toward it instead of toward whatever its own binary holds.

// checkDesired refuses a desired manifest that is invalid or asks for more
// than this mothership may start, before anything is recorded or started.
func (m *Mothership) checkDesired(desired *manifest.Manifest) error {
	if desired == nil {
		return errors.New("mothership: reconcile: no desired manifest")
	}
	if err := desired.Validate(); err != nil {
		return fmt.Errorf("mothership: reconcile: desired manifest: %w", err)
	}
	if problems := m.overLimits(desired); len(problems) > 0 {
		return &LimitError{Problems: problems}
	}
	return nil
}

// LimitError is a desired manifest that asks for more resources or replicas
// than Config allows. Nothing of it was recorded or started.
type LimitError struct{ Problems []string }

func (e *LimitError) Error() string {
	return "mothership: deploy refused, nothing started: " + strings.Join(e.Problems, "; ")
}

// overLimits lists what desired asks beyond Config.MaxResources and
// Config.MaxReplicas.
func (m *Mothership) overLimits(desired *manifest.Manifest) []string {
	var problems []string
	if n := len(desired.Resources); n > m.cfg.MaxResources {
		problems = append(problems, fmt.Sprintf("%d resources, at most %d allowed", n, m.cfg.MaxResources))
	}
	for _, name := range desired.ResourceNames() {
		if n := replicas(desired.Resources[name]); n > m.cfg.MaxReplicas {
			problems = append(problems, fmt.Sprintf("resource %q: workersMin %d, at most %d replicas allowed", name, n, m.cfg.MaxReplicas))
		}
		if _, _, err := scaler.FromEntry(desired.Resources[name].Raw(), m.cfg.MaxReplicas); err != nil {
			problems = append(problems, fmt.Sprintf("resource %q: autoscaling: %v", name, err))
		}
	}
	return problems
}

// sameArtifact, as the artifact of recordDesired, keeps the recorded one: a
// deploy of a manifest alone changes the configuration, not the binary.
const sameArtifact = "same"

// recordDesired records mf and artifact (a digest, "" for the mothership's
// own binary, or sameArtifact) as the desired state, unless they are the
// recorded one already. A concurrent deploy (another mothership on the same
// store) makes it fail with store.ErrConflict: the caller decides again,
// nothing was deployed.
func (m *Mothership) recordDesired(ctx context.Context, mf *manifest.Manifest, artifact string) (store.Desired, error) {
	body, err := mf.MarshalJSON()
	if err != nil {
		return store.Desired{}, fmt.Errorf("mothership: record the desired state: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	cur, err := m.store.Desired(sctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return store.Desired{}, fmt.Errorf("mothership: nothing deployed: cannot read the desired state: %w", err)
	}
	if artifact == sameArtifact {
		artifact = cur.Artifact
	}
	if cur.Version > 0 && cur.Artifact == artifact && sameJSON(cur.Manifest, body) {
		return cur, nil
	}
	d, err := m.store.PutDesired(sctx, cur.Version, body, artifact)
	if err != nil {
		return store.Desired{}, fmt.Errorf("mothership: nothing deployed: cannot record the desired state after version %d: %w", cur.Version, err)
	}
	m.log.Info("desired state recorded", "desired", d.Version, "artifact", d.Artifact)
	return d, nil
}

// loadDesired returns the stored desired state. A store that has none
// records seed first (when another mothership records one at the same time,
// that one is followed).
func (m *Mothership) loadDesired(ctx context.Context, seed *manifest.Manifest) (store.Desired, error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	d, err := m.store.Desired(sctx)
	switch {
	case err == nil:
		if seed != nil && m.seedDiffers(d, seed) {
			m.log.Info("following the stored desired state, not this binary's manifest: a binary never rolls back a deploy",
				"desired", d.Version, "recorded_at", d.RecordedAt)
		}
		return d, nil
	case !errors.Is(err, store.ErrNotFound):
		return d, fmt.Errorf("mothership: reconcile aborted, nothing deployed: cannot read the desired state: %w", err)
	}
	if err := m.checkDesired(seed); err != nil {
		return store.Desired{}, err
	}
	d, err = m.recordDesired(ctx, seed, "")
	if isConflict(err) {
		if d, err = m.store.Desired(sctx); err != nil {
			return d, fmt.Errorf("mothership: reconcile aborted, nothing deployed: cannot read the desired state: %w", err)
		}
	}
	return d, err
}

func (m *Mothership) seedDiffers(d store.Desired, seed *manifest.Manifest) bool {
	body, err := seed.MarshalJSON()
	return err != nil || d.Artifact != "" || !sameJSON(body, d.Manifest)
}

// Digests of uploaded artifacts: "sha256:<hex>", kept as ArtifactDir/<hex>/app.
const digestPrefix = "sha256:"

// artifactPath returns the binary of an artifact digest; "" for "".
func (m *Mothership) artifactPath(digest string) (string, error) {
	if digest == "" {
		return "", nil
	}
	sum, ok := strings.CutPrefix(digest, digestPrefix)
	if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != 32 || strings.ToLower(sum) != sum {
		return "", fmt.Errorf("artifact %q: want sha256:<64 lowercase hex digits>", digest)
	}
	return filepath.Join(m.cfg.ArtifactDir, sum, artifactBinary), nil
}

// removeUnusedArtifacts deletes the uploaded binaries that neither the
// stored desired state nor a recorded endpoint refers to. Uploads still in
// progress (".upload-*") are left alone. Failures are logged.
func (m *Mothership) removeUnusedArtifacts(ctx context.Context) {
	entries, err := os.ReadDir(m.cfg.ArtifactDir)
	if err != nil || len(entries) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	used := map[string]bool{}
	d, err := m.store.Desired(sctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.log.Warn("artifacts: cannot read the desired state; keeping every artifact", "err", err)
		return
	}
	used[strings.TrimPrefix(d.Artifact, digestPrefix)] = true
	eps, err := m.store.Endpoints(sctx, m.cfg.App)
	if err != nil {
		m.log.Warn("artifacts: cannot list endpoints; keeping every artifact", "err", err)
		return
	}
	var refs []string
	for _, e := range eps {
		for _, v := range e.Meta {
			refs = append(refs, v)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || used[name] || !e.IsDir() {
			continue
		}
		inUse := false
		for _, r := range refs {
			if strings.Contains(r, name) {
				inUse = true
				break
			}
		}
		if inUse {
			continue
		}
		if err := os.RemoveAll(filepath.Join(m.cfg.ArtifactDir, name)); err != nil {
			m.log.Warn("artifacts: cannot remove an unused artifact", "digest", digestPrefix+name, "err", err)
			continue
		}
		m.log.Info("artifacts: removed an artifact nothing refers to", "digest", digestPrefix+name)
	}
}
