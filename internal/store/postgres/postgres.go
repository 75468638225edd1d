// Package postgres is keyhole's shared store (SPEC §2 `--store postgres://…`,
// §10): any number of nodes on one PostgreSQL database (pgx/v5), with its
// migrations embedded.
//
// What it adds to the store contract for several nodes:
//
//   - every configuration write increments config_version and sends
//     pg_notify(Channel(), version) in its own transaction, so the
//     notification is delivered at commit and never for a write that rolled
//     back (internal/cluster listens and polls);
//   - each node's audit chain is appended in one round trip per batch
//     (multi-row inserts over arrays, run as one implicit transaction), and
//     a batch whose commit outcome is unknown (the connection died after the
//     batch was sent) is undone by the next batch if it did land, so that
//     AppendAudit's "error means nothing was written" holds as on SQLite
//     (see audit.go);
//   - Lock: a session-level advisory lock, so that one node at a time
//     spends an OAuth refresh token (inject.OAuthOptions.Lock).
//
// The tables live in the connection's current schema: the first schema of
// search_path (?search_path=keyhole in the URL), created if it is missing.
package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/keyhole-gw/keyhole/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	pool *pgxpool.Pool
	// locks is a small pool of its own for advisory locks: a node waiting
	// for a lock holds a connection, and must never take one the audit
	// writer needs.
	locks   *pgxpool.Pool
	schema  string
	channel string
	log     *slog.Logger

	// doubts are audit batches whose commit outcome is unknown (audit.go).
	dmu      sync.Mutex
	doubts   []doubt
	doubtSeq int64
	// afterAppend, when set (tests), runs after a batch was sent and
	// replaces its result: it simulates a connection lost after commit.
	afterAppend func(err error) error
}

var _ store.Store = (*Store)(nil)

// Options tune the store.
type Options struct {
	// MaxConns bounds the connection pool when the URL does not
	// (pool_max_conns); default 16.
	MaxConns int32
	Logger   *slog.Logger
}

// IsURL reports whether s names a PostgreSQL store.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects, creates the schema if needed and migrates it. Nodes that
// start together migrate one at a time (an advisory lock per schema).
func Open(ctx context.Context, url string, opt Options) (*Store, error) {
	if !IsURL(url) {
		return nil, fmt.Errorf("store %q: a PostgreSQL store is postgres://USER:PASSWORD@HOST:PORT/DATABASE", Redact(url))
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", Redact(url), err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = 16
		if opt.MaxConns > 0 {
			cfg.MaxConns = opt.MaxConns
		}
	}
	tune(cfg.ConnConfig, url)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", Redact(url), err)
	}
	lcfg := cfg.Copy()
	lcfg.MaxConns, lcfg.MinConns = 8, 0
	locks, err := pgxpool.NewWithConfig(ctx, lcfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, locks: locks, log: opt.Logger}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store %s: %w", Redact(url), err)
	}
	s.channel = channelName(s.schema)
	return s, nil
}

// tune sets what the URL leaves out: a connect timeout (an audit commit
// during an outage fails in seconds, not minutes) and TCP keepalives that
// notice a dead server or network path in about half a minute (the
// listener connection waits on a silent socket for as long as no change
// is made).
//
// It also plans every statement for its parameters (plan_cache_mode =
// force_custom_plan) unless the URL says otherwise. The audit tables start
// empty and grow by the thousand a second: a generic plan cached while they
// were small (a sequential scan of audit_records to apply each batch's
// ends) stays in use while the table grows, until an autovacuum ANALYZE
// happens to invalidate it. Measured on the CI machine (a node started on
// an empty database, 8 s at 50 connections, then 300 requests/s): 2,900
// requests/s and a p50 of 28 ms afterwards with cached generic plans,
// 3,360 requests/s and 2.9 ms with custom plans. Planning a statement
// costs tens of microseconds.
func tune(c *pgx.ConnConfig, url string) {
	if !strings.Contains(url, "connect_timeout") {
		c.ConnectTimeout = 5 * time.Second
	}
	if _, ok := c.RuntimeParams["plan_cache_mode"]; !ok {
		c.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 4}}
	if c.ConnectTimeout > 0 {
		d.Timeout = c.ConnectTimeout
	}
	c.DialFunc = d.DialContext
}

