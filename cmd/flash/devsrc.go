package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flash-go/flash/internal/srcdiff"
	"github.com/flash-go/flash/manifest"
)

// What flash dev compares between two builds to restart only the resources
// a change can affect: when the sources differ only in resource config
// literals (srcdiff), a resource whose manifest entry is unchanged keeps the
// source_fingerprint of the build it runs, so the mothership leaves it be.

// buildInputs is one `go list -deps` of the app.
type buildInputs struct {
	dirs  []string // directories of the main module's packages: watched for changes
	files []string // sorted: every file a build reads from outside the module cache
	mods  []string // sorted: path@version (=> replacement) of every module from the cache
}

func (a buildInputs) same(b buildInputs) bool {
	return slices.Equal(a.files, b.files) && slices.Equal(a.mods, b.mods)
}

// listedPackage is what buildInputs needs of one `go list -json` package.
type listedPackage struct {
	Dir      string
	Standard bool
	Module   *listedModule
	// The files go build reads, by kind.
	GoFiles, CgoFiles, CFiles, CXXFiles, MFiles, HFiles, FFiles, SFiles []string
	SwigFiles, SwigCXXFiles, SysoFiles, EmbedFiles                      []string
}

type listedModule struct {
	Path, Version, GoMod string
	Main                 bool
	Replace              *listedModule
}

// local reports whether the package's files may change without its module
// version changing: the main module's, a local replacement's, GOPATH's.
func (p *listedPackage) local() bool {
	m := p.Module
	return m == nil || m.Main || (m.Replace != nil && m.Replace.Version == "")
}

const listFields = "Dir,Standard,Module,GoFiles,CgoFiles,CFiles,CXXFiles,MFiles,HFiles,FFiles,SFiles,SwigFiles,SwigCXXFiles,SysoFiles,EmbedFiles"

// listInputs lists what a build of pkg reads.
func listInputs(ctx context.Context, pkg string) (buildInputs, error) {
	args := []string{"list", "-e", "-deps", "-json=" + listFields}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	if fi, err := os.Stat(pkg); err == nil && fi.IsDir() {
		cmd = exec.CommandContext(ctx, "go", append(args, ".")...)
		cmd.Dir = pkg
	}
	out, err := cmd.Output()
	if err != nil {
		return buildInputs{}, fmt.Errorf("go list: %w", err)
	}
	dirs, files, mods := map[string]bool{}, map[string]bool{}, map[string]bool{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return buildInputs{}, fmt.Errorf("go list: %w", err)
		}
		if p.Standard {
			continue
		}
		if !p.local() {
			m := p.Module
			key := m.Path + "@" + m.Version
			if m.Replace != nil {
				key += " => " + m.Replace.Path + "@" + m.Replace.Version
			}
			mods[key] = true
			continue
		}
		if p.Module != nil && p.Module.Main {
			dirs[p.Dir] = true
		}
		for _, kind := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.MFiles, p.HFiles, p.FFiles, p.SFiles,
			p.SwigFiles, p.SwigCXXFiles, p.SysoFiles, p.EmbedFiles} {
			for _, f := range kind {
				files[filepath.Join(p.Dir, f)] = true
			}
		}
		if m := p.Module; m != nil {
			if m.Replace != nil {
				m = m.Replace
			}
			if m.GoMod != "" {
				files[m.GoMod] = true
				if p.Module.Main {
					files[filepath.Join(filepath.Dir(m.GoMod), "go.sum")] = true
				}
			}
		}
	}
	return buildInputs{
		dirs:  slices.Sorted(maps.Keys(dirs)),
		files: slices.Sorted(maps.Keys(files)),
		mods:  slices.Sorted(maps.Keys(mods)),
	}, nil
}

// sources is what a build reads from outside the module cache, read before
// that build.
type sources struct {
	inputs  buildInputs
	content map[string][]byte // by path; a file that could not be read is absent
}

// readSources lists pkg's inputs and reads them; nil when they cannot be listed.
func readSources(ctx context.Context, pkg string) *sources {
	in, err := listInputs(ctx, pkg)
	if err != nil {
		return nil
	}
	return readInputs(in)
}

// readInputs reads the files of in.
func readInputs(in buildInputs) *sources {
	s := &sources{inputs: in, content: make(map[string][]byte, len(in.files))}
	for _, f := range in.files {
		if b, err := os.ReadFile(f); err == nil {
			s.content[f] = b
		}
	}
	return s
}

// sameCode reports whether a and b are the same program but for the config
// literals of its resources: the same inputs, every file equal, each Go
// file's difference confined to config literals. Unknown sources differ.
func sameCode(a, b *sources) bool {
	if a == nil || b == nil || !a.inputs.same(b.inputs) {
		return false
	}
	for _, f := range a.inputs.files {
		x, okA := a.content[f]
		y, okB := b.content[f]
		if !okA || !okB {
			return false
		}
		if strings.HasSuffix(f, ".go") {
			if !srcdiff.ConfigOnly(x, y) {
				return false
			}
		} else if string(x) != string(y) {
			return false
		}
	}
	return true
}

// keepFingerprints returns next with every resource whose entry equals its
// entry in prev, source_fingerprint aside, carrying prev's fingerprint, and
// the names of those resources. Sound only when the two builds are the same
// code (sameCode): such a resource runs the same on either binary.
func keepFingerprints(prev, next *manifest.Manifest) (*manifest.Manifest, []string, error) {
	body, err := next.MarshalJSON()
	if err != nil {
		return nil, nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, err
	}
	var res map[string]map[string]json.RawMessage
	if err := json.Unmarshal(top["resources"], &res); err != nil {
		return nil, nil, err
	}
	var kept []string
	for _, name := range next.ResourceNames() {
		p := prev.Resources[name]
		if p == nil {
			continue
		}
		var old map[string]json.RawMessage
		if err := json.Unmarshal(p.Raw(), &old); err != nil {
			return nil, nil, err
		}
		fp, ok := old[fingerprintKey]
		if !ok || !sameConfig(old, res[name]) {
			continue
		}
		res[name][fingerprintKey] = fp
		kept = append(kept, name)
	}
	if len(kept) == 0 {
		return next, nil, nil
	}
	if top["resources"], err = json.Marshal(res); err != nil {
		return nil, nil, err
	}
	if body, err = json.Marshal(top); err != nil {
		return nil, nil, err
	}
	m, err := manifest.Parse(body)
	if err != nil {
		return nil, nil, err
	}
	return m, kept, nil
}

// fingerprintKey is the resource key naming the build of the code it runs.
const fingerprintKey = "source_fingerprint"

// sameConfig reports whether two resource entries are equal once their
// runtime keys and source_fingerprint are set aside.
func sameConfig(a, b map[string]json.RawMessage) bool {
	ha, hb := configHash(a), configHash(b)
	return ha != "" && ha == hb
}

func configHash(entry map[string]json.RawMessage) string {
	e := maps.Clone(entry)
	delete(e, fingerprintKey)
	b, err := json.Marshal(e)
	if err != nil {
		return ""
	}
	h, err := manifest.HashEntry(b)
	if err != nil {
		return ""
	}
	return h
}
