package redisbus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/picluster/picluster/internal/backoff"
)

// A permanent cause is one no retry can fix: the command must end and say
// what to change. Each has the words that recognise it in go-redis's error
// and the advice given.
var permanentReplies = []struct{ word, advice string }{
	{"WRONGPASS", "Redis refused the user or password: check user:password in --redis or REDIS_URL"},
	{"NOAUTH", "Redis wants a password: give redis://user:password@host:port in --redis or REDIS_URL"},
	{"NOPERM", "the Redis user lacks a permission picluster needs: load the rules of `picluster acl`"},
	{"DB index is out of range", "Redis has no such database: check the /db number in --redis or REDIS_URL"},
	{"invalid DB index", "Redis has no such database: check the /db number in --redis or REDIS_URL"},
	{"without any password configured", "Redis has no password set: remove user:password from --redis or REDIS_URL"},
	// An XADD with the largest explicit ID (which a worker user can send:
	// ACLs cannot restrict a command's options) leaves no ID for any entry.
	{"exhausted the last possible ID", "this worker's stream of the ledger takes no more entries (its last ID is the largest possible): run the worker under another --id, or reset the job with collector --reset"},
}

// classify marks err permanent (backoff.Permanent) when no retry can fix
// it, prefixed with what to change; any other error, such as a refused or
// reset connection or a timeout, is returned as it is, to be retried.
func classify(err error) error {
	if err == nil || backoff.IsPermanent(err) {
		return err
	}
	if advice := permanentAdvice(err); advice != "" {
		return backoff.Permanent(fmt.Errorf("%s: %w", advice, err))
	}
	return err
}

// permanentAdvice returns what to change for a permanent error, "" for a
// transient one.
func permanentAdvice(err error) string {
	if mm, ok := errors.AsType[*modeMismatch](err); ok {
		return mm.advice
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return "the Redis host name does not resolve: check the host in --redis or REDIS_URL"
	}
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		alert    tls.AlertError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return "Redis's TLS certificate failed verification: check --tls-ca and the host name in the URL"
	case errors.As(err, &alert):
		return "Redis refused the TLS handshake: check --tls-cert and --tls-key"
	}
	msg := err.Error()
	for _, p := range permanentReplies {
		if strings.Contains(msg, p.word) {
			return p.advice
		}
	}
	return ""
}
