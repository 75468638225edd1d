package server

// Several nodes (SPEC §10): the PostgreSQL store, the watcher that brings
// other nodes' configuration changes into this node's snapshot
// (LISTEN/NOTIFY and a version poll), rate limits and quotas shared through
// Redis (--redis), and the lock that makes one node at a time spend an
// OAuth refresh token. serve.go calls openPostgres, openShared,
// startShared and closeShared; everything else is here.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyhole-gw/keyhole/internal/cluster"
	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/redislimit"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/store/postgres"
)

// shared is what a node holds for the others.
type shared struct {
	pg      *postgres.Store
	redis   *redislimit.Redis
	watcher *cluster.Watcher
}

func (n *Node) openPostgres(ctx context.Context) (*postgres.Store, error) {
	st, err := postgres.Open(ctx, n.cfg.Store, postgres.Options{Logger: n.log})
	if err != nil {
		return nil, err
	}
	if n.sh == nil {
		n.sh = &shared{}
	}
	n.sh.pg = st
	return st, nil
}

// openShared returns the rate-limit state and the OAuth options for the
// catalog: with --redis, limits shared by every node; on PostgreSQL, the
// refresh-token lock.
func (n *Node) openShared(ctx context.Context) (*rules.Limits, inject.OAuthOptions, error) {
	if n.sh == nil {
		n.sh = &shared{}
	}
	limits := rules.NewLimits()
	var oauth inject.OAuthOptions
	if pg := n.sh.pg; pg != nil {
		oauth.Lock = func(ctx context.Context, secret string) (func(), error) {
			return pg.Lock(ctx, "oauth-refresh/"+secret)
		}
		changes := fmt.Sprintf("LISTEN/NOTIFY, and a version poll every %v", n.cfg.ConfigPoll)
		if n.cfg.ConfigPollOnly {
			changes = fmt.Sprintf("a version poll every %v (--config-poll-only)", n.cfg.ConfigPoll)
		}
		n.notices = append(n.notices, "several nodes: PostgreSQL schema "+pg.Schema()+"; changes from other nodes by "+changes)
	}
	if n.cfg.Redis == "" {
		if n.sh.pg != nil {
			n.notices = append(n.notices, "rate limits and quotas: counted per node (set --redis to share them across nodes)")
		}
		return limits, oauth, nil
	}
	qs, _ := n.st.(quota.Store) // the counters survive a Redis restart
	r, err := redislimit.New(ctx, redislimit.Options{URL: n.cfg.Redis, Store: qs, Logger: n.log, Registerer: n.m.Registry})
	if err != nil {
		return nil, oauth, err
	}
	n.sh.redis = r
	limits.Shared = r
	state := "reachable"
	if !r.Up() {
		state = "NOT reachable: requests under a rate limit or quota are refused until it is"
	}
	n.notices = append(n.notices, "rate limits and quotas: shared through Redis "+redislimit.RedactURL(n.cfg.Redis)+" ("+state+")")
	return limits, oauth, nil
}

// startShared starts what needs the catalog and the quota tracker: the
// watcher of configuration changes, and quotas kept in Redis.
func (n *Node) startShared() {
	if n.sh == nil {
		return
	}
	if n.sh.redis != nil {
		n.quotas.Shared = n.sh.redis
	}
	pg := n.sh.pg
	if pg == nil {
		return
	}
	o := cluster.Options{Channel: pg.Channel(), Poll: n.cfg.ConfigPoll, Logger: n.log, Registerer: n.m.Registry,
		Current: func() int64 { return n.cat.Load().Version },
		Reload:  n.cat.ReloadIfChanged}
	if !n.cfg.ConfigPollOnly {
		o.Connect = func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, pg.ConnConfig()) }
	}
	n.sh.watcher = cluster.Start(o)
}

// closeShared stops the watcher (before the store closes) and Redis
// (after the quota tracker, whose last counters it saves).
func (n *Node) closeShared() {
	if n.sh == nil {
		return
	}
	if n.sh.watcher != nil {
		n.sh.watcher.Close()
	}
	if n.sh.redis != nil {
		n.sh.redis.Close()
	}
}

// validateShared checks the several-node flags (Config.Validate).
func (c *Config) validateShared() error {
	if c.ConfigPoll == 0 {
		c.ConfigPoll = cluster.DefaultPoll
	}
	if c.ConfigPoll < 10*time.Millisecond {
		return fmt.Errorf("--config-poll must be at least 10ms, not %v", c.ConfigPoll)
	}
	if c.Redis != "" && !strings.HasPrefix(c.Redis, "redis://") && !strings.HasPrefix(c.Redis, "rediss://") {
		return fmt.Errorf("--redis %q: use redis://HOST:PORT/DB (or rediss:// for TLS)", redislimit.RedactURL(c.Redis))
	}
	return nil
}
