package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEveryAnswerJSON sends, over a real connection to Serve, requests that
// net/http or ServeMux would answer in plain text, HTML or with an empty
// body: every answer must be JSON.
func TestEveryAnswerJSON(t *testing.T) {
	s := newServer(t, Config{Logger: discard()}, newGate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, s, 5*time.Second) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	env := envelopeFor("echo", 1)
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"bad percent-encoding", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"headers too large", "GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 200<<10) + "\r\n\r\n", 431},
		{"no host", "GET /ping HTTP/1.1\r\n\r\n", 400},
		{"unsupported transfer encoding", "POST /runsync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"unknown expectation", "POST /runsync HTTP/1.1\r\nHost: x\r\nExpect: wonders\r\nContent-Length: 2\r\n\r\n{}", 417},
		{"double slash POST", "POST //runsync HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(env)) + "\r\n\r\n" + env, 200},
		{"dot segments", "GET /v2/e/../../ping HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"missing trailing slash, DELETE", "DELETE /things HTTP/1.1\r\nHost: x\r\n\r\n", 307},
		{"missing trailing slash, GET", "GET /things HTTP/1.1\r\nHost: x\r\n\r\n", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(conn, tc.raw) // a refused request may not be read whole
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" || !json.Valid(body) || len(body) == 0 {
				t.Errorf("answer %q with Content-Type %q is not JSON", body, ct)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// FuzzRewriteServerError: only net/http's own error writes are rewritten,
// and what comes out is a well-formed HTTP answer with a JSON body.
func FuzzRewriteServerError(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large",
		"HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header",
		"HTTP/1.1 417 Expectation Failed\r\nDate: x\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
		"HTTP/1.1 404 Not Found\r\nDate: x\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		out, ok := rewriteServerError(p)
		if !ok {
			return
		}
		if !strings.HasPrefix(string(p), "HTTP/1.1 4") && !strings.HasPrefix(string(p), "HTTP/1.1 5") {
			t.Fatalf("rewrote %q", p)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(out))), nil)
		if err != nil {
			t.Fatalf("rewritten answer %q: %v", out, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !json.Valid(body) || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("rewritten answer %q is not JSON", out)
		}
	})
}
