package redisbus

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/redistest"
)

// The URL forms: the mode, the servers and the credentials each gives, and
// errors that never repeat a password.
func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		url   string
		mode  Mode
		addrs []string
		user  string // user:password of the data nodes
		sent  string // user:password of the sentinels
		tls   bool
		err   string // in the error, when the URL is refused
	}{
		{url: "redis://u:pw@h:6380/2", mode: Single, addrs: []string{"h:6380"}, user: "u:pw"},
		{url: "rediss://h", mode: Single, addrs: []string{"h:6379"}, tls: true},
		{url: "redis+cluster://u:pw@h1:7000,h2:7001,[::1]:7002", mode: Cluster, addrs: []string{"h1:7000", "h2:7001", "[::1]:7002"}, user: "u:pw"},
		{url: "rediss+cluster://h1,h2", mode: Cluster, addrs: []string{"h1:6379", "h2:6379"}, tls: true},
		{url: "redis+cluster://h1:7000/0?dial_timeout=3", mode: Cluster, addrs: []string{"h1:7000"}},
		{url: "redis+sentinel://u:pw@s1:5000,s2/mymaster/3", mode: Sentinel, addrs: []string{"s1:5000", "s2:26379"}, user: "u:pw"},
		{url: "rediss+sentinel://s1/m?sentinel_username=su&sentinel_password=spw", mode: Sentinel, addrs: []string{"s1:26379"}, sent: "su:spw", tls: true},
		{url: "redis+cluster://u:pw@h1:7000/3", err: "only database 0"},
		{url: "redis+cluster://u:pw@h1:7000?skip_verify=true", err: "skip_verify is refused"},
		{url: "rediss+sentinel://u:pw@s1/m?skip_verify=true", err: "skip_verify is refused"},
		{url: "redis+cluster://u:pw@h1:7000?bogus=1", err: "unexpected option"},
		{url: "redis+cluster://u:pw@h1:7000,,h2", err: "empty host"},
		{url: "redis+sentinel://u:pw@s1:26379", err: "master's name"},
		{url: "redis+sentinel://u:pw@s1:26379/m/x/y", err: "master's name"},
		{url: "redis+ring://u:pw@h", err: "redis+cluster://"},
		{url: "unix+cluster://u:pw@h", err: "redis+cluster://"},
		{url: "http://u:pw@h", err: "redis+sentinel://"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			got, err := parseURL(tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one that says %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			var user, sent string
			var tls bool
			switch got.mode {
			case Single:
				addrs, user, tls = []string{got.single.Addr}, got.single.Username+":"+got.single.Password, got.single.TLSConfig != nil
			case Cluster:
				addrs, user, tls = got.cluster.Addrs, got.cluster.Username+":"+got.cluster.Password, got.cluster.TLSConfig != nil
			case Sentinel:
				o := got.failover
				addrs, user, tls = o.SentinelAddrs, o.Username+":"+o.Password, o.TLSConfig != nil
				sent = o.SentinelUsername + ":" + o.SentinelPassword
			}
			if tt.user == "" {
				tt.user = ":"
			}
			if tt.sent == "" && got.mode == Sentinel {
				tt.sent = ":"
			}
			if got.mode != tt.mode || !slices.Equal(addrs, tt.addrs) || user != tt.user || sent != tt.sent || tls != tt.tls {
				t.Fatalf("mode %v, addrs %v, user %q, sentinel user %q, tls %v; want %v, %v, %q, %q, %v",
					got.mode, addrs, user, sent, tls, tt.mode, tt.addrs, tt.user, tt.sent, tt.tls)
			}
			if got.mode == Sentinel && (got.failover.MasterName == "" || got.failover.MasterName == "mymaster" && got.failover.DB != 3) {
				t.Fatalf("master %q db %d", got.failover.MasterName, got.failover.DB)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"redis://u:pw@h:1", "redis://u:…@h:1"},
		{"redis+cluster://u:pw@h1:1,h2:2", "redis+cluster://u:…@h1:1,h2:2"},
		{"redis+sentinel://u:pw@s1,s2/m?sentinel_password=spw&db=1", "redis+sentinel://u:…@s1,s2/m?sentinel_password=…&db=1"},
		{"redis://h:1", "redis://h:1"},
	} {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The TLS flags apply to every form: each server, and each sentinel, is
// dialled with the CA and the client certificate, and verified by the host
// it is dialled at.
func TestTLSFilesApplyToEveryForm(t *testing.T) {
	files := redistest.NewTLS(t)
	cert, key := files.ClientFiles()
	for _, url := range []string{"redis://h:1", "redis+cluster://h1,h2", "redis+sentinel://s1/m"} {
		tgt, err := parseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newClient(tgt, &TLSFiles{CA: "/no/such/ca.pem"}); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
			t.Errorf("%s with --tls-ca of a missing file: %v; want the file's error", url, err)
		}
		c, err := newClient(tgt, &TLSFiles{CA: files.CA, Cert: cert, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		cfg := tlsOf(c)
		c.Close()
		if cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
			t.Errorf("%s: TLS %+v, want the CA and the client certificate", url, cfg)
		}
		if tgt.mode != Single && cfg != nil && cfg.ServerName != "" {
			t.Errorf("%s: every server verified as %q", url, cfg.ServerName)
		}
	}
}

// What a failover answers meanwhile is transient in the modes that fail
// over; a MOVED to a redis:// client means it talks to a cluster node.
func TestFailoverRepliesAreTransient(t *testing.T) {
	for _, reply := range []string{"MOVED 866 127.0.0.1:7001", "ASK 866 127.0.0.1:7001", "TRYAGAIN Multiple keys request during rehashing of slot",
		"CLUSTERDOWN The cluster is down", "READONLY You can't write against a read only replica.", "LOADING Redis is loading the dataset in memory",
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."} {
		for _, mode := range []Mode{Cluster, Sentinel} {
			err := errors.New(reply)
			if strings.HasPrefix(reply, "MOVED") || strings.HasPrefix(reply, "ASK") {
				if mode != Cluster {
					continue
				}
			}
			if m := (modeHook{mode: mode}).mismatch(err); m != nil {
				err = m
			}
			if err := classify(err); backoff.IsPermanent(err) {
				t.Errorf("%v: %q is permanent: %v", mode, reply, err)
			}
		}
	}
	err := classify((modeHook{mode: Single}).mismatch(errors.New("MOVED 866 127.0.0.1:7001")))
	if !backoff.IsPermanent(err) || !strings.Contains(err.Error(), "redis+cluster://") {
		t.Errorf("MOVED to redis://: %v, want permanent, naming redis+cluster://", err)
	}
}

// A rediss:// URL without TLS files keeps the TLS its scheme asks for.
func TestRedissWithoutFilesKeepsTLS(t *testing.T) {
	for _, url := range []string{"rediss://h:1", "rediss+cluster://h1,h2"} {
		tgt, err := parseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		for _, files := range []*TLSFiles{nil, {}} {
			c, err := newClient(tgt, files)
			if err != nil {
				t.Fatal(err)
			}
			cfg := tlsOf(c)
			c.Close()
			if cfg == nil {
				t.Errorf("%s with TLS files %v: no TLS", url, files)
			}
		}
	}
}

// tlsOf returns the TLS configuration of a single or cluster client (a
// failover client is a *redis.Client too).
func tlsOf(c redis.UniversalClient) *tls.Config {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.Options().TLSConfig
	case *redis.Client:
		return c.Options().TLSConfig
	}
	return nil
}
