package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/keyhole-gw/keyhole/internal/store"
)

var _ store.Users = (*Store)(nil)

// CreateUser implements store.Users. Users are not part of the snapshot,
// so the configuration version is not bumped.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	return s.tx(ctx, false, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO users (name, password_hash, admin_token_id, created_at) VALUES (?, ?, ?, ?)`,
			u.Name, u.PasswordHash, u.AdminTokenID, micros(u.CreatedAt))
		switch {
		case isUnique(err):
			return store.ErrConflict
		case isForeignKey(err):
			return store.ErrMissingRef
		}
		return err
	})
}

// GetUser implements store.Users.
func (s *Store) GetUser(ctx context.Context, name string) (store.User, error) {
	var u store.User
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT name, password_hash, admin_token_id, created_at FROM users WHERE name = ?`, name).
		Scan(&u.Name, &u.PasswordHash, &u.AdminTokenID, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	u.CreatedAt = fromMicros(at)
	return u, err
}

// ListUsers implements store.Users.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, password_hash, admin_token_id, created_at FROM users ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		var at int64
		if err := rows.Scan(&u.Name, &u.PasswordHash, &u.AdminTokenID, &at); err != nil {
			return nil, err
		}
		u.CreatedAt = fromMicros(at)
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	return s.tx(ctx, false, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}
