// Package server runs one keyhole node (`keyhole serve`, SPEC §2): it reads
// the configuration from flags and environment, opens the store and the
// vault, builds the snapshot, starts the audit writer, the gateway and the
// admin listener, and shuts them down in order.
package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Config is a node's configuration. Each field's flag and environment
// variable are named in Bind; flags win over the environment.
type Config struct {
	Listen          string
	AdminListen     string
	Store           string
	MasterKeyFile   string
	DataDir         string
	NodeID          string
	AuditDurability string
	AuditFailure    string
	AuditRetention  string
	ShutdownTimeout time.Duration
	AllowCIDRs      []string
	HostSuffix      string
	ForwardListen   string
	LogLevel        string
	LogFormat       string
	SQLiteSync      string
	// Several nodes (cluster.go): Redis for shared rate limits and
	// quotas; how configuration changes of other nodes arrive.
	Redis          string
	ConfigPoll     time.Duration // 0: 500ms
	ConfigPollOnly bool          // no LISTEN: the poll alone

	envErr error // an environment variable that did not parse
}

// Defaults (SPEC §2).
const (
	DefaultListen      = "127.0.0.1:8080"
	DefaultAdminListen = "127.0.0.1:8081"
	DefaultStore       = "sqlite://./keyhole-data/keyhole.db"
)

// Bind registers the serve flags, each defaulting to its environment
// variable when set.
func (c *Config) Bind(fs *pflag.FlagSet) {
	str := func(p *string, name, env, def, usage string) {
		if v := os.Getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	str(&c.Listen, "listen", "KEYHOLE_LISTEN", DefaultListen, "gateway listener for agents, host:port")
	str(&c.AdminListen, "admin-listen", "KEYHOLE_ADMIN_LISTEN", DefaultAdminListen, "admin listener (admin API, dashboard, /metrics), host:port; agent tokens are never accepted there")
	str(&c.Store, "store", "KEYHOLE_STORE", DefaultStore, "store: sqlite://PATH (embedded; sqlite:///abs/path.db for an absolute path) or postgres://… (several nodes)")
	str(&c.MasterKeyFile, "master-key-file", "KEYHOLE_MASTER_KEY_FILE", "", "file holding the master key (base64 of 32 bytes); or set KEYHOLE_MASTER_KEY. Without either, an embedded store generates one into the data folder")
	str(&c.DataDir, "data-dir", "KEYHOLE_DATA_DIR", "", "data folder for the generated master key, admin-token, node-id and audit checkpoint (default: the SQLite file's folder, or ./keyhole-data)")
	str(&c.NodeID, "node-id", "KEYHOLE_NODE_ID", "", "this node's name in the audit log (default: generated once and kept in the data folder)")
	str(&c.AuditDurability, "audit-durability", "KEYHOLE_AUDIT_DURABILITY", "sync", "sync: a request is forwarded only after its record is committed; async: records are written behind (a crash can lose the last ones)")
	str(&c.AuditFailure, "audit-failure", "KEYHOLE_AUDIT_FAILURE", "closed", "closed: requests get 503 while records cannot be committed; open: requests proceed and records wait in memory for the store")
	str(&c.AuditRetention, "audit-retention", "KEYHOLE_AUDIT_RETENTION", "", "delete this node's audit records older than this (e.g. 90d or 720h: a Go duration, or days with d), at start and then every hour; the chain records each cut (default: keep all)")
	str(&c.ForwardListen, "forward-listen", "KEYHOLE_FORWARD_LISTEN", "", "forward-proxy listener, host:port such as 127.0.0.1:8443 (default off): agents set HTTPS_PROXY=http://kh:TOKEN@host:port and trust keyhole's CA (keyhole ca export); keyhole terminates TLS only for hosts of proxies in the token's scope")
	str(&c.HostSuffix, "host-suffix", "KEYHOLE_HOST_SUFFIX", "", "route by Host: {proxy}SUFFIX goes to that proxy with its whole path (e.g. .gw.example.com)")
	str(&c.LogLevel, "log-level", "KEYHOLE_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "KEYHOLE_LOG_FORMAT", "text", "text or json")
	str(&c.SQLiteSync, "sqlite-synchronous", "KEYHOLE_SQLITE_SYNCHRONOUS", "NORMAL", "embedded store durability: NORMAL (commits survive a crash of keyhole) or FULL (also a power loss; an fsync per commit)")
	st := 10 * time.Second
	if v := os.Getenv("KEYHOLE_SHUTDOWN_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			st = d
		} else {
			c.envErr = fmt.Errorf("KEYHOLE_SHUTDOWN_TIMEOUT %q is not a duration such as 10s", v)
		}
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", st, "how long in-flight requests may take to finish on SIGTERM (env KEYHOLE_SHUTDOWN_TIMEOUT)")
	str(&c.Redis, "redis", "KEYHOLE_REDIS", "", "redis://HOST:PORT/DB: share rate limits and quotas across nodes (without it each node counts only its own traffic); requests under a limit or quota are refused while Redis is unreachable")
	poll, pollOnly := 500*time.Millisecond, false
	if v := os.Getenv("KEYHOLE_CONFIG_POLL"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			poll = d
		} else {
			c.envErr = fmt.Errorf("KEYHOLE_CONFIG_POLL %q is not a duration such as 500ms", v)
		}
	}
	if v := os.Getenv("KEYHOLE_CONFIG_POLL_ONLY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			c.envErr = fmt.Errorf("KEYHOLE_CONFIG_POLL_ONLY %q is not true or false", v)
		}
		pollOnly = b
	}
	fs.DurationVar(&c.ConfigPoll, "config-poll", poll, "PostgreSQL store: how often to check for configuration changes made on other nodes; the bound when a notification is lost (env KEYHOLE_CONFIG_POLL)")
	fs.BoolVar(&c.ConfigPollOnly, "config-poll-only", pollOnly, "PostgreSQL store: do not LISTEN for configuration changes, rely on the poll (e.g. behind a pooler in transaction mode, which does not carry notifications) (env KEYHOLE_CONFIG_POLL_ONLY)")
	var cidrs []string
	if v := os.Getenv("KEYHOLE_ALLOW_UPSTREAM_CIDR"); v != "" {
		cidrs = strings.Split(v, ",")
	}
	fs.StringSliceVar(&c.AllowCIDRs, "allow-upstream-cidr", cidrs, "let upstreams in this CIDR range through the SSRF guard (repeatable; e.g. 10.1.0.0/16; tests use 127.0.0.0/8) (env KEYHOLE_ALLOW_UPSTREAM_CIDR, comma-separated)")
}

