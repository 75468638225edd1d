//go:build tools

// Package deps pins modules that packages under construction import, so
// their go.sum entries exist before the code does (the "tools.go" pattern;
// never built). Remove an import once real code imports it.
package deps

import (
	_ "github.com/pressly/goose/v3"
)
