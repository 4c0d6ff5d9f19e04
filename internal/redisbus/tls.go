package redisbus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// TLSFiles are PEM files for TLS to Redis: the CA that signed the server's
// certificate, and the client's certificate and key for mutual TLS.
type TLSFiles struct {
	CA, Cert, Key string
}

func (f *TLSFiles) empty() bool { return f.CA == "" && f.Cert == "" && f.Key == "" }

// config returns a TLS configuration that verifies the server at addr
// against CA (the system's roots when CA is empty) and presents Cert.
func (f *TLSFiles) config(addr string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.CA)
		}
		cfg.RootCAs = pool
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// CheckURL returns the error Open would give for the URL raw, without
// connecting: nil for a URL it accepts.
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

// parseURL reads a Redis URL with go-redis's rules, but refuses to turn off
// certificate verification, and never repeats the URL (it may hold a
// password) in an error.
func parseURL(raw string) (*redis.Options, error) {
	if !strings.HasPrefix(raw, "redis://") && !strings.HasPrefix(raw, "rediss://") && !strings.HasPrefix(raw, "unix://") {
		return nil, fmt.Errorf("--redis %s: want redis://[user:password@]host:port[/db] or rediss://… for TLS", Redact(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--redis %s: not a URL", Redact(raw))
	}
	if u.Query().Has("skip_verify") {
		return nil, fmt.Errorf("--redis %s: skip_verify is refused: it turns off the server's certificate check; give the server's CA with --tls-ca instead", Redact(raw))
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("--redis %s: %s", Redact(raw), strings.TrimPrefix(err.Error(), "redis: "))
	}
	return opt, nil
}

// Redact hides the password of a Redis URL.
func Redact(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || scheme > at {
		return u
	}
	userinfo := u[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return u[:scheme+3] + user + ":…@" + u[at+1:]
	}
	return u
}
