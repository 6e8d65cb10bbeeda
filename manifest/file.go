package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flash-go/flash/internal/atomicfile"
)

// FileName is the manifest's file name next to the built binary.
const FileName = "flash_manifest.json"

// ErrNoFile is returned by Locate when no manifest file exists where it looks.
var ErrNoFile = errors.New("no manifest file found")

// Locate returns the manifest file to read, in the one lookup order of SPEC
// §2.5: explicit (the value of FLASH_MANIFEST_PATH) when set, else
// ./flash_manifest.json, else flash_manifest.json beside the running
// executable. An explicit path is returned even if missing, so that errors
// name the file the user asked for.
func Locate(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	tried := []string{FileName}
	if _, err := os.Stat(FileName); err == nil {
		return FileName, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), FileName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("%w (looked at %q)", ErrNoFile, tried)
}

// Load reads and parses (validating) the manifest at path.
func Load(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load manifest: %w: %w", ErrNoFile, err)
		}
		return nil, fmt.Errorf("load manifest: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load manifest %s: %w", path, err)
	}
	return m, nil
}

// Save writes m to path atomically (SPEC §2.5), indented, with mode perm.
func Save(path string, m *Manifest, perm os.FileMode) error {
	if err := atomicfile.Write(path, m.Pretty(), perm); err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	return nil
}
