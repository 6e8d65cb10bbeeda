package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultPrefix is the key prefix used when the URL names none.
const DefaultPrefix = "/flash"

// Config says how to reach the etcd cluster and where in it the app's state lives.
type Config struct {
	// Endpoints are the members' client addresses, "host:port" or full URLs.
	Endpoints []string
	// Prefix is the key prefix of this app's state, "/seg/seg" (no trailing
	// slash; "" for the root). Several apps share a cluster with different
	// prefixes; one prefix may even be inside another without collision.
	Prefix string
	// Username and Password enable etcd authentication when Username is set.
	Username, Password string
	// TLS, when not nil, is used for every connection to the cluster.
	TLS *tls.Config
	// DialTimeout bounds connecting at Open; default 5 s.
	DialTimeout time.Duration
	// OpTimeout bounds each store call whose context has no earlier deadline,
	// so a cluster without quorum gives an error instead of a hang; default 10 s.
	OpTimeout time.Duration
	// LeaseTTL is how long a leader that stopped renewing (crashed, paused,
	// cut off) keeps its leadership; default 5 s, at least 2 s.
	LeaseTTL time.Duration
	// Logger receives background errors (the watch failing and starting
	// again); nil discards them.
	Logger *slog.Logger
}

// tlsFiles are the PEM files a URL or the environment names.
type tlsFiles struct{ ca, cert, key string }

// ParseURL turns a FLASH_STATE_URL value into a Config, reading any files it names.
//
// The form is
//
//	etcd://[user[:password]@]host:port[,host:port…][/prefix][?option=value&…]
//
// where the hosts are the members' client addresses (IPv6 in brackets) and
// the prefix, made of segments of letters, digits, '.', '_' and '-', keeps
// one app's keys apart from another's (default "/flash"). Options:
//
//	tls=1          connect with TLS (implied by ca, cert or key)
//	ca=PATH        PEM file of the CA that signed the members' certificates
//	cert=PATH      client certificate (PEM), with key=PATH its private key
//	lease_ttl=DUR  leadership lease, e.g. 5s (Go duration, at least 2s)
//	timeout=DUR    per-call timeout when the caller gives no deadline, e.g. 10s
//
// Anything else is an error, so a misspelt option is not silently ignored.
// Open also reads FLASH_ETCD_USER, FLASH_ETCD_PASSWORD, FLASH_ETCD_CA,
// FLASH_ETCD_CERT and FLASH_ETCD_KEY for whatever the URL leaves out, which
// keeps a password out of the URL.
func ParseURL(u string) (Config, error) {
	cfg, files, err := parseURL(u)
	if err != nil {
		return Config{}, err
	}
	if cfg.TLS != nil {
		if cfg.TLS, err = loadTLS(files); err != nil {
			return Config{}, fmt.Errorf("store/etcd: state URL: %w", err)
		}
	}
	return cfg, nil
}

// parseURL is ParseURL without touching the file system.
func parseURL(u string) (Config, tlsFiles, error) {
	var cfg Config
	var files tlsFiles
	bad := func(format string, args ...any) (Config, tlsFiles, error) {
		return Config{}, tlsFiles{}, fmt.Errorf("store/etcd: state URL %q: %s", redact(u), fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || !strings.EqualFold(scheme, "etcd") {
		return bad("want etcd://host:port[,host:port…][/prefix]")
	}
	if strings.ContainsAny(rest, "#\x00") {
		return bad("fragments and NUL bytes are not allowed")
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(hosts, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(hosts[:i], ":")
		var err error
		if cfg.Username, err = url.PathUnescape(user); err != nil || cfg.Username == "" {
			return bad("bad or empty user name")
		}
		if hasPass {
			if cfg.Password, err = url.PathUnescape(pass); err != nil {
				return bad("bad password escape")
			}
		}
		hosts = hosts[i+1:]
	}
	for h := range strings.SplitSeq(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || strings.ContainsAny(host, "/@ ") {
			return bad("member address %q is not host:port", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("member address %q has a bad port", h)
		}
		cfg.Endpoints = append(cfg.Endpoints, net.JoinHostPort(host, port))
	}
	cfg.Prefix = DefaultPrefix
	if hasPath {
		p, err := cleanPrefix(path)
		if err != nil {
			return bad("%v", err)
		}
		cfg.Prefix = p
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad("%v", err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return bad("option %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "tls":
			on, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tls=%q: want 1 or 0", v)
			}
			if on {
				cfg.TLS = &tls.Config{}
			}
		case "ca", "cert", "key":
			if v == "" {
				return bad("%s needs a file path", k)
			}
			switch k {
			case "ca":
				files.ca = v
			case "cert":
				files.cert = v
			default:
				files.key = v
			}
			cfg.TLS = &tls.Config{}
		case "lease_ttl", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("%s=%q: want a positive duration such as 5s", k, v)
			}
			if k == "timeout" {
				cfg.OpTimeout = d
			} else if cfg.LeaseTTL = d; d < minLeaseTTL {
				return bad("lease_ttl=%q: at least %v", v, minLeaseTTL)
			}
		default:
			return bad("unknown option %q (known: tls, ca, cert, key, lease_ttl, timeout)", k)
		}
	}
	if (files.cert == "") != (files.key == "") {
		return bad("cert and key go together")
	}
	return cfg, files, nil
}

// cleanPrefix checks the URL path after the hosts ("app1", "flash/app1/").
func cleanPrefix(path string) (string, error) {
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return "", nil
	}
	var b strings.Builder
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("prefix %q has an empty, . or .. segment", path)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				return "", fmt.Errorf("prefix %q: %q is not allowed (letters, digits, '.', '_', '-' and '/' are)", path, r)
			}
		}
		b.WriteString("/" + seg)
	}
	return b.String(), nil
}

// redact hides a password in u for error messages.
func redact(u string) string {
	at := strings.LastIndexByte(u, '@')
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	if c := strings.IndexByte(u[scheme+3:at], ':'); c >= 0 {
		return u[:scheme+3+c+1] + "xxxxx" + u[at:]
	}
	return u
}

// applyEnv fills what the URL left out from FLASH_ETCD_* variables.
func (c *Config) applyEnv(getenv func(string) string) error {
	if c.Username == "" {
		c.Username, c.Password = getenv("FLASH_ETCD_USER"), getenv("FLASH_ETCD_PASSWORD")
	} else if c.Password == "" {
		c.Password = getenv("FLASH_ETCD_PASSWORD")
	}
	files := tlsFiles{getenv("FLASH_ETCD_CA"), getenv("FLASH_ETCD_CERT"), getenv("FLASH_ETCD_KEY")}
	if files == (tlsFiles{}) {
		return nil
	}
	if c.TLS != nil && (c.TLS.RootCAs != nil || len(c.TLS.Certificates) > 0) {
		return nil // the URL named its own files
	}
	if (files.cert == "") != (files.key == "") {
		return errors.New("store/etcd: FLASH_ETCD_CERT and FLASH_ETCD_KEY go together")
	}
	var err error
	c.TLS, err = loadTLS(files)
	return err
}

// loadTLS builds a client TLS config from PEM files; empty names are skipped.
func loadTLS(f tlsFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("reading CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", f.ca)
		}
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
