package server

// Fault tests (SPEC §3.3 step 7, §6 "Fail closed"; issue 4): each injects
// a real fault under a running node — no mock store, no fake writer:
//
//   - read-only database: chattr +i on keyhole.db and keyhole.db-wal (the
//     kernel refuses writes even through the descriptors SQLite holds open);
//   - full filesystem: the data folder on a small tmpfs, the rest of it
//     taken by a filler file until ENOSPC;
//   - locked store: another process holds SQLite's write lock (BEGIN
//     IMMEDIATE), as a backup job or an operator's sqlite3 shell would.
//
// SQLite has no server to stop, so the "store gone" of PostgreSQL (stop,
// start) has no genuine equivalent here; deleting the database file under
// a running node is not a write failure at all for SQLite (its descriptors
// still point at the unlinked file, and commits keep succeeding into it):
// TestFaultDatabaseFileDeleted pins what the node should do about that.
//
// Each test checks, during the fault: allowed requests get 503
// audit_unavailable and the upstream receives nothing; refused requests
// (a deny rule, a bad token) get 503 too (nothing is decided without a
// record); /-/health answers 200 and /-/ready 503. After the fault is
// cleared: service resumes by itself (no restart), every request the
// upstream saw has its record, and the chain verifies.
//
// Tests that a known bug makes fail are skipped with "BUG: …"; set
// KEYHOLE_FAULT_BUGS=1 to run them anyway.

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// knownBug skips t unless KEYHOLE_FAULT_BUGS=1.
func knownBug(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("KEYHOLE_FAULT_BUGS") != "1" {
		t.Skip("BUG: " + why + " (KEYHOLE_FAULT_BUGS=1 runs this check)")
	}
}

// faultClient waits longer than agentClient: while another process holds
// SQLite's write lock, a commit attempt waits out busy_timeout (10 s).
var faultClient = &http.Client{
	Timeout:       2 * time.Minute,
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 32},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// fcall is n.call through faultClient; safe to use from several goroutines
// (a transport error is returned as status 0).
func (n *testNode) fcall(method, path, tok, body string) *resp {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+n.gw+path, rd)
	if err != nil {
		return &resp{hdr: http.Header{}, body: []byte(err.Error())}
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain")
	}
	res, err := faultClient.Do(req)
	if err != nil {
		return &resp{hdr: http.Header{}, body: []byte("(no response: " + err.Error() + ")")}
	}
	r, err := readResp(res)
	if err != nil {
		r.status = 0
	}
	n.see("agent "+method+" "+path, r.dump(), false)
	return r
}

// faultFixture is a node's proxy "flt" in front of a recording upstream:
// an allow-all rule, a deny rule on /v1/forbidden/**, and capture of both
// bodies up to 256 KiB, so that records with large request bodies are
// large and the WAL must grow to take them. The upstream answers briefly
// (a large request body with a large response is what
// TestFaultLargeExchangeNotCut is about).
func faultFixture(n *testNode) fixture {
	n.t.Helper()
	f := n.fx("flt", map[string]any{"capture": map[string]any{"request_body": true, "response_body": true, "max_bytes": 256 << 10}},
		rule("no", "deny", "* /v1/forbidden/**"), allowAll)
	f.up.on("/v1/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "seen %d bytes", len(b))
	})
	return f
}

// body returns a text body of n bytes.
func body(n int) string {
	return strings.Repeat("keyhole audit fault body 0123456789 ", n/36+1)[:n]
}

// faultRun is what one scenario did, so the recovery checks can find the
// records of every request that was forwarded.
type faultRun struct {
	n  *testNode
	f  fixture
	ok []string // request ids answered 200 (forwarded)
	// base is how many requests the upstream had received when the writer
	// could no longer commit: during the fault it must receive no more.
	base int
}

// faultBegins notes the upstream's count at the start of the fault.
func (fr *faultRun) faultBegins() { fr.base = fr.f.up.count() }

