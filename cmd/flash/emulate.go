package main

import (
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/runpodemu"
)

func runEmulate(e *env) int {
	fs := flag.NewFlagSet("flash emulate", flag.ContinueOnError)
	port := fs.Int("port", 8090, "port to listen on (loopback only)")
	dir := fs.String("dir", filepath.Join(layout.Root, "emulator", "runpod"), "where endpoints, templates, volumes, jobs and worker logs are kept")
	key := fs.String("api-key", "", "the account's API key (default: the one kept in --dir, made on first start)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash emulate runpod [--port N] [--dir D] [--api-key K]\n\n"+
			"Runs a local Runpod: the REST v2 management API, the job API with its queue,\n"+
			"the worker API, and workers as local processes. Ctrl-C stops it and its workers.")
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) != 1 || args[0] != "runpod" {
		return fail(e, usageError{"emulate: the only platform is runpod (flash emulate runpod)"})
	}
	if *port < 0 || *port > 65535 {
		return fail(e, usageError{fmt.Sprintf("emulate: --port %d is not a port number", *port)})
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	emu, err := runpodemu.Start(runpodemu.Config{Dir: *dir, APIKey: *key, Logger: log}, "127.0.0.1:"+strconv.Itoa(*port))
	if err != nil {
		return fail(e, err)
	}
	u := emu.URL()
	fmt.Fprintf(e.stdout, "Runpod emulator on %s (state in %s)\n", u, *dir)
	fmt.Fprintf(e.stdout, "  API key         %s\n", emu.APIKey())
	fmt.Fprintf(e.stdout, "  management API  %s/v2/serverless  /v2/templates  /v2/network-volumes\n", u)
	fmt.Fprintf(e.stdout, "  queue endpoints %s/v2/{endpoint_id}/run | runsync | status/{id} | stream/{id} | cancel/{id} | health\n", u)
	fmt.Fprintf(e.stdout, "  load-balanced   %s/lb/{endpoint_id}/{path}\n", u)
	fmt.Fprintf(e.stdout, "Runpod's tools: RUNPOD_REST_V2_URL=%s/v2 RUNPOD_ENDPOINT_BASE_URL=%s/v2 RUNPOD_API_KEY=%s\n", u, u, emu.APIKey())
	<-e.ctx.Done()
	if err := emu.Close(); err != nil {
		return fail(e, err)
	}
	return exitOK
}
