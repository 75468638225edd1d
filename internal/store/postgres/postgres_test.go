package postgres

import (
	"testing"

	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/postgres/pgtest"
	"github.com/keyhole-gw/keyhole/internal/store/storetest"
)

// open opens a store on a schema of its own (pgtest), migrated.
func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), pgtest.URL(t), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	pgtest.Base(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		t.Parallel()
		return open(t)
	})
}

func TestDashboardConformance(t *testing.T) {
	pgtest.Base(t)
	storetest.RunDashboard(t, func(t *testing.T) store.Store {
		t.Parallel()
		return open(t)
	})
}

func TestSessionsConformance(t *testing.T) {
	pgtest.Base(t)
	storetest.RunSessions(t, func(t *testing.T) store.Store {
		t.Parallel()
		return open(t)
	})
}
