package main

import (
	"flag"
	"fmt"
	"net/http"
)

// runInvalidate makes the mothership re-read the state store now .
func runInvalidate(e *env) int {
	fs := flag.NewFlagSet("flash invalidate", flag.ContinueOnError)
	ms := fs.String("mothership", "", mothershipFlagHelp)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash invalidate [--mothership URL] [--json]\n\nMakes the mothership re-read its state store now and serve the latest published manifest.")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 0 {
		return fail(e, usageError{"invalidate: takes no arguments"})
	}
	base, err := findMothership(*ms, "", e.self)
	if err != nil {
		return fail(e, err)
	}
	var answer struct {
		Version int64 `json:"version"`
	}
	if err := callJSON(e.ctx, http.MethodPost, base, "/flash/invalidate", apiKey(), &answer); err != nil {
		return fail(e, err)
	}
	if *asJSON {
		writeJSON(e, answer)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "mothership %s re-read its state: serving manifest version %d\n", base, answer.Version)
	return exitOK
}
