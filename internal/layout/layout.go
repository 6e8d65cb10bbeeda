// Package layout names every file and directory flash keeps under a project's
// .flash directory, so that the CLI, the mothership and the providers agree on
// one layout:
//
//	.flash/
//	  api_key                   the directory's bearer key (0600), reused by every run
//	  build/                    flash build's outputs
//	  apps/<app>/
//	    state.db                the app's SQLite state store
//	    flash_manifest.json     the mothership's copy of the published manifest
//	    cache/                  children's last-known-good manifests
//	    logs/                   one log file per local child
//	    artifacts/              deployed binaries, by digest
//	    run.json                what a running `flash run` recorded (mothership URL, pid)
//	    run.lock                held while a `flash run` of this app runs here
//
// State belongs to one app: two apps run from one directory never share a file
// other than the key.
package layout

import (
	"os"
	"path/filepath"
	"strings"
)

// Root is the name of the directory flash keeps its files in.
const Root = ".flash"

// Dir is a project's .flash directory.
type Dir string

// In returns the .flash directory of the project in workdir ("" = the working directory).
func In(workdir string) Dir { return Dir(filepath.Join(workdir, Root)) }

// Path returns the directory itself.
func (d Dir) Path() string { return string(d) }

// APIKey is the file holding the directory's API key.
func (d Dir) APIKey() string { return filepath.Join(string(d), "api_key") }

// Build is where flash build writes the binary, manifest and artifact.
func (d Dir) Build() string { return filepath.Join(string(d), "build") }

// App returns the directory of one app's state.
func (d Dir) App(name string) App {
	return App(filepath.Join(string(d), "apps", SafeName(name)))
}

// Apps lists the apps that have state in this directory, sorted by name.
func (d Dir) Apps() []string {
	entries, err := os.ReadDir(filepath.Join(string(d), "apps"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// App is one app's state directory, .flash/apps/<app>.
type App string

// Path returns the directory itself.
func (a App) Path() string { return string(a) }

// State is the app's SQLite state store.
func (a App) State() string { return filepath.Join(string(a), "state.db") }

// Published is the mothership's own copy of the latest published manifest.
// It is never the user's FLASH_MANIFEST_PATH file, which flash only reads.
func (a App) Published() string { return filepath.Join(string(a), "flash_manifest.json") }

// Cache is where children keep their last-known-good manifest.
func (a App) Cache() string { return filepath.Join(string(a), "cache") }

// Logs holds one log file per child process of the local provider.
func (a App) Logs() string { return filepath.Join(string(a), "logs") }

// Artifacts holds deployed binaries by digest.
func (a App) Artifacts() string { return filepath.Join(string(a), "artifacts") }

// Run is the record a running `flash run` keeps: the mothership's URL and pids.
func (a App) Run() string { return filepath.Join(string(a), "run.json") }

// Lock is held (flock) while a `flash run` of this app runs in this directory.
func (a App) Lock() string { return filepath.Join(string(a), "run.lock") }

// SafeName maps an app name onto one path element: characters outside
// [A-Za-z0-9_.-] become '_', and names that would escape the directory
// ("", ".", "..") become "_".
func SafeName(name string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '_'
	}, name)
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}
