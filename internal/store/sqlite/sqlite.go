// Package sqlite is keyhole's embedded store: one SQLite file in WAL mode
// (modernc.org/sqlite, pure Go, so keyhole stays one static binary), with
// its migrations embedded.
//
// Writes go through one connection (SQLite has one writer at a time anyway,
// and one connection avoids SQLITE_BUSY between our own goroutines); reads
// use a small pool that WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keyhole-gw/keyhole/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite implementation of store.Store.
type Store struct {
	w    *sql.DB // one connection: every write
	r    *sql.DB // readers
	path string

	// The audit writer's statements: multi-row inserts by chunk size.
	insEvents, insRecords map[int]*sql.Stmt
	updEnd, updEndStatus  *sql.Stmt

	cp             *sql.DB // background WAL checkpoints
	ino, dev       uint64  // the file opened (sameFile)
	cpStop, cpDone chan struct{}
}

var _ store.Store = (*Store)(nil)

// Options tune the database.
type Options struct {
	// Synchronous is SQLite's synchronous pragma: NORMAL (default) makes a
	// commit durable across a crash of the process (kill -9); FULL also
	// across a power loss, at the price of an fsync per commit.
	Synchronous string
}

// ParseURL turns sqlite://./dir/file.db or sqlite:///abs/file.db into a file path.
func ParseURL(s string) (string, error) {
	rest, ok := strings.CutPrefix(s, "sqlite://")
	if !ok {
		return "", fmt.Errorf("store %q: an embedded store is sqlite://PATH (e.g. sqlite://./keyhole-data/keyhole.db)", s)
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return "", fmt.Errorf("store %q: options in the URL are not supported", s)
	}
	p, err := url.PathUnescape(rest)
	if err != nil || p == "" {
		return "", fmt.Errorf("store %q: no file path", s)
	}
	return filepath.Clean(p), nil
}

// Open opens (creating if needed) the database file and migrates it.
func Open(ctx context.Context, path string, opt Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the data folder %s: %w", filepath.Dir(path), err)
	}
	sync := strings.ToUpper(opt.Synchronous)
	if sync == "" {
		sync = "NORMAL"
	}
	if sync != "NORMAL" && sync != "FULL" {
		return nil, fmt.Errorf("sqlite synchronous must be NORMAL or FULL")
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")" +
		"&_pragma=foreign_keys(ON)&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_time_format=sqlite"
	// The writer never checkpoints the WAL itself: a checkpoint copies
	// pages into the database file and fsyncs it, and in the writer's
	// commit that stalls every request waiting on the audit log. A
	// background connection checkpoints instead (checkpointer).
	w, err := sql.Open("sqlite", base+"&_txlock=immediate&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(ON)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s := &Store{w: w, r: r, path: path}
	if err := w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("cannot open %s: %w", path, err)
	}
	os.Chmod(path, 0o600)
	var fst syscall.Stat_t
	if err := syscall.Stat(path, &fst); err == nil {
		s.ino, s.dev = fst.Ino, uint64(fst.Dev)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.insEvents, s.insRecords = map[int]*sql.Stmt{}, map[int]*sql.Stmt{}
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = w.PrepareContext(ctx, q)
		return st
	}
	for _, n := range insertChunks {
		s.insEvents[n] = prep(multiRow(sqlInsEvents, tupleEvent, n))
		s.insRecords[n] = prep(multiRow(sqlInsRecords, tupleRecord, n))
	}
	s.updEnd, s.updEndStatus = prep(sqlUpdEnd), prep(sqlUpdEndStatus)
	if err != nil {
		s.Close()
		return nil, err
	}
	cp, err := sql.Open("sqlite", base)
	if err != nil {
		s.Close()
		return nil, err
	}
	cp.SetMaxOpenConns(1)
	s.cp, s.cpStop, s.cpDone = cp, make(chan struct{}), make(chan struct{})
	go s.checkpointer()
	return s, nil
}

// checkpointInterval and walTruncate tune the background checkpoints.
const (
	checkpointInterval = 500 * time.Millisecond
	walTruncate        = 256 << 20 // a WAL grown past this is truncated
)

// checkpointer copies the WAL into the database file in the background
// (PASSIVE: it never blocks the writer or readers), and truncates a WAL
// that grew large while readers held it.
func (s *Store) checkpointer() {
	defer close(s.cpDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.cpStop:
			s.cp.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			return
		case <-t.C:
			mode := "PASSIVE"
			if st, err := os.Stat(s.path + "-wal"); err == nil && st.Size() > walTruncate {
				mode = "TRUNCATE"
			}
			s.cp.Exec(`PRAGMA wal_checkpoint(` + mode + `)`)
		}
	}
}

