package etcd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url       string
		endpoints []string
		prefix    string
		user      string
		pass      string
		tls       bool
		leaseTTL  time.Duration
		timeout   time.Duration
	}{
		{url: "etcd://127.0.0.1:2379", endpoints: []string{"127.0.0.1:2379"}, prefix: "/flash"},
		{url: "etcd://h1:2379,h2:2379/flash/app1", endpoints: []string{"h1:2379", "h2:2379"}, prefix: "/flash/app1"},
		{url: "ETCD://h1:1/", endpoints: []string{"h1:1"}, prefix: ""},
		{url: "etcd://h1:1/app/", endpoints: []string{"h1:1"}, prefix: "/app"},
		{url: "etcd://user:p%40ss@h1:1/app", endpoints: []string{"h1:1"}, prefix: "/app", user: "user", pass: "p@ss"},
		{url: "etcd://user@h1:1", endpoints: []string{"h1:1"}, prefix: "/flash", user: "user"},
		{url: "etcd://[::1]:2379,h:2/a_b.c-d", endpoints: []string{"[::1]:2379", "h:2"}, prefix: "/a_b.c-d"},
		{url: "etcd://h:1/a?tls=1", endpoints: []string{"h:1"}, prefix: "/a", tls: true},
		{url: "etcd://h:1/a?tls=0", endpoints: []string{"h:1"}, prefix: "/a"},
		{url: "etcd://h:1/a?lease_ttl=3s&timeout=1500ms", endpoints: []string{"h:1"}, prefix: "/a", leaseTTL: 3 * time.Second, timeout: 1500 * time.Millisecond},
	} {
		cfg, _, err := parseURL(tc.url)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tc.url, err)
			continue
		}
		if !slices.Equal(cfg.Endpoints, tc.endpoints) || cfg.Prefix != tc.prefix || cfg.Username != tc.user ||
			cfg.Password != tc.pass || (cfg.TLS != nil) != tc.tls || cfg.LeaseTTL != tc.leaseTTL || cfg.OpTimeout != tc.timeout {
			t.Errorf("parseURL(%q) = %+v", tc.url, cfg)
		}
	}
}

func TestParseURLFiles(t *testing.T) {
	ca, cert, key := writeCert(t)
	cfg, err := ParseURL("etcd://h:1/a?ca=" + ca + "&cert=" + cert + "&key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) != 1 {
		t.Errorf("TLS = %+v, want a CA pool and one certificate", cfg.TLS)
	}
	for _, u := range []string{
		"etcd://h:1/a?ca=" + filepath.Join(t.TempDir(), "missing.pem"),
		"etcd://h:1/a?ca=" + key, // not a certificate
		"etcd://h:1/a?cert=" + cert + "&key=" + ca,
	} {
		if _, err := ParseURL(u); err == nil {
			t.Errorf("ParseURL(%q): no error", u)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, u := range []string{
		"", "http://h:1", "etcd:/h:1", "etcd://", "etcd://h", "etcd://h:0", "etcd://h:99999", "etcd://h:x",
		"etcd://h:1,", "etcd://h:1,/a", "etcd://:1", "etcd://@h:1", "etcd://u:p%zz@h:1",
		"etcd://h:1/a b", "etcd://h:1/a//b", "etcd://h:1/../x", "etcd://h:1/./x", "etcd://h:1/a:b", "etcd://h:1/a%2Fb",
		"etcd://h:1/a#frag", "etcd://h:1/a\x00", "etcd://h:1/a?tls=yes", "etcd://h:1/a?tls=1&tls=0",
		"etcd://h:1/a?foo=1", "etcd://h:1/a?cert=/x", "etcd://h:1/a?key=/x", "etcd://h:1/a?ca=",
		"etcd://h:1/a?lease_ttl=1s", "etcd://h:1/a?lease_ttl=5", "etcd://h:1/a?timeout=-1s", "etcd://h:1/a?%zz",
	} {
		if cfg, _, err := parseURL(u); err == nil {
			t.Errorf("parseURL(%q) = %+v, want an error", u, cfg)
		}
	}
	_, _, err := parseURL("etcd://u:secret@h:1/a?bad=1")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v shows the password", err)
	}
}

func TestApplyEnv(t *testing.T) {
	ca, _, _ := writeCert(t)
	env := map[string]string{"FLASH_ETCD_USER": "envuser", "FLASH_ETCD_PASSWORD": "envpass", "FLASH_ETCD_CA": ca}
	getenv := func(k string) string { return env[k] }

	cfg := Config{}
	if err := cfg.applyEnv(getenv); err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "envuser" || cfg.Password != "envpass" || cfg.TLS == nil || cfg.TLS.RootCAs == nil {
		t.Errorf("from env only: %+v", cfg)
	}
	cfg = Config{Username: "urluser"}
	if err := cfg.applyEnv(getenv); err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "urluser" || cfg.Password != "envpass" {
		t.Errorf("URL user, env password: %+v", cfg)
	}
	cfg = Config{Username: "urluser", Password: "urlpass"}
	if err := cfg.applyEnv(getenv); err != nil || cfg.Password != "urlpass" {
		t.Errorf("URL password must win: %+v, %v", cfg, err)
	}
	env = map[string]string{"FLASH_ETCD_CERT": ca}
	if err := (&Config{}).applyEnv(getenv); err == nil {
		t.Error("FLASH_ETCD_CERT without FLASH_ETCD_KEY: no error")
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"etcd://127.0.0.1:2379", "etcd://u:p@h1:1,h2:2/a/b?tls=1&timeout=1s", "etcd://[::1]:1/", "etcd://h:1/a?lease_ttl=2s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		cfg, _, err := parseURL(u)
		if err != nil {
			return
		}
		if len(cfg.Endpoints) == 0 {
			t.Fatalf("%q: no endpoints", u)
		}
		for _, ep := range cfg.Endpoints {
			if _, _, err := net.SplitHostPort(ep); err != nil {
				t.Fatalf("%q: endpoint %q: %v", u, ep, err)
			}
		}
		if cfg.Prefix != "" && (cfg.Prefix[0] != '/' || strings.HasSuffix(cfg.Prefix, "/") ||
			strings.Contains(cfg.Prefix, "//") || strings.ContainsAny(cfg.Prefix, ":?#@ ")) {
			t.Fatalf("%q: bad prefix %q", u, cfg.Prefix)
		}
		// The canonical form parses to the same place.
		again, _, err := parseURL("etcd://" + strings.Join(cfg.Endpoints, ",") + cfg.Prefix + "/")
		if err != nil || !slices.Equal(again.Endpoints, cfg.Endpoints) || again.Prefix != cfg.Prefix {
			t.Fatalf("%q: canonical form gives %+v, %v", u, again, err)
		}
	})
}

// writeCert writes a self-signed CA certificate and its key as PEM files.
func writeCert(t *testing.T) (ca, cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flash test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, cert, key
}
