package redisbus

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Mode is how the Bus reaches Redis, chosen by the URL's scheme.
type Mode int

const (
	// Single is one Redis server: redis://, rediss://, unix://.
	Single Mode = iota
	// Cluster is a Redis Cluster: redis+cluster://, rediss+cluster://.
	// Pub/sub is sharded (SPUBLISH, SSUBSCRIBE).
	Cluster
	// Sentinel is a master found through Redis Sentinel:
	// redis+sentinel://, rediss+sentinel://.
	Sentinel
)

func (m Mode) String() string {
	switch m {
	case Cluster:
		return "cluster"
	case Sentinel:
		return "sentinel"
	}
	return "single"
}

// URLForms is what a --redis URL may be, for help texts and errors.
const URLForms = "redis://[user:password@]host:port[/db], " +
	"redis+cluster://[user:password@]host:port[,host:port…] or " +
	"redis+sentinel://[user:password@]host:port[,host:port…]/master[/db]; rediss… for TLS"

// target is a parsed URL: the mode and go-redis's options for it.
type target struct {
	mode     Mode
	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
	tls      bool // a rediss… scheme
}

// CheckURL returns the error Open would give for the URL raw, without
// connecting: nil for a URL it accepts.
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

// ModeOf returns the mode of a URL that CheckURL accepts.
func ModeOf(raw string) Mode {
	t, _ := parseURL(raw)
	return t.mode
}

// parseURL reads a Redis URL: go-redis's rules for one server, and
// picluster's cluster and sentinel forms (README: "Redis Cluster and
// Sentinel"). It refuses to turn off certificate verification, and never
// repeats the URL (it may hold a password) in an error.
func parseURL(raw string) (target, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	bad := func(format string, a ...any) (target, error) {
		return target{}, fmt.Errorf("--redis %s: %s", Redact(raw), fmt.Sprintf(format, a...))
	}
	base, kind, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" && base != "unix" || base == "unix" && kind != "" ||
		kind != "" && kind != "cluster" && kind != "sentinel" {
		return bad("want %s", URLForms)
	}
	if _, q, ok := strings.Cut(rest, "?"); ok {
		if v, err := url.ParseQuery(q); err != nil {
			return bad("not a URL")
		} else if v.Has("skip_verify") {
			return bad("skip_verify is refused: it turns off the server's certificate check; give the server's CA with --tls-ca instead")
		}
	}
	t := target{tls: base == "rediss"}
	switch kind {
	case "":
		if _, err := url.Parse(raw); err != nil {
			return bad("not a URL")
		}
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return bad("%s", strings.TrimPrefix(err.Error(), "redis: "))
		}
		t.single = opt
	case "cluster":
		u, err := splitMulti(rest, "6379")
		if err != nil {
			return bad("%v", err)
		}
		if p := strings.Trim(u.path, "/"); p != "" && p != "0" {
			return bad("a cluster has only database 0: remove /%s", p)
		}
		q := u.query
		for _, a := range u.addrs[1:] {
			q.Add("addr", a)
		}
		opt, err := redis.ParseClusterURL((&url.URL{Scheme: base, User: u.user, Host: u.addrs[0], RawQuery: q.Encode()}).String())
		if err != nil {
			return bad("%s", strings.TrimPrefix(err.Error(), "redis: "))
		}
		t.mode, t.cluster = Cluster, opt
	case "sentinel":
		u, err := splitMulti(rest, "26379")
		if err != nil {
			return bad("%v", err)
		}
		parts := strings.Split(strings.Trim(u.path, "/"), "/")
		if parts[0] == "" || len(parts) > 2 {
			return bad("want the master's name after the sentinels: redis+sentinel://host:port,…/mymaster[/db]")
		}
		q := u.query
		sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
		q.Del("sentinel_username")
		q.Del("sentinel_password")
		q.Set("master_name", parts[0])
		if len(parts) == 2 {
			q.Set("db", parts[1])
		}
		for _, a := range u.addrs[1:] {
			q.Add("addr", a)
		}
		opt, err := redis.ParseFailoverURL((&url.URL{Scheme: base, Host: u.addrs[0], RawQuery: q.Encode()}).String())
		if err != nil {
			return bad("%s", strings.TrimPrefix(err.Error(), "redis: "))
		}
		if u.user != nil {
			opt.Username = u.user.Username()
			opt.Password, _ = u.user.Password()
		}
		opt.SentinelUsername, opt.SentinelPassword = sentinelUser, sentinelPass
		t.mode, t.failover = Sentinel, opt
	}
	if t.tls { // verify each node by the host it is dialled at (tls.Dial fills ServerName in)
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		switch t.mode {
		case Cluster:
			t.cluster.TLSConfig = tc
		case Sentinel:
			t.failover.TLSConfig = tc
		}
	}
	return t, nil
}

// multi is the parts of a URL that names several hosts.
type multi struct {
	user  *url.Userinfo
	addrs []string
	path  string
	query url.Values
}

// splitMulti splits what follows scheme:// in a URL that names several
// hosts, "[user:password@]host[:port][,host[:port]…][/path][?query]"
// (net/url takes one host only); a host without a port gets port.
func splitMulti(rest, port string) (multi, error) {
	var m multi
	rest, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return m, fmt.Errorf("bad query: %w", err)
	}
	m.query = q
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		u, err := url.Parse("x://" + rest[:at] + "@h")
		if err != nil {
			return m, fmt.Errorf("bad user or password (escape reserved characters as %%XX)")
		}
		m.user, rest = u.User, rest[at+1:]
	}
	hosts, path, _ := strings.Cut(rest, "/")
	m.path = path
	for h := range strings.SplitSeq(hosts, ",") {
		if h == "" {
			return m, fmt.Errorf("an empty host in the list")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), port)
		}
		hh, p, err := net.SplitHostPort(h)
		if err != nil || hh == "" || p == "" {
			return m, fmt.Errorf("bad host %q", h)
		}
		m.addrs = append(m.addrs, h)
	}
	return m, nil
}

// Redact hides the passwords of a Redis URL: the user's, and
// sentinel_password in the query.
func Redact(u string) string {
	if base, query, ok := strings.Cut(u, "?"); ok {
		params := strings.Split(query, "&")
		for i, p := range params {
			if k, _, ok := strings.Cut(p, "="); ok && strings.Contains(strings.ToLower(k), "password") {
				params[i] = k + "=…"
			}
		}
		return Redact(base) + "?" + strings.Join(params, "&")
	}
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