// channelName is the LISTEN/NOTIFY channel of a schema's configuration
// changes. Channels are per database, not per schema: two installations in
// two schemas of one database must not wake each other.
func channelName(schema string) string {
	c := "keyhole_config." + schema
	if len(c) > 63 { // NAMEDATALEN - 1
		h := sha256.Sum256([]byte(schema))
		c = "keyhole_config." + hex.EncodeToString(h[:12])
	}
	return c
}

func (s *Store) migrate(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	defer c.Release()
	var schema *string
	if err := c.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	if schema == nil {
		// search_path names a schema that does not exist yet.
		var sp string
		if err := c.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&sp); err != nil {
			return err
		}
		first := strings.Trim(strings.TrimSpace(strings.Split(sp, ",")[0]), `"`)
		if first == "" || strings.HasPrefix(first, "$") {
			return fmt.Errorf("no schema to create the tables in (search_path is %q)", sp)
		}
		if _, err := c.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{first}.Sanitize()); err != nil {
			return fmt.Errorf("schema %q does not exist and cannot be created: %w", first, err)
		}
		if err := c.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil || schema == nil {
			return fmt.Errorf("schema %q: %v", first, err)
		}
	}
	s.schema = *schema
	// One node migrates at a time; the others wait, then find nothing to do.
	key := "keyhole/migrate/" + s.schema
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, key); err != nil {
		return fmt.Errorf("cannot take the migration lock: %w", err)
	}
	defer c.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key)
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("cannot migrate schema %s: %w", s.schema, err)
	}
	return nil
}

// Close closes the pools.
func (s *Store) Close() error {
	s.pool.Close()
	s.locks.Close()
	return nil
}

// Schema is the schema the tables are in.
func (s *Store) Schema() string { return s.schema }

// Channel is the LISTEN/NOTIFY channel of configuration changes: each
// notification's payload is the new configuration version, in decimal.
func (s *Store) Channel() string { return s.channel }

// ConnConfig is a copy of the connection settings, for a listener's own
// connection (internal/cluster).
func (s *Store) ConnConfig() *pgx.ConnConfig { return s.pool.Config().ConnConfig.Copy() }

// Ping checks that the database answers and takes writes (readiness: an
// audit store that cannot take records is not ready). It writes nothing:
// a standby, or a session forced read-only, is what refuses writes while
// answering reads.
func (s *Store) Ping(ctx context.Context) error {
	var recovery bool
	var ro string
	if err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_read_only')`).Scan(&recovery, &ro); err != nil {
		return err
	}
	if recovery || ro == "on" {
		return errors.New("the database is read-only (a standby, or default_transaction_read_only)")
	}
	return nil
}

// Lock takes the advisory lock named key, waiting for it (bounded by ctx),
// on a connection of its own that it holds until unlock. The lock is the
// session's: if the node dies or its connection drops, PostgreSQL
// releases it.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	c, err := s.locks.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	k := "keyhole/" + s.schema + "/" + key
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, k); err != nil {
		// A cancelled wait leaves the connection in doubt: close it, so a
		// lock granted at the last moment goes with the session.
		c.Conn().Close(context.Background())
		c.Release()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var ok bool
			if err := c.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, k).Scan(&ok); err != nil || !ok {
				c.Conn().Close(ctx) // the session's end releases the lock
			}
			c.Release()
		})
	}, nil
}

// Redact hides the password of a store URL.
func Redact(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return u
	}
	at := strings.LastIndex(u, "@")
	if at < i {
		return u
	}
	if colon := strings.Index(u[i+3:at], ":"); colon >= 0 {
		return u[:i+3+colon+1] + "xxxxx" + u[at:]
	}
	return u
}

// ---- helpers ----

// utc returns t in UTC, truncated to what timestamptz keeps.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isUnique(err error) bool     { return pgCode(err) == "23505" }
func isForeignKey(err error) bool { return pgCode(err) == "23503" }

// tx runs fn in a transaction. A configuration write (bump) first
// increments the version, which takes config_version's row lock: such
// writes run one at a time across all nodes, and each sees every write
// committed before it. The notification is sent in the same transaction,
// so PostgreSQL delivers it at commit, and never for a rollback.
func (s *Store) tx(ctx context.Context, bump bool, fn func(pgx.Tx) error) error {
	t, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback(context.WithoutCancel(ctx))
	var v int64
	if bump {
		if err := t.QueryRow(ctx, `UPDATE config_version SET version = version + 1 RETURNING version`).Scan(&v); err != nil {
			return err
		}
	}
	if err := fn(t); err != nil {
		return err
	}
	if bump {
		if _, err := t.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, strconv.FormatInt(v, 10)); err != nil {
			return err
		}
	}
	return t.Commit(ctx)
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ---- meta and keyring ----