// traffic sends k allowed requests (POST with a body of size bytes) and
// one denied request, checks they succeed (200, 403) and keeps their ids.
func (fr *faultRun) traffic(t *testing.T, what string, k, size int) {
	t.Helper()
	for i := range k {
		r := fr.n.fcall("POST", fmt.Sprintf("/flt/v1/items?i=%d", i), fr.f.tok, body(size))
		if r.status != http.StatusOK {
			t.Fatalf("%s: allowed request %d → want 200, got %s", what, i, r)
		}
		fr.ok = append(fr.ok, r.rid())
	}
	r := fr.n.fcall("GET", "/flt/v1/forbidden/x", fr.f.tok, "")
	wantErr(t, what+": denied request", r, http.StatusForbidden, "denied_by_rule")
}

// refusedDuringFault sends, at once, allowed requests (with and without a
// body), a request a rule denies and one with a bad token: all must get 503
// audit_unavailable, and the upstream must receive none of them.
func (fr *faultRun) refusedDuringFault(t *testing.T, size int) {
	t.Helper()
	reqs := []struct{ what, method, path, tok, body string }{
		{"allowed GET", "GET", "/flt/v1/items/1", fr.f.tok, ""},
		{"allowed POST with a body", "POST", "/flt/v1/items", fr.f.tok, body(size)},
		{"allowed POST with a body (2)", "POST", "/flt/v1/items?again=1", fr.f.tok, body(size)},
		{"denied by a rule", "GET", "/flt/v1/forbidden/x", fr.f.tok, ""},
		{"bad token", "GET", "/flt/v1/items/1", "kh_" + randString(40), ""},
	}
	got := make([]*resp, len(reqs))
	var wg sync.WaitGroup
	for i, q := range reqs {
		wg.Go(func() { got[i] = fr.n.fcall(q.method, q.path, q.tok, q.body) })
	}
	wg.Wait()
	for i, q := range reqs {
		wantErr(t, "during the fault, "+q.what, got[i], http.StatusServiceUnavailable, "audit_unavailable")
	}
	if c := fr.f.up.count(); c != fr.base {
		t.Errorf("during the fault the upstream received %d requests; want none (nothing is forwarded without its start record)", c-fr.base)
	}
}

// healthAndReady: /-/health answers 200 (the process is alive) and
// /-/ready 503 (it cannot serve) while the audit store is failing: right
// after a refused request, and again after the node has been idle for
// longer than the writer's largest backoff (1 s), when it has probed the
// store by itself.
func (fr *faultRun) healthAndReady(t *testing.T) {
	t.Helper()
	n := fr.n
	if r := n.fcall("GET", "/-/health", "", ""); r.status != http.StatusOK {
		t.Errorf("during the fault /-/health → want 200 (alive), got %s", r)
	}
	if r := n.fcall("GET", "/flt/v1/items/ready-probe", fr.f.tok, ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("during the fault: want 503, got %s", r)
	}
	if r := n.fcall("GET", "/-/ready", "", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("during the fault, right after a refused request, /-/ready → want 503, got %s", r)
	}
	time.Sleep(2500 * time.Millisecond) // idle: the writer probes the store
	t.Run("ready still answers 503 after an idle while", func(t *testing.T) {
		if r := n.fcall("GET", "/-/ready", "", ""); r.status != http.StatusServiceUnavailable {
			t.Errorf("during the fault, after 2.5 s idle, /-/ready → want 503, got %s", r)
		}
	})
	if r := n.fcall("GET", "/-/health", "", ""); r.status != http.StatusOK {
		t.Errorf("during the fault /-/health → want 200 (alive), got %s", r)
	}
}

