package child

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/atomicfile"
	"github.com/flash-go/flash/manifest"
)

// cacheFile is the last-known-good copy: the manifest with the version it
// was served as, so a restarted child resumes its long poll where it was.
type cacheFile struct {
	Version  int64           `json:"version"`
	SavedAt  string          `json:"saved_at,omitempty"`
	Manifest json.RawMessage `json:"manifest"`
}

// cachePath names the cache file per identity, so endpoints sharing a
// working directory do not overwrite each other's copy.
func cachePath(dir, identity string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, identity)
	if name == "" || strings.Trim(name, ".") == "" {
		name = "default"
	}
	return filepath.Join(dir, "manifest-"+name+".json")
}

func saveCache(path string, m *manifest.Manifest, version int64) error {
	raw, err := m.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode manifest cache: %w", err)
	}
	data, err := json.Marshal(cacheFile{Version: version, SavedAt: time.Now().UTC().Format(time.RFC3339), Manifest: raw})
	if err != nil {
		return fmt.Errorf("encode manifest cache: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}

// readCache reads and validates the cache file; a missing file is (nil, nil).
func readCache(path string) (*snapshot, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest cache: %w", err)
	}
	defer f.Close()
	data, err := readBounded(f, MaxManifestSize+1024, -1)
	if err != nil {
		return nil, fmt.Errorf("read manifest cache %s: %w", path, err)
	}
	var c cacheFile
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("read manifest cache %s: %w", path, err)
	}
	if c.Version < 0 {
		return nil, fmt.Errorf("read manifest cache %s: negative version %d", path, c.Version)
	}
	m, err := manifest.Parse(c.Manifest)
	if err != nil {
		return nil, fmt.Errorf("read manifest cache %s: %w", path, err)
	}
	return &snapshot{m: m, version: c.Version, body: c.Manifest}, nil
}

// loadCache applies the last-known-good manifest, if there is a valid one.
func (s *Sync) loadCache() {
	sn, err := readCache(s.cachePath)
	if err != nil {
		s.log.Warn("ignoring the last-known-good manifest", "err", err)
		return
	}
	if sn == nil {
		return
	}
	s.fetchMu.Lock()
	s.seen = sn.version
	s.fetchMu.Unlock()
	s.apply(sn, false)
	s.log.Info("loaded the last-known-good manifest", "version", sn.version, "file", s.cachePath)
}