// GetMeta implements store.Config.
func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return v, err
}

// SetMetaIfAbsent implements store.Config.
func (s *Store) SetMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	var out string
	err := s.tx(ctx, false, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
			return err
		}
		return t.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&out)
	})
	return out, err
}

// Keys implements store.Config.
func (s *Store) Keys(ctx context.Context) ([]store.Key, error) { return keys(ctx, s.pool) }

func keys(ctx context.Context, q queryer) ([]store.Key, error) {
	rows, err := q.Query(ctx, `SELECT id, wrapped, created_at, active FROM keyring ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		var k store.Key
		var id int64
		if err := rows.Scan(&id, &k.Wrapped, &k.CreatedAt, &k.Active); err != nil {
			return nil, err
		}
		k.ID, k.CreatedAt = uint32(id), k.CreatedAt.UTC()
		out = append(out, k)
	}
	return out, rows.Err()
}

// AddKey implements store.Config.
func (s *Store) AddKey(ctx context.Context, k store.Key) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		if k.Active {
			if _, err := t.Exec(ctx, `UPDATE keyring SET active = false WHERE active`); err != nil {
				return err
			}
		}
		_, err := t.Exec(ctx, `INSERT INTO keyring (id, wrapped, created_at, active) VALUES ($1, $2, $3, $4)`,
			int64(k.ID), k.Wrapped, utc(k.CreatedAt), k.Active)
		if isUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

// Version implements store.Config.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT version FROM config_version`).Scan(&v)
	return v, err
}

// Load implements store.Config: one repeatable-read transaction, so the
// state and its version agree.
func (s *Store) Load(ctx context.Context) (*store.State, error) {
	t, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer t.Rollback(context.WithoutCancel(ctx))
	st := &store.State{Sealed: map[string]store.SecretVersion{}}
	if err := t.QueryRow(ctx, `SELECT version FROM config_version`).Scan(&st.Version); err != nil {
		return nil, err
	}
	if st.Keys, err = keys(ctx, t); err != nil {
		return nil, err
	}
	if st.Secrets, err = querySecrets(ctx, t, ""); err != nil {
		return nil, err
	}
	rows, err := t.Query(ctx, `SELECT sv.name, sv.version, sv.ciphertext, sv.created_at FROM secret_versions sv
		JOIN secrets s ON s.name = sv.name AND s.version = sv.version`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var sv store.SecretVersion
		if err := rows.Scan(&sv.Name, &sv.Version, &sv.Ciphertext, &sv.CreatedAt); err != nil {
			rows.Close()
			return nil, err
		}
		sv.CreatedAt = sv.CreatedAt.UTC()
		st.Sealed[sv.Name] = sv
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if st.Proxies, err = listProxies(ctx, t); err != nil {
		return nil, err
	}
	if st.Agents, err = queryAgents(ctx, t, ""); err != nil {
		return nil, err
	}
	if st.Tokens, err = queryTokens(ctx, t, ""); err != nil {
		return nil, err
	}
	if st.AdminTokens, err = listAdminTokens(ctx, t); err != nil {
		return nil, err
	}
	return st, t.Commit(ctx)
}

// ---- secrets ----

// CreateSecret implements store.Config.
func (s *Store) CreateSecret(ctx context.Context, sec store.Secret, v store.SecretVersion) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		_, err := t.Exec(ctx, `INSERT INTO secrets (name, version, kind, fields, created_at) VALUES ($1, 1, $2, $3, $4)`,
			sec.Name, sec.Kind, nonNil(sec.Fields), utc(sec.CreatedAt))
		if isUnique(err) {
			return store.ErrConflict
		}
		if err != nil {
			return err
		}
		_, err = t.Exec(ctx, `INSERT INTO secret_versions (name, version, ciphertext, created_at) VALUES ($1, 1, $2, $3)`,
			sec.Name, v.Ciphertext, utc(sec.CreatedAt))
		return err
	})
}

