package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// env is what a command gets: its arguments and the process's streams.
type env struct {
	ctx    context.Context
	args   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	self   string // how the user called this CLI, for hints (selfCommand)
}

type command struct {
	summary string
	run     func(e *env) int
}

// commands is filled by each command's file.
func commands() map[string]command {
	return map[string]command{
		"manifest":   {summary: "validate, show, hash or diff manifest files", run: runManifest},
		"build":      {summary: "build the app and write its manifest and artifact", run: runBuild},
		"status":     {summary: "show the mothership's resources and children", run: runStatus},
		"logs":       {summary: "show the topology's logs merged in time order (-f follows)", run: runLogs},
		"run":        {summary: "build and run the whole topology here", run: runRun},
		"dev":        {summary: "flash run, redeploying the app whenever a Go source changes", run: runDev},
		"deploy":     {summary: "build and deploy to a running mothership", run: runDeploy},
		"undeploy":   {summary: "remove this app's endpoints (and nothing else)", run: runUndeploy},
		"init":       {summary: "create a new app skeleton", run: runInit},
		"invalidate": {summary: "make the mothership re-read its state store now", run: runInvalidate},
		"emulate":    {summary: "run a local Runpod (flash emulate runpod --port N --dir D)", run: runEmulate},
		"bench":      {summary: "measure flash against its baselines (--quick, --json, --out DIR)", run: runBench},
	}
}

// usageError is returned by commands for wrong arguments: exit 2 with a hint.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	self := selfCommand(os.Args[0])
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printHelp(stdout, cmds, self)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	name := args[0]
	c, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "flash: unknown command %q\nRun '%s help' to see the commands.\n", args[0], self)
		return exitUsage
	}
	return c.run(&env{ctx: ctx, args: args[1:], stdin: stdin, stdout: stdout, stderr: stderr, self: self})
}

func printHelp(w io.Writer, cmds map[string]command, self string) {
	fmt.Fprintln(w, "flash — run Go functions spread across several endpoints")
	fmt.Fprintln(w, "\nUsage: flash COMMAND [ARGS]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's options.\n", self)
}

// parseFlags parses a command's flags, allowing flags after positional
// arguments. It returns the positional arguments, or an exit code when
// parsing ended the command (help asked: 0; bad flag: 2).
func parseFlags(e *env, fs *flag.FlagSet, args []string) ([]string, int, bool) {
	fs.SetOutput(e.stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// fail prints an error for a person: what failed, and what to do when known.
func fail(e *env, err error) int {
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintf(e.stderr, "flash: %s\n", u.msg)
		return exitUsage
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	fmt.Fprintf(e.stderr, "flash: %s", msg)
	return exitFail
}
