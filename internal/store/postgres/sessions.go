package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// Dashboard sessions and OAuth connect flows, shared by every node (SPEC
// §10): a session signed in on one node is valid on all, and a provider's
// callback may land on any node. Not configuration: no write bumps the
// version or notifies.
var (
	_ store.Sessions   = (*Store)(nil)
	_ store.OAuthFlows = (*Store)(nil)
)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, ss store.Session) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO dashboard_sessions (id, admin_token_id, display, via, flash, created_at, last_seen, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, ss.ID, ss.AdminTokenID, ss.Display, ss.Via, ss.Flash,
		utc(ss.CreatedAt), utc(ss.LastSeen), utc(ss.ExpiresAt))
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
	err := s.pool.QueryRow(ctx, `SELECT id, admin_token_id, display, via, flash, created_at, last_seen, expires_at
		FROM dashboard_sessions WHERE id = $1 AND expires_at > $2`, id, utc(now)).
		Scan(&ss.ID, &ss.AdminTokenID, &ss.Display, &ss.Via, &ss.Flash, &ss.CreatedAt, &ss.LastSeen, &ss.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Session{}, store.ErrNotFound
	}
	if err != nil {
		return store.Session{}, err
	}
	ss.CreatedAt, ss.LastSeen, ss.ExpiresAt = ss.CreatedAt.UTC(), ss.LastSeen.UTC(), ss.ExpiresAt.UTC()
	return ss, nil
}

// TouchSession implements store.Sessions.
func (s *Store) TouchSession(ctx context.Context, id string, seen, expires time.Time) error {
	return oneRow(s.pool.Exec(ctx, `UPDATE dashboard_sessions SET last_seen = $2, expires_at = $3 WHERE id = $1 AND expires_at > $2`,
		id, utc(seen), utc(expires)))
}

// SetFlash implements store.Sessions.
func (s *Store) SetFlash(ctx context.Context, id, msg string) error {
	return oneRow(s.pool.Exec(ctx, `UPDATE dashboard_sessions SET flash = $2 WHERE id = $1`, id, msg))
}

// TakeFlash implements store.Sessions: the row is locked while its old
// message is read and cleared (one statement), so of two concurrent calls
// the second finds it cleared.
func (s *Store) TakeFlash(ctx context.Context, id string) (string, error) {
	var msg string
	err := s.pool.QueryRow(ctx, `UPDATE dashboard_sessions d SET flash = ''
		FROM (SELECT id, flash FROM dashboard_sessions WHERE id = $1 AND flash <> '' FOR UPDATE) old
		WHERE d.id = old.id RETURNING old.flash`, id).Scan(&msg)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return msg, err
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return oneRow(s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE id = $1`, id))
}

// DeleteSessionsOf implements store.Sessions.
func (s *Store) DeleteSessionsOf(ctx context.Context, adminTokenID string) (int64, error) {
	return rowsDeleted(s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE admin_token_id = $1`, adminTokenID))
}

// DeleteExpiredSessions implements store.Sessions.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	return rowsDeleted(s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE expires_at <= $1`, utc(now)))
}

// PutFlow implements store.OAuthFlows.
func (s *Store) PutFlow(ctx context.Context, f store.OAuthFlow) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO oauth_flows (id, secret, admin_token_id, sealed, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		f.ID, f.Secret, f.AdminTokenID, f.Sealed, utc(f.CreatedAt), utc(f.ExpiresAt))
	switch {
	case isUnique(err):
		return store.ErrConflict
	case isForeignKey(err):
		return store.ErrMissingRef
	}
	return err
}

// TakeFlow implements store.OAuthFlows with DELETE … RETURNING: of two
// nodes deleting the same row, the second waits for the first's row lock
// and then finds the row gone, so only one gets the flow.
func (s *Store) TakeFlow(ctx context.Context, id string, now time.Time) (store.OAuthFlow, error) {
	var f store.OAuthFlow
	err := s.pool.QueryRow(ctx, `DELETE FROM oauth_flows WHERE id = $1 RETURNING id, secret, admin_token_id, sealed, created_at, expires_at`, id).
		Scan(&f.ID, &f.Secret, &f.AdminTokenID, &f.Sealed, &f.CreatedAt, &f.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.OAuthFlow{}, store.ErrNotFound
	}
	if err != nil {
		return store.OAuthFlow{}, err
	}
	f.CreatedAt, f.ExpiresAt = f.CreatedAt.UTC(), f.ExpiresAt.UTC()
	if !f.ExpiresAt.After(now) {
		return store.OAuthFlow{}, store.ErrNotFound
	}
	return f, nil
}

// DeleteExpiredFlows implements store.OAuthFlows.
func (s *Store) DeleteExpiredFlows(ctx context.Context, now time.Time) (int64, error) {
	return rowsDeleted(s.pool.Exec(ctx, `DELETE FROM oauth_flows WHERE expires_at <= $1`, utc(now)))
}

// oneRow turns a statement that changed no row into ErrNotFound.
func oneRow(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func rowsDeleted(tag pgconn.CommandTag, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
