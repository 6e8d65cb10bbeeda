package serve

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// jsonErrorListener makes the answers net/http's server writes by itself,
// before any handler runs, JSON like every other answer: 431 (headers
// larger than MaxHeaderBytes), 400 (a malformed request line, URI or Host),
// 501 (an unknown Transfer-Encoding) and 417 (an unknown Expect). net/http
// writes each in one Write on the connection, in a fixed plain-text form
// (server.go: "HTTP/1.1 <status>" + errorHeaders + text) that no handler
// answer has, since those always carry a Date header; so recognising them
// is exact. Anything net/http may add later in another form stays as it is.
type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return jsonErrorConn{c}, nil
}

type jsonErrorConn struct{ net.Conn }

func (c jsonErrorConn) Write(p []byte) (int, error) {
	if b, ok := rewriteServerError(p); ok {
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite keeps net/http's half-close before it hangs up on an oversized
// request (so the client reads the 431 rather than a reset).
func (c jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var (
	serverErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
	expectationFailed  = []byte("HTTP/1.1 417 Expectation Failed\r\n")
)

// rewriteServerError turns one of net/http's own error answers into JSON.
func rewriteServerError(p []byte) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	if len(p) < len(proto)+3 || !bytes.HasPrefix(p, []byte(proto)) || (p[len(proto)] != '4' && p[len(proto)] != '5') {
		return nil, false
	}
	code, err := strconv.Atoi(string(p[len(proto) : len(proto)+3]))
	if err != nil {
		return nil, false
	}
	var msg string
	switch {
	case bytes.HasPrefix(p, expectationFailed):
		// Answered through the response writer without a handler: empty body.
		msg = "unsupported Expect header (only 100-continue is)"
	default:
		i := bytes.Index(p, serverErrorHeaders)
		if i < 0 || bytes.IndexByte(p[:i], '\n') >= 0 {
			return nil, false
		}
		msg = string(p[i+len(serverErrorHeaders):])
	}
	body, _ := json.Marshal(map[string]string{"error": msg})
	out := make([]byte, 0, 128+len(body))
	out = append(out, proto...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(code)...)
	out = append(out, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\nConnection: close\r\n\r\n"...)
	return append(out, body...), true
}
