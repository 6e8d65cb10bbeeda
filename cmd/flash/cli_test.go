package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--port", "0"}, {"run", "a", "b"}, {"run", "--nope"}, {"dev", "a", "b"},
		{"build", "a", "b"}, {"deploy", "a", "b"}, {"status", "extra"}, {"undeploy", "extra"},
		{"init"}, {"init", "a", "b"},
	} {
		if code, _, errOut := runCLI(t, args...); code != exitUsage {
			t.Errorf("flash %v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	if code, out, _ := runCLI(t, "help"); code != exitOK || !strings.Contains(out, "run") || !strings.Contains(out, "undeploy") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}

func TestPortInUseSaysWhatToDo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	code, _, errOut := runCLI(t, "run", "--port", port, ".")
	if code != exitFail || !strings.Contains(errOut, "already in use") || !strings.Contains(errOut, "--port") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestMissingGoToolchain(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir())
	code, _, errOut := runCLI(t, "build", ".")
	if code != exitFail || !strings.Contains(errOut, "Go toolchain is not on PATH") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestUnreachableMothership(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _, errOut := runCLI(t, "status", "--mothership", "http://"+addr)
	if code != exitFail || !strings.Contains(errOut, "nothing is listening") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestInvalidAppListsEveryProblem(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an app")
	}
	src, _ := filepath.Abs("testdata/badapp")
	t.Chdir(t.TempDir())
	code, _, errOut := runCLI(t, "build", src)
	if code != exitFail {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"not a valid flash app", `"twice" is registered twice`, `"/health" is reserved`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("message lacks %q:\n%s", want, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(buildDir, "app")); err == nil {
		t.Error("an invalid build left a binary behind")
	}
}

func TestBadLogLevelIsAUsageError(t *testing.T) {
	t.Setenv("FLASH_LOG_LEVEL", "loud")
	if code, _, errOut := runCLI(t, "run", "--port", "1", "."); code != exitUsage || !strings.Contains(errOut, "FLASH_LOG_LEVEL") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
