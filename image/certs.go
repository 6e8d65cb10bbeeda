package image

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxCACerts bounds a CA bundle (a full system bundle is about 200 KiB).
const maxCACerts = 8 << 20

// caCertFiles are where systems keep their CA bundle: the list Go's
// crypto/x509 reads on Linux, whose last entry is also macOS's and FreeBSD's.
var caCertFiles = [...]string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS, FreeBSD
}

// FindCACerts returns the build machine's CA bundle: $SSL_CERT_FILE when set,
// else the first of the system locations Go's crypto/x509 reads that exists.
func FindCACerts(getenv func(string) string) (string, error) {
	if p := getenv("SSL_CERT_FILE"); p != "" {
		return p, nil
	}
	for _, p := range caCertFiles {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", errors.New("no CA certificates on this machine (looked in /etc/ssl/certs/ca-certificates.crt and the other places Go reads): " +
		"install your system's ca-certificates package or set SSL_CERT_FILE to a PEM bundle")
}

// readCACerts reads a PEM bundle and checks that it holds certificates.
func readCACerts(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCACerts+1))
	if err != nil {
		return nil, fmt.Errorf("CA certificates %s: %w", path, err)
	}
	if len(b) > maxCACerts {
		return nil, fmt.Errorf("CA certificates %s: more than %d bytes", path, maxCACerts)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA certificates %s: no PEM certificate in it", path)
	}
	return b, nil
}