func (s *Store) migrate(ctx context.Context) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, mustSub(migrations, "migrations"))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("cannot migrate %s: %w", s.path, err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.cp != nil {
		close(s.cpStop)
		<-s.cpDone
		s.cp.Close()
		s.cp = nil
	}
	err := s.w.Close()
	if e := s.r.Close(); err == nil {
		err = e
	}
	return err
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Ping checks that the database answers and accepts writes (readiness: an
// audit store that cannot take records is not ready).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.sameFile(); err != nil {
		return err
	}
	// A write that changes a value: SQLite skips one that writes what is
	// there already, and that would "succeed" on a read-only database.
	_, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('ping', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.FormatInt(time.Now().UnixNano(), 10))
	return err
}

// PingFree checks that the database can take about n more bytes, as the
// audit writer's probe asks after a batch of that size failed: on a full
// disk a tiny write can still succeed (SQLite reuses the WAL's space once
// it has been checkpointed) while the records cannot, and the node must
// not call itself recovered then. It asks the file system for the space
// (writing n bytes to find out would use up the headroom it measures: the
// WAL and then the database file would each grow by n), then makes the
// small write Ping makes.
func (s *Store) PingFree(ctx context.Context, n int) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.path), &st); err == nil {
		if free := uint64(st.Bavail) * uint64(st.Bsize); free < uint64(n) {
			return fmt.Errorf("the database's file system has %d bytes free; the audit log needs %d before it takes records again", free, n)
		}
	}
	return s.Ping(ctx)
}

// ErrFileReplaced: the database file at the store's path is not the one it
// opened (deleted or replaced under a running node): commits would go to
// an unlinked file and be lost at stop.
var ErrFileReplaced = errors.New("the database file was deleted or replaced while keyhole was running; its writes would be lost")

// sameFile checks that the path still names the file opened.
func (s *Store) sameFile() error {
	if s.ino == 0 {
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Stat(s.path, &st); err != nil || st.Ino != s.ino || uint64(st.Dev) != s.dev {
		return ErrFileReplaced
	}
	return nil
}

// ---- helpers ----

func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

func timePtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// tx runs fn in a write transaction and bumps the configuration version
// when bump is set.
func (s *Store) tx(ctx context.Context, bump bool, fn func(*sql.Tx) error) error {
	t, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if err := fn(t); err != nil {
		return err
	}
	if bump {
		if _, err := t.ExecContext(ctx, `UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'`); err != nil {
			return err
		}
	}
	return t.Commit()
}

type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// ---- meta and keyring ----

// GetMeta implements store.Config.
func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return v, err
}

// SetMetaIfAbsent implements store.Config.
func (s *Store) SetMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	var out string
	err := s.tx(ctx, false, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
			return err
		}
		return t.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&out)
	})
	return out, err
}

// Keys implements store.Config.
func (s *Store) Keys(ctx context.Context) ([]store.Key, error) { return keys(ctx, s.r) }

func keys(ctx context.Context, q queryer) ([]store.Key, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, wrapped, created_at, active FROM keyring ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		var k store.Key
		var at int64
		if err := rows.Scan(&k.ID, &k.Wrapped, &at, &k.Active); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMicros(at)
		out = append(out, k)
	}
	return out, rows.Err()
}

// AddKey implements store.Config.
func (s *Store) AddKey(ctx context.Context, k store.Key) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		if k.Active {
			if _, err := t.ExecContext(ctx, `UPDATE keyring SET active = 0`); err != nil {
				return err
			}
		}
		_, err := t.ExecContext(ctx, `INSERT INTO keyring (id, wrapped, created_at, active) VALUES (?, ?, ?, ?)`,
			k.ID, k.Wrapped, micros(k.CreatedAt), k.Active)
		if isUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

