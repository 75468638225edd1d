// Package pgtest gives tests a PostgreSQL database of their own: a fresh
// schema on the server named by KEYHOLE_TEST_POSTGRES, dropped when the
// test ends, so tests run in parallel and leave nothing behind. Without
// the variable, the test is skipped with a message saying what to set.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the variable naming the test server.
const Env = "KEYHOLE_TEST_POSTGRES"

// Example is a value of Env for a local server with trust authentication.
const Example = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Base returns the server's URL, or skips t.
func Base(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" {
		t.Skip("PostgreSQL test skipped: set " + Env + "=" + Example +
			" (any database the user may create schemas in; .ci/run starts PostgreSQL and sets it)")
	}
	return u
}

// URL creates a schema of its own for t and returns the server's URL with
// search_path set to it. The schema and everything in it is dropped when t
// ends (after the cleanups registered later, such as closing the store).
func URL(t testing.TB) string {
	t.Helper()
	base := Base(t)
	b := make([]byte, 8)
	rand.Read(b)
	schema := "kh_test_" + hex.EncodeToString(b)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	exec(t, base, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize())
	t.Cleanup(func() { exec(t, base, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`) })
	return u.String()
}

// Exec runs sql on the server (outside any test schema).
func Exec(t testing.TB, sql string) {
	t.Helper()
	exec(t, Base(t), sql)
}

func exec(t testing.TB, base, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("cannot connect to %s: %v", Env, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
