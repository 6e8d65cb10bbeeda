// Command testchild is a stand-in for an app binary in the local provider's
// tests. It serves GET /ping, GET /env (its environment) and GET
// /log?text=T&pad=N (prints T and N x's to stdout) on 127.0.0.1:$PORT.
//
// Knobs (environment):
//
//	TESTCHILD_EXIT=N           print a line and exit with status N at once
//	TESTCHILD_NEVER_HEALTHY=1  answer /ping with 503 forever
//	TESTCHILD_IGNORE_TERM=1    log SIGTERM and keep running (only SIGKILL ends it)
//	TESTCHILD_PORT_HELD=1      exit with status 3 when $PORT is free at start: the
//	                           port must be held for it until it serves (FLASH_LISTEN_FD)
//
// It serves on the socket FLASH_LISTEN_FD names when set, else on $PORT.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	fmt.Printf("testchild pid=%d port=%s resource=%s\n", os.Getpid(), os.Getenv("PORT"), os.Getenv("FLASH_RESOURCE_NAME"))
	if s := os.Getenv("TESTCHILD_EXIT"); s != "" {
		code, _ := strconv.Atoi(s)
		fmt.Fprintf(os.Stderr, "testchild: exiting early with status %d as asked\n", code)
		os.Exit(code)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)

	addr := net.JoinHostPort(os.Getenv("FLASH_HOST"), os.Getenv("PORT"))
	if os.Getenv("TESTCHILD_PORT_HELD") == "1" {
		if probe, err := net.Listen("tcp", addr); err == nil {
			probe.Close()
			fmt.Fprintf(os.Stderr, "testchild: %s was free before I served on it: another process could have taken it\n", addr)
			os.Exit(3)
		}
	}
	var ln net.Listener
	var err error
	if fd, _ := strconv.Atoi(os.Getenv("FLASH_LISTEN_FD")); fd > 0 {
		ln, err = net.FileListener(os.NewFile(uintptr(fd), "listener"))
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testchild:", err)
		os.Exit(1)
	}
	never := os.Getenv("TESTCHILD_NEVER_HEALTHY") == "1"
	if never {
		fmt.Fprintln(os.Stderr, "testchild: never healthy, as asked")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		if never {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"healthy"}`)
	})
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		// Write a line to stdout: text, then pad x's.
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		fmt.Println(r.URL.Query().Get("text") + strings.Repeat("x", min(max(pad, 0), 1<<20)))
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(os.Environ())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()

	ignore := os.Getenv("TESTCHILD_IGNORE_TERM") == "1"
	for range sigs {
		if ignore {
			fmt.Println("testchild: ignoring SIGTERM")
			continue
		}
		fmt.Println("testchild: SIGTERM, exiting")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
		os.Exit(0)
	}
}