// RotateSecret implements store.Config.
func (s *Store) RotateSecret(ctx context.Context, name string, at time.Time, seal func(int) ([]byte, string, []string, error)) (store.Secret, error) {
	var out store.Secret
	err := s.tx(ctx, true, func(t pgx.Tx) error {
		var cur int
		err := t.QueryRow(ctx, `SELECT version FROM secrets WHERE name = $1 FOR UPDATE`, name).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		ct, kind, fields, err := seal(cur + 1)
		if err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `UPDATE secrets SET version = $1, kind = $2, fields = $3, rotated_at = $4 WHERE name = $5`,
			cur+1, kind, nonNil(fields), utc(at), name); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO secret_versions (name, version, ciphertext, created_at) VALUES ($1, $2, $3, $4)`,
			name, cur+1, ct, utc(at)); err != nil {
			return err
		}
		out, err = getSecret(ctx, t, name)
		return err
	})
	return out, err
}

// GetSecret implements store.Config.
func (s *Store) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	return getSecret(ctx, s.pool, name)
}

func getSecret(ctx context.Context, q queryer, name string) (store.Secret, error) {
	list, err := querySecrets(ctx, q, `WHERE s.name = $1`, name)
	if err != nil {
		return store.Secret{}, err
	}
	if len(list) == 0 {
		return store.Secret{}, store.ErrNotFound
	}
	return list[0], nil
}

// ListSecrets implements store.Config.
func (s *Store) ListSecrets(ctx context.Context) ([]store.Secret, error) {
	return querySecrets(ctx, s.pool, "")
}

func querySecrets(ctx context.Context, q queryer, where string, args ...any) ([]store.Secret, error) {
	rows, err := q.Query(ctx, `SELECT s.name, s.version, s.kind, s.fields, s.created_at, s.rotated_at,
		ARRAY(SELECT p.name FROM proxies p WHERE p.secret = s.name ORDER BY p.name)
		FROM secrets s `+where+` ORDER BY s.name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Secret
	for rows.Next() {
		var sec store.Secret
		if err := rows.Scan(&sec.Name, &sec.Version, &sec.Kind, &sec.Fields, &sec.CreatedAt, &sec.RotatedAt, &sec.UsedBy); err != nil {
			return nil, err
		}
		if len(sec.Fields) == 0 {
			sec.Fields = nil
		}
		if sec.UsedBy == nil {
			sec.UsedBy = []string{}
		}
		sec.CreatedAt, sec.RotatedAt = sec.CreatedAt.UTC(), utcPtr(sec.RotatedAt)
		out = append(out, sec)
	}
	return out, rows.Err()
}

// DeleteSecret implements store.Config.
func (s *Store) DeleteSecret(ctx context.Context, name string) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM proxies WHERE secret = $1`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return store.ErrInUse
		}
		tag, err := t.Exec(ctx, `DELETE FROM secrets WHERE name = $1`, name)
		if isForeignKey(err) {
			return store.ErrInUse
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// ---- proxies ----

// PutProxy implements store.Config.
func (s *Store) PutProxy(ctx context.Context, p store.Proxy, create bool) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		if p.Secret != "" {
			var n int
			if err := t.QueryRow(ctx, `SELECT count(*) FROM secrets WHERE name = $1`, p.Secret).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return store.ErrMissingRef
			}
		}
		if create {
			_, err := t.Exec(ctx, `INSERT INTO proxies (name, secret, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)`,
				p.Name, nullString(p.Secret), string(p.Spec), utc(p.CreatedAt), utc(p.UpdatedAt))
			switch {
			case isUnique(err):
				return store.ErrConflict
			case isForeignKey(err):
				return store.ErrMissingRef
			}
			return err
		}
		tag, err := t.Exec(ctx, `UPDATE proxies SET secret = $1, spec = $2, updated_at = $3 WHERE name = $4`,
			nullString(p.Secret), string(p.Spec), utc(p.UpdatedAt), p.Name)
		if isForeignKey(err) {
			return store.ErrMissingRef
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// UpdateProxy implements store.Config. Configuration writes run one at a
// time (tx), so the read below sees every change committed before it.
func (s *Store) UpdateProxy(ctx context.Context, name string, at time.Time, change func(*store.Proxy) error) (store.Proxy, error) {
	var out store.Proxy
	err := s.tx(ctx, true, func(t pgx.Tx) error {
		p, err := getProxy(ctx, t, name, true)
		if err != nil {
			return err
		}
		if err := change(&p); err != nil {
			return err
		}
		p.UpdatedAt = utc(at)
		_, err = t.Exec(ctx, `UPDATE proxies SET secret = $1, spec = $2, updated_at = $3 WHERE name = $4`,
			nullString(p.Secret), string(p.Spec), p.UpdatedAt, p.Name)
		if isForeignKey(err) {
			return store.ErrMissingRef
		}
		out = p
		return err
	})
	return out, err
}

// GetProxy implements store.Config.
func (s *Store) GetProxy(ctx context.Context, name string) (store.Proxy, error) {
	return getProxy(ctx, s.pool, name, false)
}

func getProxy(ctx context.Context, q queryer, name string, forUpdate bool) (store.Proxy, error) {
	var p store.Proxy
	var secret *string
	var spec string
	sql := `SELECT name, secret, spec, created_at, updated_at FROM proxies WHERE name = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	err := q.QueryRow(ctx, sql, name).Scan(&p.Name, &secret, &spec, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, store.ErrNotFound
	}
	if secret != nil {
		p.Secret = *secret
	}
	p.Spec, p.CreatedAt, p.UpdatedAt = []byte(spec), p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// ListProxies implements store.Config.
func (s *Store) ListProxies(ctx context.Context) ([]store.Proxy, error) {
	return listProxies(ctx, s.pool)
}

func listProxies(ctx context.Context, q queryer) ([]store.Proxy, error) {
	rows, err := q.Query(ctx, `SELECT name, secret, spec, created_at, updated_at FROM proxies ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Proxy
	for rows.Next() {
		var p store.Proxy
		var secret *string
		var spec string
		if err := rows.Scan(&p.Name, &secret, &spec, &p.CreatedAt, &p.UpdatedAt); err != nil {
			return nil, err
		}
		if secret != nil {
			p.Secret = *secret
		}
		p.Spec, p.CreatedAt, p.UpdatedAt = []byte(spec), p.CreatedAt.UTC(), p.UpdatedAt.UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteProxy implements store.Config.
func (s *Store) DeleteProxy(ctx context.Context, name string) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		tag, err := t.Exec(ctx, `DELETE FROM proxies WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// ---- agents ----

// CreateAgent implements store.Config.
func (s *Store) CreateAgent(ctx context.Context, a store.Agent) error {
	labels, _ := json.Marshal(nonNilMap(a.Labels))
	return s.tx(ctx, true, func(t pgx.Tx) error {
		_, err := t.Exec(ctx, `INSERT INTO agents (name, labels, created_at) VALUES ($1, $2, $3)`, a.Name, string(labels), utc(a.CreatedAt))
		if isUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

// GetAgent implements store.Config.
func (s *Store) GetAgent(ctx context.Context, name string) (store.Agent, error) {
	list, err := queryAgents(ctx, s.pool, `WHERE name = $1`, name)
	if err != nil {
		return store.Agent{}, err
	}
	if len(list) == 0 {
		return store.Agent{}, store.ErrNotFound
	}
	return list[0], nil
}

// ListAgents implements store.Config.
func (s *Store) ListAgents(ctx context.Context) ([]store.Agent, error) {
	return queryAgents(ctx, s.pool, "")
}

func queryAgents(ctx context.Context, q queryer, where string, args ...any) ([]store.Agent, error) {
	rows, err := q.Query(ctx, `SELECT name, labels, created_at FROM agents `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Agent
	for rows.Next() {
		var a store.Agent
		var labels string
		if err := rows.Scan(&a.Name, &labels, &a.CreatedAt); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(labels), &a.Labels)
		a.Labels = nonNilMap(a.Labels)
		a.CreatedAt = a.CreatedAt.UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAgent implements store.Config: the agent goes and its tokens are
// revoked (they stay, so their requests answer token_revoked).
func (s *Store) DeleteAgent(ctx context.Context, name string, at time.Time) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		tag, err := t.Exec(ctx, `DELETE FROM agents WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = t.Exec(ctx, `UPDATE tokens SET revoked_at = $1 WHERE agent = $2 AND revoked_at IS NULL`, utc(at), name)
		return err
	})
}

// ---- tokens ----

// CreateToken implements store.Config.
func (s *Store) CreateToken(ctx context.Context, tk store.Token) error {
	var rules *string
	if len(tk.Rules) > 0 {
		r := string(tk.Rules)
		rules = &r
	}
	var expires *time.Time
	if tk.ExpiresAt != nil {
		e := utc(*tk.ExpiresAt)
		expires = &e
	}
	return s.tx(ctx, true, func(t pgx.Tx) error {
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM agents WHERE name = $1`, tk.Agent).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return store.ErrMissingRef
		}
		_, err := t.Exec(ctx, `INSERT INTO tokens (id, hash, agent, name, proxies, rules, parent_id, depth, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, tk.ID, tk.Hash, tk.Agent, tk.Name, nonNil(tk.Proxies), rules,
			nullString(tk.ParentID), tk.Depth, utc(tk.CreatedAt), expires)
		switch {
		case isUnique(err):
			return store.ErrConflict
		case isForeignKey(err):
			return store.ErrMissingRef
		}
		return err
	})
}

// GetToken implements store.Config.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	list, err := queryTokens(ctx, s.pool, `WHERE id = $1`, id)
	if err != nil {
		return store.Token{}, err
	}
	if len(list) == 0 {
		return store.Token{}, store.ErrNotFound
	}
	return list[0], nil
}

// ListTokens implements store.Config.
func (s *Store) ListTokens(ctx context.Context, agent string) ([]store.Token, error) {
	if agent != "" {
		return queryTokens(ctx, s.pool, `WHERE agent = $1`, agent)
	}
	return queryTokens(ctx, s.pool, "")
}

func queryTokens(ctx context.Context, q queryer, where string, args ...any) ([]store.Token, error) {
	rows, err := q.Query(ctx, `SELECT id, hash, agent, name, proxies, rules, parent_id, depth, created_at, expires_at, revoked_at
		FROM tokens `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		var tk store.Token
		var rules, parent *string
		if err := rows.Scan(&tk.ID, &tk.Hash, &tk.Agent, &tk.Name, &tk.Proxies, &rules, &parent, &tk.Depth, &tk.CreatedAt,
			&tk.ExpiresAt, &tk.RevokedAt); err != nil {
			return nil, err
		}
		if rules != nil {
			tk.Rules = []byte(*rules)
		}
		if parent != nil {
			tk.ParentID = *parent
		}
		if tk.Proxies == nil {
			tk.Proxies = []string{}
		}
		tk.CreatedAt, tk.ExpiresAt, tk.RevokedAt = tk.CreatedAt.UTC(), utcPtr(tk.ExpiresAt), utcPtr(tk.RevokedAt)
		out = append(out, tk)
	}
	return out, rows.Err()
}

// RevokeToken implements store.Config: the token and all its descendants.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (int, error) {
	var n int64
	err := s.tx(ctx, true, func(t pgx.Tx) error {
		var exists int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE id = $1`, id).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return store.ErrNotFound
		}
		tag, err := t.Exec(ctx, `WITH RECURSIVE tree(id) AS (
				SELECT id FROM tokens WHERE id = $1
				UNION SELECT t.id FROM tokens t JOIN tree ON t.parent_id = tree.id)
			UPDATE tokens SET revoked_at = $2 WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL`, id, utc(at))
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return nil
	})
	return int(n), err
}

// ---- admin tokens ----

// CreateAdminToken implements store.Config.
func (s *Store) CreateAdminToken(ctx context.Context, a store.AdminToken) error {
	var expires *time.Time
	if a.ExpiresAt != nil {
		e := utc(*a.ExpiresAt)
		expires = &e
	}
	return s.tx(ctx, true, func(t pgx.Tx) error {
		_, err := t.Exec(ctx, `INSERT INTO admin_tokens (id, hash, name, role, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			a.ID, a.Hash, a.Name, a.Role, utc(a.CreatedAt), expires)
		if isUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

// ListAdminTokens implements store.Config.
func (s *Store) ListAdminTokens(ctx context.Context) ([]store.AdminToken, error) {
	return listAdminTokens(ctx, s.pool)
}

func listAdminTokens(ctx context.Context, q queryer) ([]store.AdminToken, error) {
	rows, err := q.Query(ctx, `SELECT id, hash, name, role, created_at, expires_at, revoked_at FROM admin_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AdminToken
	for rows.Next() {
		var a store.AdminToken
		if err := rows.Scan(&a.ID, &a.Hash, &a.Name, &a.Role, &a.CreatedAt, &a.ExpiresAt, &a.RevokedAt); err != nil {
			return nil, err
		}
		a.CreatedAt, a.ExpiresAt, a.RevokedAt = a.CreatedAt.UTC(), utcPtr(a.ExpiresAt), utcPtr(a.RevokedAt)
		out = append(out, a)
	}
	return out, rows.Err()
}

// RevokeAdminToken implements store.Config.
func (s *Store) RevokeAdminToken(ctx context.Context, id string, at time.Time) error {
	return s.tx(ctx, true, func(t pgx.Tx) error {
		tag, err := t.Exec(ctx, `UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, utc(at), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
