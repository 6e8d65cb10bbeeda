package flash

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// publicListener is a loopback listener that says it listens on every
// address, so that the test needs no public port.
type publicListener struct{ net.Listener }

func (publicListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 8080} }

// TestNoKey: without an API key, a process warns loudly, and refuses to
// serve on an address that is not loopback unless FLASH_INSECURE=1.
func TestNoKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		public   bool
		key      string
		insecure bool
		refused  bool
		warned   bool
	}{
		{name: "loopback without key", warned: true},
		{name: "public without key", public: true, refused: true},
		{name: "public without key, insecure", public: true, insecure: true, warned: true},
		{name: "public with key", public: true, key: "k"},
		{name: "loopback with key", key: "k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if tc.public {
				ln = publicListener{ln}
			}
			var logs bytes.Buffer // read once Run has returned
			app := NewApp("open")
			Register(app.Queue("worker", ResourceConfig{}), "echo", echo)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- app.Run(ctx, Config{Listener: ln, APIKey: tc.key, Insecure: tc.insecure,
					Logger: slog.New(slog.NewTextHandler(&logs, nil)), Ready: func(string) { close(ready) }})
			}()
			select {
			case <-ready:
				if tc.refused {
					t.Fatal("served without a key on a public address")
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			case err := <-done:
				if !tc.refused || !errors.Is(err, ErrNoAPIKey) || !strings.Contains(err.Error(), "FLASH_INSECURE=1") {
					t.Fatalf("Run = %v", err)
				}
			}
			if warned := strings.Contains(logs.String(), "NO API KEY"); warned != tc.warned {
				t.Errorf("warned = %v, want %v; logs:\n%s", warned, tc.warned, logs.String())
			}
		})
	}
	c, err := ConfigFromEnv(func(k string) string { return map[string]string{"FLASH_INSECURE": "1"}[k] })
	if err != nil || !c.Insecure {
		t.Errorf("FLASH_INSECURE=1: %+v %v", c.Insecure, err)
	}
	if _, err := ConfigFromEnv(func(k string) string { return map[string]string{"FLASH_INSECURE": "yes please"}[k] }); err == nil {
		t.Error("FLASH_INSECURE=yes please accepted")
	}
}
