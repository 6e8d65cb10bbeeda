package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/flash-go/flash/manifest"
)

const manifestUsage = `Usage:
  flash manifest validate FILE…       report every problem of each file; exit 1 if any is invalid
  flash manifest show [--json] FILE   pretty print (--json: normalised JSON)
  flash manifest hash FILE            one line "NAME HASH" per resource
  flash manifest diff [--json] OLD NEW  new / changed / removed / unchanged resources`

func runManifest(e *env) int {
	if len(e.args) == 0 {
		fmt.Fprintln(e.stderr, manifestUsage)
		return exitUsage
	}
	sub, args := e.args[0], e.args[1:]
	fs := flag.NewFlagSet("flash manifest "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(e.stderr, manifestUsage) }
	asJSON := fs.Bool("json", false, "print JSON")
	files, code, ok := parseFlags(e, fs, args)
	if !ok {
		return code
	}
	switch sub {
	case "validate":
		if len(files) == 0 {
			return fail(e, usageError{"manifest validate: give at least one FILE"})
		}
		return manifestValidate(e, files, *asJSON)
	case "show":
		if len(files) != 1 {
			return fail(e, usageError{"manifest show: give exactly one FILE"})
		}
		return manifestShow(e, files[0], *asJSON)
	case "hash":
		if len(files) != 1 {
			return fail(e, usageError{"manifest hash: give exactly one FILE"})
		}
		return manifestHash(e, files[0], *asJSON)
	case "diff":
		if len(files) != 2 {
			return fail(e, usageError{"manifest diff: give OLD and NEW"})
		}
		return manifestDiff(e, files[0], files[1], *asJSON)
	case "-h", "--help", "help":
		fmt.Fprintln(e.stdout, manifestUsage)
		return exitOK
	}
	return fail(e, usageError{fmt.Sprintf("manifest: unknown subcommand %q\n%s", sub, manifestUsage)})
}

type validation struct {
	File     string   `json:"file"`
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems"`
}

func manifestValidate(e *env, files []string, asJSON bool) int {
	code := exitOK
	var results []validation
	for _, f := range files {
		v := validation{File: f, Problems: []string{}}
		data, err := os.ReadFile(f)
		if err == nil {
			_, err = manifest.Parse(data)
		}
		var inv *manifest.InvalidError
		switch {
		case err == nil:
			v.Valid = true
		case errors.As(err, &inv):
			for _, p := range inv.Problems {
				v.Problems = append(v.Problems, p.String())
			}
		default:
			v.Problems = append(v.Problems, err.Error())
		}
		if !v.Valid {
			code = exitFail
		}
		results = append(results, v)
	}
	if asJSON {
		writeJSON(e, results)
		return code
	}
	for _, v := range results {
		if v.Valid {
			fmt.Fprintf(e.stdout, "%s: valid\n", v.File)
			continue
		}
		fmt.Fprintf(e.stdout, "%s: invalid, %d problem%s\n", v.File, len(v.Problems), plural(len(v.Problems)))
		for _, p := range v.Problems {
			fmt.Fprintf(e.stdout, "  - %s\n", p)
		}
	}
	return code
}

func manifestShow(e *env, file string, asJSON bool) int {
	m, err := loadFile(file)
	if err != nil {
		return fail(e, err)
	}
	if asJSON {
		e.stdout.Write(m.Pretty())
		return exitOK
	}
	fmt.Fprintf(e.stdout, "project  %s\nversion  %s\n", orDash(m.ProjectName), orDash(m.Version))
	if m.GeneratedAt != "" {
		fmt.Fprintf(e.stdout, "built    %s\n", m.GeneratedAt)
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tKIND\tTYPE\tFUNCTIONS\tSTATUS\tURL")
	for _, name := range m.ResourceNames() {
		r := m.Resources[name]
		kind := "queue"
		if r.LoadBalanced {
			kind = "http"
		}
		var fns []string
		for _, f := range r.Functions {
			switch {
			case f.IsClass:
				fns = append(fns, f.Name+" (object)")
			case f.HTTPMethod != "":
				fns = append(fns, fmt.Sprintf("%s (%s %s)", f.Name, f.HTTPMethod, f.HTTPPath))
			default:
				fns = append(fns, f.Name)
			}
		}
		for f, rn := range m.FunctionRegistry {
			if rn == name {
				if _, listed := r.Function(f); !listed {
					fns = append(fns, f)
				}
			}
		}
		status := string(r.Status)
		if r.Error != "" {
			status += ": " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, kind, orDash(r.Type), orDash(strings.Join(fns, ", ")),
			orDash(status), orDash(strings.Join(r.URLs(), " ")))
	}
	tw.Flush()
	return exitOK
}

// manifestHash needs only a JSON object whose resources is an object of objects.
func manifestHash(e *env, file string, asJSON bool) int {
	data, err := os.ReadFile(file)
	if err != nil {
		return fail(e, err)
	}
	var doc struct {
		Resources map[string]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Resources == nil {
		return fail(e, fmt.Errorf("%s: need a JSON object whose \"resources\" is an object of resource entries", file))
	}
	hashes := map[string]string{}
	var failed bool
	for name, entry := range doc.Resources {
		h, err := manifest.HashEntry(entry)
		if err != nil {
			fmt.Fprintf(e.stderr, "flash: %s: resources[%q]: %v\n", file, name, err)
			failed = true
			continue
		}
		hashes[name] = h
	}
	if asJSON {
		writeJSON(e, hashes)
	} else {
		for _, name := range sortedNames(hashes) {
			fmt.Fprintf(e.stdout, "%s %s\n", name, hashes[name])
		}
	}
	if failed {
		return exitFail
	}
	return exitOK
}

func manifestDiff(e *env, oldFile, newFile string, asJSON bool) int {
	old, err := loadFile(oldFile)
	if err != nil {
		return fail(e, err)
	}
	desired, err := loadFile(newFile)
	if err != nil {
		return fail(e, err)
	}
	c := manifest.Diff(desired, old)
	if asJSON {
		writeJSON(e, c)
		return exitOK
	}
	for _, sec := range []struct {
		sign  string
		label string
		names []string
	}{{"+", "new", c.New}, {"~", "changed", c.Changed}, {"-", "removed", c.Removed}, {"=", "unchanged", c.Unchanged}} {
		for _, n := range sec.names {
			fmt.Fprintf(e.stdout, "%s %-10s %s\n", sec.sign, sec.label, n)
		}
	}
	fmt.Fprintf(e.stdout, "%d new, %d changed, %d removed, %d unchanged\n", len(c.New), len(c.Changed), len(c.Removed), len(c.Unchanged))
	return exitOK
}

func loadFile(file string) (*manifest.Manifest, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

func writeJSON(e *env, v any) {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
