package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// RunDashboard runs the conformance tests of the dashboard's optional
// interfaces, store.Users and store.LogStatser, for a store that
// implements them (each subtest is skipped, saying so, when it does not).
func RunDashboard(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Users", func(t *testing.T) {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		us, ok := s.(store.Users)
		if !ok {
			t.Skip("this store does not implement store.Users")
		}
		testUsers(t, s, us)
	})
	t.Run("LogStatsAgreesWithTheAccumulator", func(t *testing.T) {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		ls, ok := s.(store.LogStatser)
		if !ok {
			t.Skip("this store does not implement store.LogStatser")
		}
		testLogStats(t, s, ls)
	})
}

func testUsers(t *testing.T, s store.Store, us store.Users) {
	ctx := t.Context()
	must(t, "CreateAdminToken", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-u1", Hash: "h-u1", Name: "user:ann", Role: "viewer", CreatedAt: at(0)}))
	must(t, "CreateAdminToken", s.CreateAdminToken(ctx, store.AdminToken{ID: "adm-u2", Hash: "h-u2", Name: "user:bob", Role: "admin", CreatedAt: at(0)}))
	ann := store.User{Name: "ann", PasswordHash: "pbkdf2-sha256$600000$c2FsdA$a2V5", AdminTokenID: "adm-u1", CreatedAt: at(1)}
	bob := store.User{Name: "bob", PasswordHash: "pbkdf2-sha256$600000$c2FsdDI$a2V5Mg", AdminTokenID: "adm-u2", CreatedAt: at(2)}
	must(t, "CreateUser", us.CreateUser(ctx, bob))
	must(t, "CreateUser", us.CreateUser(ctx, ann))
	wantErr(t, "CreateUser with an existing name", us.CreateUser(ctx, store.User{Name: "ann", PasswordHash: "x", AdminTokenID: "adm-u2", CreatedAt: at(3)}), store.ErrConflict)
	got, err := us.GetUser(ctx, "ann")
	must(t, "GetUser", err)
	if d := cmp.Diff(ann, got, opts); d != "" {
		t.Errorf("GetUser (-want +got):\n%s", d)
	}
	_, err = us.GetUser(ctx, "nobody")
	wantErr(t, "GetUser of an unknown name", err, store.ErrNotFound)
	list, err := us.ListUsers(ctx)
	must(t, "ListUsers", err)
	if d := cmp.Diff([]store.User{ann, bob}, list, opts); d != "" {
		t.Errorf("ListUsers, by name (-want +got):\n%s", d)
	}
	must(t, "DeleteUser", us.DeleteUser(ctx, "ann"))
	wantErr(t, "DeleteUser again", us.DeleteUser(ctx, "ann"), store.ErrNotFound)
	list, err = us.ListUsers(ctx)
	must(t, "ListUsers", err)
	if d := cmp.Diff([]store.User{bob}, list, opts); d != "" {
		t.Errorf("ListUsers after delete (-want +got):\n%s", d)
	}
}

func testLogStats(t *testing.T, s store.Store, ls store.LogStatser) {
	ctx := t.Context()
	loadFixture(t, s)
	rows, err := s.QueryLogs(ctx, store.LogQuery{Limit: 1000})
	must(t, "QueryLogs", err)
	tests := []struct {
		name string
		q    store.LogStatsQuery
	}{
		{"everything, 2 s buckets", store.LogStatsQuery{Since: at(0), Until: at(10), Bucket: 2 * time.Second}},
		{"without -admin, top 1", store.LogStatsQuery{Since: at(0), Until: at(10), Bucket: time.Second, ExcludeProxies: []string{"-admin"}, Top: 1}},
		{"a window", store.LogStatsQuery{Since: at(2), Until: at(5.5), Bucket: 500 * time.Millisecond, ExcludeProxies: []string{"-admin", "slack"}}},
		{"an empty window", store.LogStatsQuery{Since: at(100), Until: at(200), Bucket: time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acc := store.NewStatsAccumulator(tc.q)
			for _, r := range rows {
				acc.Add(r.Index)
			}
			want := acc.Stats()
			got, err := ls.LogStats(ctx, tc.q)
			must(t, "LogStats", err)
			o := []cmp.Option{opts,
				cmpopts.SortSlices(func(a, b store.NamedStats) bool { return a.Name < b.Name })}
			if d := cmp.Diff(want, got, o...); d != "" {
				t.Errorf("LogStats(%+v) (-accumulator +store):\n%s", tc.q, d)
			}
		})
	}
}