// recover polls, once the fault is cleared, with an allowed request every
// 200 ms until one succeeds (within bound): the node must resume by itself.
func (fr *faultRun) recover(t *testing.T, bound time.Duration) {
	t.Helper()
	start := time.Now()
	tries := 0
	for {
		tries++
		r := fr.n.fcall("GET", "/flt/v1/items/poll", fr.f.tok, "")
		switch {
		case r.status == http.StatusOK:
			fr.ok = append(fr.ok, r.rid())
			t.Logf("agent requests succeed again (%d polls, %v)", tries, time.Since(start).Round(time.Millisecond))
			return
		case r.status != http.StatusServiceUnavailable:
			t.Fatalf("while recovering: want 200 or 503, got %s", r)
		case time.Since(start) > bound:
			t.Fatalf("service did not resume within %v of the fault being cleared: last answer %s\nready: %s", bound, r,
				fr.n.fcall("GET", "/-/ready", "", ""))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitReady polls /-/ready until 200 (within bound).
func (fr *faultRun) waitReady(t *testing.T, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		r := fr.n.fcall("GET", "/-/ready", "", "")
		if r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/-/ready did not answer 200 within %v of the fault being cleared: %s", bound, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// everyForwardedRecorded: every request the upstream received has its
// record (by the X-Keyhole-Request-Id it carried), complete with status
// 200; so has every request answered 200; and the chain verifies.
func (fr *faultRun) everyForwardedRecorded(t *testing.T) {
	t.Helper()
	n := fr.n
	ids := map[string]bool{}
	for _, id := range fr.ok {
		ids[id] = true
	}
	for _, r := range fr.f.up.requests() {
		id := r.Header.Get("X-Keyhole-Request-Id")
		if id == "" {
			t.Errorf("the upstream received %s %s without X-Keyhole-Request-Id", r.Method, r.RequestURI)
			continue
		}
		if !ids[id] {
			t.Errorf("the upstream received %s %s (request %s), which the agent was not answered 200 for", r.Method, r.RequestURI, id)
		}
		ids[id] = true
	}
	missing := 0
	for id := range ids {
		g := n.admin("GET", "/logs/"+url.PathEscape(id), nil)
		if g.status != http.StatusOK {
			if missing++; missing <= 5 {
				t.Errorf("request %s reached the upstream but has no audit record: GET /api/v1/logs/%s → %s", id, id, g)
			}
			continue
		}
		rec := g.obj()
		if rec["incomplete"] == true || str(rec, "status") != "200" {
			t.Errorf("record %s: want complete with status 200, got status %q incomplete=%v", id, str(rec, "status"), rec["incomplete"])
		}
	}
	if missing > 5 {
		t.Errorf("… %d forwarded requests without a record in all", missing)
	}
	if r := n.must(http.StatusOK, "POST", "/audit/verify", nil); r["ok"] != true {
		t.Errorf("POST /api/v1/audit/verify after the fault: want ok, got %v", r)
	}
}

// ---- faults ----

// chattrFault makes keyhole.db and keyhole.db-wal immutable. It skips t
// when chattr is missing or does not stop writes through an already open
// descriptor on this file system.
func chattrFault(t *testing.T, dir string) (inject, clear func()) {
	t.Helper()
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skip("chattr is not installed")
	}
	probe := filepath.Join(dir, "chattr-probe")
	f, err := os.Create(probe)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe)
	defer f.Close()
	if out, err := exec.Command("chattr", "+i", probe).CombinedOutput(); err != nil {
		t.Skipf("chattr +i does not work here (not root, or the file system has no immutable flag): %v: %s", err, out)
	}
	_, werr := f.Write([]byte("x"))
	exec.Command("chattr", "-i", probe).Run()
	if werr == nil {
		t.Skip("chattr +i does not stop writes through an open descriptor on this file system")
	}
	files := []string{filepath.Join(dir, "keyhole.db"), filepath.Join(dir, "keyhole.db-wal")}
	for _, p := range files {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the running node has no %s: %v", filepath.Base(p), err)
		}
	}
	set := func(flag string) {
		for _, p := range files {
			if out, err := exec.Command("chattr", flag, p).CombinedOutput(); err != nil {
				t.Fatalf("chattr %s %s: %v: %s", flag, p, err, out)
			}
		}
	}
	cleared := false
	t.Cleanup(func() {
		if !cleared {
			set("-i") // the node must be able to stop, and TempDir to be removed
		}
	})
	return func() { set("+i") }, func() { set("-i"); cleared = true }
}

// syncClosed is the default node: sync durability, fail closed.
func syncClosed(c *Config) { c.AuditDurability, c.AuditFailure = "sync", "closed" }

// TestFaultReadOnlyDatabase: keyhole.db and its WAL made immutable under a
// running node (sync, closed).
func TestFaultReadOnlyDatabase(t *testing.T) {
	n := startNode(t, syncClosed)
	inject, clear := chattrFault(t, n.dir)
	fr := &faultRun{n: n, f: faultFixture(n)}
	fr.traffic(t, "before the fault", 5, 4<<10)

	inject()
	fr.faultBegins()
	fr.refusedDuringFault(t, 4<<10)
	fr.healthAndReady(t)
	fr.refusedDuringFault(t, 4<<10) // still refused after the idle probe
	clear()

	fr.waitReady(t, 30*time.Second) // no traffic: the writer's probe alone
	fr.recover(t, 30*time.Second)
	fr.traffic(t, "after the fault", 5, 4<<10)
	fr.everyForwardedRecorded(t)
}

// TestFaultFullFilesystem: the data folder on an 8 MiB tmpfs; a filler file
// takes every free block (ENOSPC), records are large (64 KiB bodies
// captured) so that the WAL soon must grow; deleting the filler is the
// recovery.
func TestFaultFullFilesystem(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v: %s", err, out)
	}
	// Registered before startNode: cleanups run last-in first-out, so the
	// node has stopped when the file system is unmounted.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	n := startNode(t, syncClosed, func(c *Config) { c.Store = "sqlite://" + filepath.Join(mnt, "keyhole.db") })
	n.dir = mnt
	fr := &faultRun{n: n, f: faultFixture(n)}
	const size = 64 << 10
	fr.traffic(t, "before the fault", 5, size)

	filler := filepath.Join(mnt, "filler")
	fill := func() {
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		chunk := make([]byte, 64<<10)
		for len(chunk) > 0 {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the tmpfs: %v", err)
				}
				chunk = chunk[:len(chunk)/2] // fill the last blocks too
			}
		}
		var st syscall.Statfs_t
		syscall.Statfs(mnt, &st)
		fi, _ := f.Stat()
		t.Logf("filler: %d KiB; free blocks left: %d", fi.Size()>>10, st.Bfree)
	}
	// A node that has run for a while: its WAL has been checkpointed (in
	// the background, every 500 ms) and its space is reused.
	time.Sleep(1500 * time.Millisecond)
	for _, f := range []string{"keyhole.db", "keyhole.db-wal"} {
		if fi, err := os.Stat(filepath.Join(mnt, f)); err == nil {
			t.Logf("%s: %d KiB", f, fi.Size()>>10)
		}
	}
	fill()
	// Commits may still succeed for a while: once the background
	// checkpointer has copied the WAL into keyhole.db, SQLite writes the
	// next commits over the WAL file's existing space. Those records are
	// committed, so their requests may be forwarded. The fault is felt when
	// a file must grow: send large requests until the first one that is
	// refused (503) or whose end cannot be committed (its response is cut).
	drained := false
	for i := 0; i < 200 && !drained; i++ {
		r := n.fcall("POST", fmt.Sprintf("/flt/v1/items?drain=%d", i), fr.f.tok, body(size))
		switch r.status {
		case http.StatusOK:
			fr.ok = append(fr.ok, r.rid())
		case http.StatusServiceUnavailable:
			wantErr(t, "the first refused request", r, http.StatusServiceUnavailable, "audit_unavailable")
			drained = true
			t.Logf("the full file system was felt after %d more requests were recorded", i)
		case 0:
			// Its start was committed and it was forwarded, but its end
			// (with both bodies) could not be: the response was aborted
			// (a held response before any header, so the id is the one
			// the upstream received) instead of ending as if recorded.
			// The end is kept and committed after recovery.
			rid := r.rid()
			if rid == "" {
				rid = fr.f.up.last().Header.Get("X-Keyhole-Request-Id")
			}
			if rid == "" {
				t.Fatalf("filling: no response and nothing reached the upstream: %s", r)
			}
			fr.ok = append(fr.ok, rid)
			drained = true
			t.Logf("the full file system was felt after %d more requests were recorded: the end of request %s could not be committed, its response was aborted", i, rid)
		default:
			t.Fatalf("filling: want 200 or 503, got %s", r)
		}
	}
	if !drained {
		t.Fatalf("200 requests of %d KiB were all recorded on a full 8 MiB tmpfs", size>>10)
	}
	fr.faultBegins()
	fr.refusedDuringFault(t, size)
	fr.healthAndReady(t)
	fr.refusedDuringFault(t, size)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	fr.waitReady(t, 30*time.Second) // no traffic: the writer's probe alone
	fr.recover(t, 30*time.Second)
	fr.traffic(t, "after the fault", 5, size)
	fr.everyForwardedRecorded(t)
}