// Version implements store.Config.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v string
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'config_version'`).Scan(&v); err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// Load implements store.Config.
func (s *Store) Load(ctx context.Context) (*store.State, error) {
	t, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer t.Rollback()
	st := &store.State{Sealed: map[string]store.SecretVersion{}}
	var v string
	if err := t.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'config_version'`).Scan(&v); err != nil {
		return nil, err
	}
	st.Version, _ = strconv.ParseInt(v, 10, 64)
	if st.Keys, err = keys(ctx, t); err != nil {
		return nil, err
	}
	if st.Secrets, err = listSecrets(ctx, t); err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT sv.name, sv.version, sv.ciphertext, sv.created_at FROM secret_versions sv
		JOIN secrets s ON s.name = sv.name AND s.version = sv.version`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var sv store.SecretVersion
		var at int64
		if err := rows.Scan(&sv.Name, &sv.Version, &sv.Ciphertext, &at); err != nil {
			rows.Close()
			return nil, err
		}
		sv.CreatedAt = fromMicros(at)
		st.Sealed[sv.Name] = sv
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if st.Proxies, err = listProxies(ctx, t); err != nil {
		return nil, err
	}
	if st.Agents, err = listAgents(ctx, t); err != nil {
		return nil, err
	}
	if st.Tokens, err = listTokens(ctx, t, ""); err != nil {
		return nil, err
	}
	if st.AdminTokens, err = listAdminTokens(ctx, t); err != nil {
		return nil, err
	}
	return st, nil
}

// ---- secrets ----

// CreateSecret implements store.Config.
func (s *Store) CreateSecret(ctx context.Context, sec store.Secret, v store.SecretVersion) error {
	fields, _ := json.Marshal(nonNil(sec.Fields))
	return s.tx(ctx, true, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO secrets (name, version, kind, fields, created_at) VALUES (?, 1, ?, ?, ?)`,
			sec.Name, sec.Kind, string(fields), micros(sec.CreatedAt))
		if isUnique(err) {
			return store.ErrConflict
		}
		if err != nil {
			return err
		}
		_, err = t.ExecContext(ctx, `INSERT INTO secret_versions (name, version, ciphertext, created_at) VALUES (?, 1, ?, ?)`,
			sec.Name, v.Ciphertext, micros(sec.CreatedAt))
		return err
	})
}

