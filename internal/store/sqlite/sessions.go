package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// Dashboard sessions and OAuth connect flows: not configuration, so no
// write bumps the version. Reads use the reader pool; every write goes
// through the one writer connection, which is also what makes TakeFlow
// and TakeFlash single-use.
var (
	_ store.Sessions   = (*Store)(nil)
	_ store.OAuthFlows = (*Store)(nil)
)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, ss store.Session) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO dashboard_sessions (id, admin_token_id, display, via, flash, created_at, last_seen, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, ss.ID, ss.AdminTokenID, ss.Display, ss.Via, ss.Flash,
		micros(ss.CreatedAt), micros(ss.LastSeen), micros(ss.ExpiresAt))
	switch {
	case isUnique(err):
		return store.ErrConflict
	case isForeignKey(err):
		return store.ErrMissingRef
	}
	return err
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string, now time.Time) (store.Session, error) {
	var ss store.Session
	var created, seen, expires int64
	err := s.r.QueryRowContext(ctx, `SELECT id, admin_token_id, display, via, flash, created_at, last_seen, expires_at
		FROM dashboard_sessions WHERE id = ? AND expires_at > ?`, id, micros(now)).
		Scan(&ss.ID, &ss.AdminTokenID, &ss.Display, &ss.Via, &ss.Flash, &created, &seen, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Session{}, store.ErrNotFound
	}
	if err != nil {
		return store.Session{}, err
	}
	ss.CreatedAt, ss.LastSeen, ss.ExpiresAt = fromMicros(created), fromMicros(seen), fromMicros(expires)
	return ss, nil
}

// TouchSession implements store.Sessions.
func (s *Store) TouchSession(ctx context.Context, id string, seen, expires time.Time) error {
	return oneRow(s.w.ExecContext(ctx, `UPDATE dashboard_sessions SET last_seen = ?, expires_at = ? WHERE id = ? AND expires_at > ?`,
		micros(seen), micros(expires), id, micros(seen)))
}

// SetFlash implements store.Sessions.
func (s *Store) SetFlash(ctx context.Context, id, msg string) error {
	return oneRow(s.w.ExecContext(ctx, `UPDATE dashboard_sessions SET flash = ? WHERE id = ?`, msg, id))
}

// TakeFlash implements store.Sessions: the old value is read and cleared
// in one write transaction.
func (s *Store) TakeFlash(ctx context.Context, id string) (string, error) {
	var msg string
	err := s.tx(ctx, false, func(t *sql.Tx) error {
		err := t.QueryRowContext(ctx, `SELECT flash FROM dashboard_sessions WHERE id = ?`, id).Scan(&msg)
		if errors.Is(err, sql.ErrNoRows) || err == nil && msg == "" {
			msg = ""
			return nil
		}
		if err != nil {
			return err
		}
		_, err = t.ExecContext(ctx, `UPDATE dashboard_sessions SET flash = '' WHERE id = ?`, id)
		return err
	})
	return msg, err
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return oneRow(s.w.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE id = ?`, id))
}

// DeleteSessionsOf implements store.Sessions.
func (s *Store) DeleteSessionsOf(ctx context.Context, adminTokenID string) (int64, error) {
	return rowsDeleted(s.w.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE admin_token_id = ?`, adminTokenID))
}

// DeleteExpiredSessions implements store.Sessions.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	return rowsDeleted(s.w.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE expires_at <= ?`, micros(now)))
}

// PutFlow implements store.OAuthFlows.
func (s *Store) PutFlow(ctx context.Context, f store.OAuthFlow) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO oauth_flows (id, secret, admin_token_id, sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		f.ID, f.Secret, f.AdminTokenID, f.Sealed, micros(f.CreatedAt), micros(f.ExpiresAt))
	switch {
	case isUnique(err):
		return store.ErrConflict
	case isForeignKey(err):
		return store.ErrMissingRef
	}
	return err
}

// TakeFlow implements store.OAuthFlows with DELETE … RETURNING: one
// statement, so the row goes to one caller only.
func (s *Store) TakeFlow(ctx context.Context, id string, now time.Time) (store.OAuthFlow, error) {
	var f store.OAuthFlow
	var created, expires int64
	err := s.w.QueryRowContext(ctx, `DELETE FROM oauth_flows WHERE id = ? RETURNING id, secret, admin_token_id, sealed, created_at, expires_at`, id).
		Scan(&f.ID, &f.Secret, &f.AdminTokenID, &f.Sealed, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.OAuthFlow{}, store.ErrNotFound
	}
	if err != nil {
		return store.OAuthFlow{}, err
	}
	f.CreatedAt, f.ExpiresAt = fromMicros(created), fromMicros(expires)
	if !f.ExpiresAt.After(now) {
		return store.OAuthFlow{}, store.ErrNotFound
	}
	return f, nil
}

// DeleteExpiredFlows implements store.OAuthFlows.
func (s *Store) DeleteExpiredFlows(ctx context.Context, now time.Time) (int64, error) {
	return rowsDeleted(s.w.ExecContext(ctx, `DELETE FROM oauth_flows WHERE expires_at <= ?`, micros(now)))
}

// oneRow turns an update that changed no row into ErrNotFound.
func oneRow(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func rowsDeleted(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