// TestFaultStoreLockedByAnotherProcess: another process (this test binary,
// as TestFaultHelperLocker) opens keyhole.db and holds SQLite's write lock
// with BEGIN IMMEDIATE; the node's commits wait out busy_timeout and fail
// with SQLITE_BUSY. Releasing the lock (the other process exits) is the
// recovery. This is the closest genuine "store unreachable" SQLite has.
func TestFaultStoreLockedByAnotherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("each commit attempt waits out SQLite's 10 s busy_timeout")
	}
	n := startNode(t, syncClosed)
	fr := &faultRun{n: n, f: faultFixture(n)}
	fr.traffic(t, "before the fault", 5, 4<<10)

	release := lockStore(t, filepath.Join(n.dir, "keyhole.db"))
	fr.faultBegins()
	fr.refusedDuringFault(t, 4<<10)
	fr.healthAndReady(t)
	release()

	fr.waitReady(t, 30*time.Second) // no traffic: the writer's probe alone
	fr.recover(t, 60*time.Second)
	fr.traffic(t, "after the fault", 5, 4<<10)
	fr.everyForwardedRecorded(t)
}

// lockStore starts the locker process and waits until it holds the write
// lock; release ends it (closing its standard input) and waits for it.
func lockStore(t *testing.T, db string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultHelperLocker$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KEYHOLE_FAULT_LOCK_DB="+db)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the locker process: %v", err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		stdin.Close()
		werr := make(chan error, 1)
		go func() { werr <- cmd.Wait() }()
		select {
		case <-werr:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill() // our own child, by its pid
			<-werr
		}
	}
	t.Cleanup(release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		release()
		t.Fatalf("the locker process did not take the lock: %q %v", line, err)
	}
	return release
}

