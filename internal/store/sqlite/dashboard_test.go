package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/storetest"
)

func TestDashboardConformance(t *testing.T) {
	storetest.RunDashboard(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "keyhole.db"))
	})
}

func TestSessionsConformance(t *testing.T) {
	storetest.RunSessions(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "keyhole.db"))
	})
}