// Validate checks the configuration and fills derived values.
func (c *Config) Validate() error {
	if c.envErr != nil {
		return c.envErr
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	switch c.AuditDurability {
	case "sync", "async":
	default:
		return fmt.Errorf("--audit-durability must be sync or async, not %q", c.AuditDurability)
	}
	switch c.AuditFailure {
	case "closed", "open":
	default:
		return fmt.Errorf("--audit-failure must be closed or open, not %q", c.AuditFailure)
	}
	if c.AuditRetention != "" {
		if _, err := ParseRetention(c.AuditRetention); err != nil {
			return err
		}
	}
	if err := c.validateShared(); err != nil {
		return err
	}
	if c.ShutdownTimeout < 0 {
		return errors.New("--shutdown-timeout must not be negative")
	}
	if c.HostSuffix != "" {
		c.HostSuffix = strings.ToLower(c.HostSuffix)
		if !strings.HasPrefix(c.HostSuffix, ".") {
			c.HostSuffix = "." + c.HostSuffix
		}
	}
	if c.DataDir == "" {
		if strings.HasPrefix(c.Store, "sqlite://") {
			p := strings.TrimPrefix(c.Store, "sqlite://")
			c.DataDir = filepath.Dir(p)
		} else {
			c.DataDir = "./keyhole-data"
		}
	}
	if c.Listen == c.AdminListen {
		return errors.New("--listen and --admin-listen must differ: agents' tokens are never accepted on the admin listener")
	}
	if c.ForwardListen != "" && (c.ForwardListen == c.Listen || c.ForwardListen == c.AdminListen) {
		return errors.New("--forward-listen must differ from --listen and --admin-listen")
	}
	return nil
}

// ParseRetention reads a Go duration or a number of days ("90d").
func ParseRetention(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--audit-retention %q is not a duration: use e.g. 90d or 720h", s)
}
