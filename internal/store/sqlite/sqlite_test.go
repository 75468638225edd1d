package sqlite

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "keyhole.db"))
	})
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "relative", in: "sqlite://./a/b.db", want: "a/b.db"},
		{name: "relative without dot", in: "sqlite://data/keyhole.db", want: "data/keyhole.db"},
		{name: "absolute", in: "sqlite:///abs/x.db", want: "/abs/x.db"},
		{name: "cleaned", in: "sqlite:///abs/./y/../x.db", want: "/abs/x.db"},
		{name: "percent-escaped", in: "sqlite://./my%20data/k.db", want: "my data/k.db"},
		{name: "missing prefix", in: "./a/b.db", wantErr: true},
		{name: "another scheme", in: "postgres://localhost/keyhole", wantErr: true},
		{name: "scheme is case-sensitive", in: "SQLITE://./a.db", wantErr: true},
		{name: "query string", in: "sqlite://./a.db?mode=ro", wantErr: true},
		{name: "fragment", in: "sqlite://./a.db#x", wantErr: true},
		{name: "no path", in: "sqlite://", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "bad escape", in: "sqlite://./a%zz.db", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Errorf("ParseURL(%q) = %q, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestDatabaseFilesArePrivate pins the file modes: the database holds
// sealed secrets, token hashes and the audit log (request headers and
// bodies), and the WAL holds the latest of all that too.
func TestDatabaseFilesArePrivate(t *testing.T) {
	dir := t.TempDir() // exists already: Open's MkdirAll does not set its mode
	path := filepath.Join(dir, "keyhole.db")
	s := open(t, path)
	defer s.Close()
	// A write makes sure the WAL and its index exist.
	if err := s.CreateAgent(t.Context(), store.Agent{Name: "a", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(f), m)
		}
	}

	// A data folder Open creates is private too.
	sub := filepath.Join(dir, "new", "data")
	s2 := open(t, filepath.Join(sub, "keyhole.db"))
	defer s2.Close()
	fi, err := os.Stat(sub)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o700 {
		t.Errorf("created data folder has mode %#o, want 0700", m)
	}
}

// TestReopen pins that migrations are idempotent: a restart opens the
// migrated file and finds everything as it was.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "keyhole.db")
	s := open(t, path)
	if err := s.CreateAgent(ctx, store.Agent{Name: "builder", Labels: map[string]string{"team": "infra"}, CreatedAt: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s := open(t, path)
		got, err := s.GetAgent(ctx, "builder")
		if err != nil {
			t.Fatalf("reopen %d: GetAgent: %v", i, err)
		}
		if got.Labels["team"] != "infra" {
			t.Errorf("reopen %d: agent %+v", i, got)
		}
		if v2, err := s.Version(ctx); err != nil || v2 != v {
			t.Errorf("reopen %d: Version = %d, %v; want %d", i, v2, err, v)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadOnlyFile pins what a node does when its database file cannot be
// written (full disk, read-only mount, immutable file): it still opens and
// serves reads, every write fails with an error (no silent success), and
// Ping fails so that readiness reports it.
//
// Tests run as root here, and root ignores file modes: chmod 0400 would not
// make the file read-only. The immutable attribute (chattr +i) binds root
// as well, so that is what the test uses when it runs as root.
func TestReadOnlyFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "keyhole.db")
	s := open(t, path)
	if err := s.CreateAgent(ctx, store.Agent{Name: "builder", CreatedAt: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		out, err := exec.Command("chattr", "+i", path).CombinedOutput()
		if err != nil {
			t.Skipf("running as root and chattr +i is not available here (%v: %s): cannot make the file read-only", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	} else {
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(path, 0o600) })
	}
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Skip("the file is still writable: this process bypasses the read-only setting")
	}

	s = open(t, path)
	defer s.Close()
	a, err := s.GetAgent(ctx, "builder")
	if err != nil || a.Name != "builder" {
		t.Errorf("read from a read-only database: %+v, %v", a, err)
	}
	if _, err := s.Load(ctx); err != nil {
		t.Errorf("Load from a read-only database: %v", err)
	}
	writes := []struct {
		name  string
		write func() error
	}{
		{"CreateAgent", func() error { return s.CreateAgent(ctx, store.Agent{Name: "other", CreatedAt: time.Unix(2, 0)}) }},
		{"DeleteAgent", func() error { return s.DeleteAgent(ctx, "builder", time.Unix(3, 0)) }},
		{"SetMetaIfAbsent", func() error { _, err := s.SetMetaIfAbsent(ctx, "k", "v"); return err }},
		{"AppendAudit", func() error {
			return s.AppendAudit(ctx, []store.AuditEvent{{Node: "n1", Seq: 1, RecordID: "r1", Kind: "record", Data: []byte(`{"id":"r1"}`),
				PrevHash: make([]byte, 32), Hash: make([]byte, 32), Index: store.LogIndex{ID: "r1", Node: "n1", Time: time.Unix(4, 0)}}})
		}},
		{"Ping", func() error { return s.Ping(ctx) }},
		{"PingFree", func() error { return s.PingFree(ctx, 1<<20) }},
	}
	for _, w := range writes {
		err := w.write()
		if err == nil {
			t.Errorf("%s on a read-only database succeeded", w.name)
			continue
		}
		for _, sentinel := range []error{store.ErrNotFound, store.ErrConflict, store.ErrMissingRef, store.ErrInUse} {
			if errors.Is(err, sentinel) {
				t.Errorf("%s on a read-only database = %v: a storage failure must not look like %v", w.name, err, sentinel)
			}
		}
	}
	// Nothing changed.
	list, err := s.ListAgents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list {
		names = append(names, a.Name)
	}
	if d := cmp.Diff([]string{"builder"}, names); d != "" {
		t.Errorf("agents after failed writes (-want +got):\n%s", d)
	}
}

// TestPingFree: the audit writer's probe after a failure asks for room
// and writes only Ping's small value; more room than the file system has
// is refused with how much there is.
func TestPingFree(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "keyhole.db"))
	ctx := t.Context()
	if err := s.PingFree(ctx, 1<<20); err != nil {
		t.Fatalf("PingFree(1 MiB): %v", err)
	}
	err := s.PingFree(ctx, math.MaxInt)
	if err == nil || !strings.Contains(err.Error(), "bytes free; the audit log needs") {
		t.Errorf("PingFree(more than any disk) = %v; want the free space refused", err)
	}
}
