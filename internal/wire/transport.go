package wire

import (
	"net"
	"net/http"
	"time"
)

// NewTransport returns the HTTP transport flash endpoints and the
// mothership's gateway call other endpoints with: a connection pool sized
// for concurrency (Go's default keeps 2 idle connections per host) and
// bounded dial and TLS times. It sets no ResponseHeaderTimeout on purpose:
// every call carries a deadline that bounds the wait for an answer, and a
// fixed header timeout would cut off functions that legitimately run long.
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