// TestFaultHelperLocker is not a test: it is the other process of
// TestFaultStoreLockedByAnotherProcess (it runs only with
// KEYHOLE_FAULT_LOCK_DB set). It holds the database's write lock until
// its standard input closes.
func TestFaultHelperLocker(t *testing.T) {
	db := os.Getenv("KEYHOLE_FAULT_LOCK_DB")
	if db == "" {
		return
	}
	h, err := sql.Open("sqlite", "file:"+(&url.URL{Path: db}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := h.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	c.ExecContext(context.Background(), "ROLLBACK")
}

// TestFaultFailOpenReadOnly: with --audit-failure=open, requests proceed
// while the database is read-only, and their records (allowed and denied)
// are committed by themselves once it is writable again.
func TestFaultFailOpenReadOnly(t *testing.T) {
	n := startNode(t, func(c *Config) { c.AuditDurability, c.AuditFailure = "sync", "open" })
	inject, clear := chattrFault(t, n.dir)
	fr := &faultRun{n: n, f: faultFixture(n)}
	fr.traffic(t, "before the fault", 3, 4<<10)

	inject()
	before := len(fr.ok)
	fr.traffic(t, "during the fault (open)", 5, 4<<10)
	denied := n.fcall("GET", "/flt/v1/forbidden/y", fr.f.tok, "")
	wantErr(t, "during the fault (open), denied", denied, http.StatusForbidden, "denied_by_rule")
	during := fr.ok[before:]
	time.Sleep(1500 * time.Millisecond) // a few failed attempts
	clear()

	// No traffic: the writer's retries alone must commit what was kept.
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range append(during, denied.rid()) {
		for {
			r := n.admin("GET", "/logs/"+id, nil)
			if r.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("record %s of a request served during the fault did not appear within 30 s of recovery: %s", id, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if rec := n.record(denied.rid()); str(rec, "status") != "403" || str(rec, "decision") != "deny" {
		t.Errorf("the denied request's record: want 403/deny, got %s/%s", str(rec, "status"), str(rec, "decision"))
	}
	fr.waitReady(t, 30*time.Second)
	fr.traffic(t, "after the fault", 3, 4<<10)
	fr.everyForwardedRecorded(t)
}

// TestFaultAsyncReadOnly: with --audit-durability=async (fail closed),
// requests already let through when the fault starts are forwarded (the
// trade async makes), but once the writer has seen a commit fail every new
// request gets 503 and reaches no upstream; the records of the requests
// forwarded before it noticed are committed after recovery (none lost).
func TestFaultAsyncReadOnly(t *testing.T) {
	n := startNode(t, func(c *Config) { c.AuditDurability, c.AuditFailure = "async", "closed" })
	inject, clear := chattrFault(t, n.dir)
	fr := &faultRun{n: n, f: faultFixture(n)}
	fr.traffic(t, "before the fault", 3, 4<<10)
	// In async mode the answer may come before the commit: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range fr.ok {
		for n.admin("GET", "/logs/"+id, nil).status != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("record %s not committed within 10 s (async, healthy store)", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	inject()
	// A burst right at the fault: some may pass before the writer notices.
	const burst = 16
	got := make([]*resp, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() { got[i] = n.fcall("POST", fmt.Sprintf("/flt/v1/burst?i=%d", i), fr.f.tok, body(4<<10)) })
	}
	wg.Wait()
	passed := 0
	for i, r := range got {
		switch r.status {
		case http.StatusOK:
			passed++
			fr.ok = append(fr.ok, r.rid())
		case http.StatusServiceUnavailable:
			wantErr(t, fmt.Sprintf("burst request %d", i), r, http.StatusServiceUnavailable, "audit_unavailable")
		default:
			t.Errorf("burst request %d: want 200 or 503, got %s", i, r)
		}
	}
	// Then until the writer has noticed (a 503), sequentially.
	noticed := passed < burst
	for i := 0; !noticed; i++ {
		if i > 200 {
			t.Fatalf("200 requests after the fault began were all forwarded: the async writer never refused")
		}
		r := n.fcall("GET", "/flt/v1/items/wait", fr.f.tok, "")
		switch r.status {
		case http.StatusOK:
			passed++
			fr.ok = append(fr.ok, r.rid())
		case http.StatusServiceUnavailable:
			noticed = true
		default:
			t.Fatalf("want 200 or 503, got %s", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d requests were forwarded before the async writer noticed the fault", passed)
	fr.faultBegins()
	fr.refusedDuringFault(t, 4<<10)
	time.Sleep(1500 * time.Millisecond) // idle, failing retries
	fr.refusedDuringFault(t, 4<<10)
	if r := n.fcall("GET", "/-/health", "", ""); r.status != http.StatusOK {
		t.Errorf("during the fault /-/health → want 200, got %s", r)
	}
	if r := n.fcall("GET", "/-/ready", "", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("during the fault /-/ready → want 503, got %s", r)
	}
	clear()

	fr.waitReady(t, 30*time.Second) // no traffic: the writer's probe alone
	fr.recover(t, 30*time.Second)
	// The records of the requests forwarded during the fault are committed
	// by the writer's retries; in async mode the answer does not wait.
	deadline = time.Now().Add(30 * time.Second)
	for _, id := range fr.ok {
		for {
			r := n.admin("GET", "/logs/"+id, nil)
			if r.status == http.StatusOK && str(r.obj(), "status") == "200" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("record %s of a forwarded request is not committed (complete) within 30 s of recovery: %s", id, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fr.traffic(t, "after the fault", 3, 4<<10)
	time.Sleep(500 * time.Millisecond) // async: let the last records commit
	fr.everyForwardedRecorded(t)
}

// TestFaultDatabaseFileDeleted: deleting keyhole.db (and its WAL) under a
// running node is the nearest thing to "the store is gone" for SQLite. It
// is not a write failure: SQLite keeps writing through its open
// descriptors into the unlinked files, which vanish when the node stops,
// so every record committed meanwhile is lost. A fail-closed node should
// notice (e.g. Ping comparing the path's inode with the open file's, or
// SQLITE_FCNTL_HAS_MOVED) and refuse.
func TestFaultDatabaseFileDeleted(t *testing.T) {
	n := startNode(t, syncClosed)
	fr := &faultRun{n: n, f: faultFixture(n)}
	fr.traffic(t, "before the fault", 2, 1<<10)
	fr.faultBegins()
	for _, f := range []string{"keyhole.db", "keyhole.db-wal", "keyhole.db-shm"} {
		os.Remove(filepath.Join(n.dir, f))
	}
	fr.refusedDuringFault(t, 1<<10)
	if r := n.fcall("GET", "/-/ready", "", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("with keyhole.db deleted /-/ready → want 503, got %s", r)
	}
}

// TestFaultLargeExchangeNotCut: on a healthy node, a POST with a 64 KiB
// body whose upstream answers 64 KiB (chunked) must arrive whole. Found by
// TestFaultFullFilesystem under -race: a few percent of such exchanges are
// cut part-way through the response body (the agent reads "unexpected
// EOF" after 35–64 KiB); the node logs "httputil:
// ReverseProxy read error during body copy: read tcp …->upstream: use of
// closed network connection" and records the request as error /
// upstream_aborted "the response was cut off", although the upstream
// answered in full. Neither the agent's request context nor the forward
// context was cancelled. Not seen with a small request body, a small
// response, or without -race (0 of 300), so it is a narrow window; run
// with: KEYHOLE_FAULT_BUGS=1 go test -race -run FaultLargeExchangeNotCut.
func TestFaultLargeExchangeNotCut(t *testing.T) {
	n := startNode(t)
	f := n.fx("big", map[string]any{"capture": map[string]any{"request_body": true, "response_body": true, "max_bytes": 256 << 10}}, allowAll)
	f.up.on("/v1/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body(len(b)))
	})
	const tries = 300
	cut := 0
	for i := range tries {
		r := n.fcall("POST", fmt.Sprintf("/big/v1/items?i=%d", i), f.tok, body(64<<10))
		if r.status == http.StatusOK && len(r.body) == 64<<10 {
			continue
		}
		if cut++; cut <= 3 {
			rec := n.admin("GET", "/logs/"+url.PathEscape(r.rid()), nil).obj()
			t.Errorf("request %d: want 200 with 64 KiB, got status %d with %d bytes; record: decision %s, reason %s, error %q",
				i, r.status, len(r.body), str(rec, "decision"), str(rec, "reason"), str(rec, "error"))
		}
	}
	if cut > 0 {
		t.Errorf("%d of %d exchanges were cut", cut, tries)
	}
}

// TestFaultEndNotCommittedResponseNotEnded: SPEC §6 sync durability, "its
// completion is committed before the response ends". The store becomes
// read-only while a request is at the upstream: its start is committed,
// its end cannot be. The agent must then not receive a response that ends
// as if it were recorded (the gateway should cut it, as it cuts a response
// that fails mid-stream); the end is kept and committed once the store
// recovers, so the record is complete in the end.
func TestFaultEndNotCommittedResponseNotEnded(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int // response body bytes: ≤ 64 KiB is held until the end is recorded, larger is streamed
	}{{"held small response", 100}, {"streamed large response", 200 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, syncClosed)
			inject, clear := chattrFault(t, n.dir)
			fr := &faultRun{n: n, f: faultFixture(n)}
			arrived, gate := make(chan struct{}, 1), make(chan struct{})
			fr.f.up.on("/v1/slow", func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", fmt.Sprint(tc.size))
				io.WriteString(w, body(tc.size))
			})
			fr.traffic(t, "before the fault", 1, 1<<10)
			got := make(chan *resp, 1)
			go func() { got <- n.fcall("GET", "/flt/v1/slow", fr.f.tok, "") }()
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
				t.Fatal("the request did not reach the upstream")
			}
			inject()
			close(gate)
			r := <-got
			// The agent's response may be aborted (no headers at all): the
			// request's id is the one the upstream received.
			rid := fr.f.up.last().Header.Get("X-Keyhole-Request-Id")
			fr.ok = append(fr.ok, rid)
			if r.status == http.StatusOK && len(r.body) == tc.size {
				t.Errorf("the agent received a complete 200 (%d bytes) although its completion could not be committed", tc.size)
			}
			clear()
			fr.waitReady(t, 30*time.Second)
			deadline := time.Now().Add(30 * time.Second)
			for {
				g := n.admin("GET", "/logs/"+url.PathEscape(rid), nil)
				if g.status == http.StatusOK && g.obj()["incomplete"] != true {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the end of request %s was not committed within 30 s of recovery: %s", rid, g)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
