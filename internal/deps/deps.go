//go:build tools

// Package deps pins modules that packages under construction import, so
// their go.sum entries exist before the code does (the "tools.go" pattern;
// never built). Remove an import once real code imports it.
package deps

import (
	_ "github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/pressly/goose/v3"
	_ "github.com/redis/go-redis/v9"
)