// RotateSecret implements store.Config.
func (s *Store) RotateSecret(ctx context.Context, name string, at time.Time, seal func(int) ([]byte, string, []string, error)) (store.Secret, error) {
	var out store.Secret
	err := s.tx(ctx, true, func(t *sql.Tx) error {
		var cur int
		err := t.QueryRowContext(ctx, `SELECT version FROM secrets WHERE name = ?`, name).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		ct, kind, fields, err := seal(cur + 1)
		if err != nil {
			return err
		}
		fj, _ := json.Marshal(nonNil(fields))
		if _, err := t.ExecContext(ctx, `UPDATE secrets SET version = ?, kind = ?, fields = ?, rotated_at = ? WHERE name = ?`,
			cur+1, kind, string(fj), micros(at), name); err != nil {
			return err
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO secret_versions (name, version, ciphertext, created_at) VALUES (?, ?, ?, ?)`,
			name, cur+1, ct, micros(at)); err != nil {
			return err
		}
		out, err = getSecret(ctx, t, name)
		return err
	})
	return out, err
}

// GetSecret implements store.Config.
func (s *Store) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	return getSecret(ctx, s.r, name)
}

func getSecret(ctx context.Context, q queryer, name string) (store.Secret, error) {
	list, err := querySecrets(ctx, q, `WHERE s.name = ?`, name)
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
	return listSecrets(ctx, s.r)
}

func listSecrets(ctx context.Context, q queryer) ([]store.Secret, error) {
	return querySecrets(ctx, q, "")
}

func querySecrets(ctx context.Context, q queryer, where string, args ...any) ([]store.Secret, error) {
	rows, err := q.QueryContext(ctx, `SELECT s.name, s.version, s.kind, s.fields, s.created_at, s.rotated_at,
		COALESCE((SELECT group_concat(p.name, ',') FROM proxies p WHERE p.secret = s.name), '')
		FROM secrets s `+where+` ORDER BY s.name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Secret
	for rows.Next() {
		var sec store.Secret
		var fields, used string
		var created int64
		var rotated sql.NullInt64
		if err := rows.Scan(&sec.Name, &sec.Version, &sec.Kind, &fields, &created, &rotated, &used); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(fields), &sec.Fields)
		sec.CreatedAt, sec.RotatedAt = fromMicros(created), timePtr(rotated)
		sec.UsedBy = []string{}
		if used != "" {
			sec.UsedBy = strings.Split(used, ",")
			sort.Strings(sec.UsedBy)
		}
		out = append(out, sec)
	}
	return out, rows.Err()
}

// DeleteSecret implements store.Config.
func (s *Store) DeleteSecret(ctx context.Context, name string) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		var n int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM proxies WHERE secret = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return store.ErrInUse
		}
		res, err := t.ExecContext(ctx, `DELETE FROM secrets WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// ---- proxies ----

// PutProxy implements store.Config.
func (s *Store) PutProxy(ctx context.Context, p store.Proxy, create bool) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		if p.Secret != "" {
			var n int
			if err := t.QueryRowContext(ctx, `SELECT count(*) FROM secrets WHERE name = ?`, p.Secret).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return store.ErrMissingRef
			}
		}
		if create {
			_, err := t.ExecContext(ctx, `INSERT INTO proxies (name, secret, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
				p.Name, nullString(p.Secret), string(p.Spec), micros(p.CreatedAt), micros(p.UpdatedAt))
			if isUnique(err) {
				return store.ErrConflict
			}
			return err
		}
		res, err := t.ExecContext(ctx, `UPDATE proxies SET secret = ?, spec = ?, updated_at = ? WHERE name = ?`,
			nullString(p.Secret), string(p.Spec), micros(p.UpdatedAt), p.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// UpdateProxy implements store.Config.
func (s *Store) UpdateProxy(ctx context.Context, name string, at time.Time, change func(*store.Proxy) error) (store.Proxy, error) {
	var out store.Proxy
	err := s.tx(ctx, true, func(t *sql.Tx) error {
		p, err := getProxy(ctx, t, name)
		if err != nil {
			return err
		}
		if err := change(&p); err != nil {
			return err
		}
		p.UpdatedAt = at
		_, err = t.ExecContext(ctx, `UPDATE proxies SET secret = ?, spec = ?, updated_at = ? WHERE name = ?`,
			nullString(p.Secret), string(p.Spec), micros(p.UpdatedAt), p.Name)
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
	return getProxy(ctx, s.r, name)
}

func getProxy(ctx context.Context, q queryer, name string) (store.Proxy, error) {
	var p store.Proxy
	var secret sql.NullString
	var spec string
	var created, updated int64
	err := q.QueryRowContext(ctx, `SELECT name, secret, spec, created_at, updated_at FROM proxies WHERE name = ?`, name).
		Scan(&p.Name, &secret, &spec, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return p, store.ErrNotFound
	}
	p.Secret, p.Spec, p.CreatedAt, p.UpdatedAt = secret.String, []byte(spec), fromMicros(created), fromMicros(updated)
	return p, err
}

// ListProxies implements store.Config.
func (s *Store) ListProxies(ctx context.Context) ([]store.Proxy, error) { return listProxies(ctx, s.r) }

func listProxies(ctx context.Context, q queryer) ([]store.Proxy, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, secret, spec, created_at, updated_at FROM proxies ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Proxy
	for rows.Next() {
		var p store.Proxy
		var secret sql.NullString
		var spec string
		var created, updated int64
		if err := rows.Scan(&p.Name, &secret, &spec, &created, &updated); err != nil {
			return nil, err
		}
		p.Secret, p.Spec, p.CreatedAt, p.UpdatedAt = secret.String, []byte(spec), fromMicros(created), fromMicros(updated)
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteProxy implements store.Config.
func (s *Store) DeleteProxy(ctx context.Context, name string) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM proxies WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// ---- agents ----

// CreateAgent implements store.Config.
func (s *Store) CreateAgent(ctx context.Context, a store.Agent) error {
	labels, _ := json.Marshal(nonNilMap(a.Labels))
	return s.tx(ctx, true, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO agents (name, labels, created_at) VALUES (?, ?, ?)`, a.Name, string(labels), micros(a.CreatedAt))
		if isUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

// GetAgent implements store.Config.
func (s *Store) GetAgent(ctx context.Context, name string) (store.Agent, error) {
	list, err := queryAgents(ctx, s.r, `WHERE name = ?`, name)
	if err != nil {
		return store.Agent{}, err
	}
	if len(list) == 0 {
		return store.Agent{}, store.ErrNotFound
	}
	return list[0], nil
}

// ListAgents implements store.Config.
func (s *Store) ListAgents(ctx context.Context) ([]store.Agent, error) { return listAgents(ctx, s.r) }

func listAgents(ctx context.Context, q queryer) ([]store.Agent, error) {
	return queryAgents(ctx, q, "")
}

func queryAgents(ctx context.Context, q queryer, where string, args ...any) ([]store.Agent, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, labels, created_at FROM agents `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Agent
	for rows.Next() {
		var a store.Agent
		var labels string
		var created int64
		if err := rows.Scan(&a.Name, &labels, &created); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(labels), &a.Labels)
		a.Labels = nonNilMap(a.Labels)
		a.CreatedAt = fromMicros(created)
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAgent implements store.Config: the agent goes and its tokens are
// revoked. The tokens stay (revoked) so that their requests answer
// token_revoked and the audit log's token ids stay explained.
func (s *Store) DeleteAgent(ctx context.Context, name string, at time.Time) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM agents WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		_, err = t.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE agent = ? AND revoked_at IS NULL`, micros(at), name)
		return err
	})
}

// ---- tokens ----

// CreateToken implements store.Config.
func (s *Store) CreateToken(ctx context.Context, tk store.Token) error {
	proxies, _ := json.Marshal(nonNil(tk.Proxies))
	var rules any
	if len(tk.Rules) > 0 {
		rules = string(tk.Rules)
	}
	return s.tx(ctx, true, func(t *sql.Tx) error {
		var n int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM agents WHERE name = ?`, tk.Agent).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return store.ErrMissingRef
		}
		_, err := t.ExecContext(ctx, `INSERT INTO tokens (id, hash, agent, name, proxies, rules, parent_id, depth, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, tk.ID, tk.Hash, tk.Agent, tk.Name, string(proxies), rules,
			nullString(tk.ParentID), tk.Depth, micros(tk.CreatedAt), nullMicros(tk.ExpiresAt))
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
	list, err := queryTokens(ctx, s.r, `WHERE id = ?`, id)
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
	return listTokens(ctx, s.r, agent)
}

func listTokens(ctx context.Context, q queryer, agent string) ([]store.Token, error) {
	if agent != "" {
		return queryTokens(ctx, q, `WHERE agent = ?`, agent)
	}
	return queryTokens(ctx, q, "")
}

func queryTokens(ctx context.Context, q queryer, where string, args ...any) ([]store.Token, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, hash, agent, name, proxies, rules, parent_id, depth, created_at, expires_at, revoked_at
		FROM tokens `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		var tk store.Token
		var proxies string
		var rules, parent sql.NullString
		var created int64
		var expires, revoked sql.NullInt64
		if err := rows.Scan(&tk.ID, &tk.Hash, &tk.Agent, &tk.Name, &proxies, &rules, &parent, &tk.Depth, &created, &expires, &revoked); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(proxies), &tk.Proxies)
		if rules.Valid {
			tk.Rules = []byte(rules.String)
		}
		tk.ParentID, tk.CreatedAt, tk.ExpiresAt, tk.RevokedAt = parent.String, fromMicros(created), timePtr(expires), timePtr(revoked)
		out = append(out, tk)
	}
	return out, rows.Err()
}

// RevokeToken implements store.Config: the token and all its descendants.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (int, error) {
	var n int64
	err := s.tx(ctx, true, func(t *sql.Tx) error {
		var exists int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM tokens WHERE id = ?`, id).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return store.ErrNotFound
		}
		res, err := t.ExecContext(ctx, `WITH RECURSIVE tree(id) AS (
				SELECT id FROM tokens WHERE id = ?
				UNION SELECT t.id FROM tokens t JOIN tree ON t.parent_id = tree.id)
			UPDATE tokens SET revoked_at = ? WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL`, id, micros(at))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// ---- admin tokens ----

// CreateAdminToken implements store.Config.
func (s *Store) CreateAdminToken(ctx context.Context, a store.AdminToken) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO admin_tokens (id, hash, name, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			a.ID, a.Hash, a.Name, a.Role, micros(a.CreatedAt), nullMicros(a.ExpiresAt))
		if isUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

// ListAdminTokens implements store.Config.
func (s *Store) ListAdminTokens(ctx context.Context) ([]store.AdminToken, error) {
	return listAdminTokens(ctx, s.r)
}

func listAdminTokens(ctx context.Context, q queryer) ([]store.AdminToken, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, hash, name, role, created_at, expires_at, revoked_at FROM admin_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AdminToken
	for rows.Next() {
		var a store.AdminToken
		var created int64
		var expires, revoked sql.NullInt64
		if err := rows.Scan(&a.ID, &a.Hash, &a.Name, &a.Role, &created, &expires, &revoked); err != nil {
			return nil, err
		}
		a.CreatedAt, a.ExpiresAt, a.RevokedAt = fromMicros(created), timePtr(expires), timePtr(revoked)
		out = append(out, a)
	}
	return out, rows.Err()
}

// RevokeAdminToken implements store.Config.
func (s *Store) RevokeAdminToken(ctx context.Context, id string, at time.Time) error {
	return s.tx(ctx, true, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, micros(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
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
