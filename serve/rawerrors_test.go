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
