//go:build unix

package flash

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
)

// TestServesOnInheritedSocket: with FLASH_LISTEN_FD the app serves on the
// socket its parent opened, not on a port of its own.
func TestServesOnInheritedSocket(t *testing.T) {
	c, err := ConfigFromEnv(func(k string) string { return map[string]string{"FLASH_LISTEN_FD": "7"}[k] })
	if err != nil || c.ListenFD != 7 {
		t.Fatalf("FLASH_LISTEN_FD=7: %+v %v", c, err)
	}
	if _, err := ConfigFromEnv(func(k string) string { return map[string]string{"FLASH_LISTEN_FD": "-1"}[k] }); err == nil {
		t.Error("FLASH_LISTEN_FD=-1 accepted")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(f.Fd())) // the app closes the descriptor it is given
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp("inherit")
	Register(app.Queue("worker", ResourceConfig{}), "echo", echo)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, Config{ListenFD: fd, Port: 1, Logger: slog.New(slog.DiscardHandler), Ready: func(u string) { ready <- u }})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	if want := "http://" + ln.Addr().String(); url != want {
		t.Errorf("serves on %s, want the inherited %s", url, want)
	}
	resp, err := http.Get(url + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ping = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	file, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	notSock, err := syscall.Dup(int(file.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inheritedListener(notSock); err == nil {
		t.Error("a file was accepted as a listening socket")
	}
}
