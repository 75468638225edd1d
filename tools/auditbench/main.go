// Command auditbench measures keyhole's audit log at scale (issue 4, "Done
// when"; docs/performance.md): it writes N records into a fresh SQLite
// store through the real group-commit writer (audit.Writer, sync mode:
// every Begin, Finish and Record waits for its commit), many producers at
// once, each record with a captured request and response body; then it
// reports records/s, events/s and the file size, and times the queries of
// GET /api/v1/logs at that size: through the store's QueryLogs (what the
// API runs) and, with -api, through a real node's admin API.
//
//	go run ./tools/auditbench -n 1000000 -body 1024
//	go run ./tools/auditbench -n 100000 -queries 50 -api=false   # a quick look
//
// The records are spread over -span of synthetic time (ids are UUIDv7 of
// that time, as the gateway's are of the real time), over 10 proxies and
// 50 agents, with 5% refusals. It prints Markdown tables, with the machine
// in the header, ready to paste into docs/performance.md. No timing is
// asserted anywhere: the numbers are for people to read.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/metrics"
	"github.com/keyhole-gw/keyhole/internal/server"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/version"
)

var (
	flagN         = flag.Int("n", 1000000, "records to write")
	flagBody      = flag.Int("body", 1024, "bytes of each captured body (request and response)")
	flagProducers = flag.Int("producers", 64, "concurrent producers (each waits for its commits, as requests do)")
	flagQueries   = flag.Int("queries", 200, "timed queries per filter")
	flagSpan      = flag.Duration("span", 7*24*time.Hour, "synthetic time the records are spread over (ending now)")
	flagWindow    = flag.Duration("window", time.Hour, "width of the since/until window queried")
	flagDir       = flag.String("dir", "", "folder for the database (default: a new temporary folder, removed at the end)")
	flagKeep      = flag.Bool("keep", false, "keep the database folder")
	flagSync      = flag.String("sqlite-synchronous", "NORMAL", "NORMAL or FULL, as keyhole serve --sqlite-synchronous")
	flagAPI       = flag.Bool("api", true, "also time the queries through a real node's admin API (GET /api/v1/logs)")
	flagExplain   = flag.Bool("explain", false, "print EXPLAIN QUERY PLAN of every filter (always printed for a filter whose p95 misses the target)")
	flagSeed      = flag.Uint64("seed", 1, "random seed of the workload and the query parameters")
)

// target is issue 4's goal for a filtered page at a million records.
const target = 100 * time.Millisecond

var (
	proxies  = []string{"stripe", "github", "openai", "slack", "twilio", "sendgrid", "aws-s3", "notion", "linear", "jira"}
	agents   []string
	statuses = []weighted{{200, 74}, {201, 8}, {204, 2}, {400, 3}, {403, 1}, {404, 5}, {429, 2}, {500, 3}, {502, 2}}
	methods  = []weighted{{0, 60}, {1, 30}, {2, 6}, {3, 4}} // GET POST PATCH DELETE
	verbs    = []string{"GET", "POST", "PATCH", "DELETE"}
	refusals = []refusal{{403, "denied_by_rule:", 70}, {403, "no_rule_allows", 15}, {401, "bad_token", 10}, {429, "rate_limited", 5}}
	queried  = []int{200, 404, 500, 403} // statuses of the proxy+status filter
)

type weighted struct{ v, w int }

type refusal struct {
	status int
	reason string
	w      int
}

func pick(r *mrand.Rand, ws []weighted) int {
	total := 0
	for _, x := range ws {
		total += x.w
	}
	n := r.IntN(total)
	for _, x := range ws {
		if n < x.w {
			return x.v
		}
		n -= x.w
	}
	return ws[len(ws)-1].v
}

func main() {
	flag.Parse()
	for i := range 50 {
		agents = append(agents, fmt.Sprintf("agent-%02d", i))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "auditbench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	dir := *flagDir
	if dir == "" {
		d, err := os.MkdirTemp("", "auditbench-")
		if err != nil {
			return err
		}
		dir = d
		if !*flagKeep {
			defer os.RemoveAll(dir)
		}
	}
	path := filepath.Join(dir, "keyhole.db")
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists: the benchmark writes into a fresh store (remove it or pick another -dir)", path)
	}
	machine()
	fmt.Printf("workload: %d records, %d B request + %d B response body captured per forwarded request, %d producers, "+
		"%d proxies, %d agents, 5%% refused, spread over %v; SQLite synchronous=%s\n\n",
		*flagN, *flagBody, *flagBody, *flagProducers, len(proxies), len(agents), *flagSpan, *flagSync)

	st, err := sqlite.Open(ctx, path, sqlite.Options{Synchronous: *flagSync})
	if err != nil {
		return err
	}
	if err := writeRecords(ctx, st); err != nil {
		st.Close()
		return err
	}

	// Sizes after a checkpoint that moves the WAL into the database.
	if err := checkpoint(path); err != nil {
		fmt.Fprintln(os.Stderr, "checkpoint:", err)
	}
	db, wal := size(path), size(path+"-wal")
	fmt.Printf("| database file (after a checkpoint) | %s (keyhole.db %s + keyhole.db-wal %s) |\n", human(db+wal), human(db), human(wal))
	fmt.Printf("| per record | %.0f B |\n\n", float64(db+wal)/float64(*flagN))

	slow := queryStore(ctx, st)
	if *flagExplain || len(slow) > 0 {
		explain(path, slow)
	}
	for _, f := range filters() {
		isSlow := slices.ContainsFunc(slow, func(s filter) bool { return s.name == f.name })
		if f.window && (isSlow || *flagExplain) {
			idBounds(path, f)
		}
	}
	st.Close()
	if *flagAPI {
		if err := queryAPI(ctx, path); err != nil {
			fmt.Fprintln(os.Stderr, "admin API queries:", err)
		}
	}
	if *flagKeep || *flagDir != "" {
		fmt.Printf("\ndatabase kept in %s\n", dir)
	}
	return nil
}

// machine prints the header: what the numbers were measured on.
func machine() {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		mem = fmt.Sprintf(", %d GiB RAM", (kb+(1<<19))>>20)
	}
	fmt.Printf("## audit log at %d records (tools/auditbench)\n\n", *flagN)
	fmt.Printf("machine: %d CPUs (nproc), %s%s%s; %s, GOMAXPROCS=%d; keyhole %s; %s\n",
		runtime.NumCPU(), cpu, mem, kernel, runtime.Version(), runtime.GOMAXPROCS(0), version.String(), time.Now().UTC().Format("2006-01-02"))
}

// ---- writing ----

// newID is a UUIDv7 of time t (the gateway's ids are UUIDv7 of the real
// time: sortable, so keyset paging by id is paging by time).
func newID(t time.Time) string {
	var u uuid.UUID
	rand.Read(u[:])
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(u[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(u[2:6], uint32(ms))
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u.String()
}

// textBody is a JSON body of exactly n bytes of varied text.
func textBody(r *mrand.Rand, n int) []byte {
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	if n < 12 {
		n = 12
	}
	b := make([]byte, n)
	copy(b, `{"data":"`)
	for i := 9; i < n-2; i++ {
		b[i] = alpha[r.IntN(len(alpha))]
	}
	copy(b[n-2:], `"}`)
	return b
}

// spanEnd is the time of the newest record: the records are spread over
// [spanEnd - span, spanEnd).
var spanEnd = time.Now().UTC()

func writeRecords(ctx context.Context, st *sqlite.Store) error {
	m := metrics.New()
	w, err := audit.NewWriter(ctx, st, audit.Options{Node: "bench-node", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m})
	if err != nil {
		return err
	}
	n := int64(*flagN)
	begin := spanEnd.Add(-*flagSpan)
	step := *flagSpan / time.Duration(max(n, 1))
	var next, done, events, denied atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	stop := make(chan struct{})
	go func() { // progress on stderr
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		last, lastAt := int64(0), start
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "  %d/%d records, %.0f records/s now, %.0f overall\n", d, n,
					float64(d-last)/now.Sub(lastAt).Seconds(), float64(d)/now.Sub(start).Seconds())
				last, lastAt = d, now
			}
		}
	}()
	var wg sync.WaitGroup
	for p := range *flagProducers {
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(*flagSeed, uint64(p)))
			hdr := map[string][]string{"Accept": {"application/json"}, "User-Agent": {"agent-sdk/1.4 (python 3.12)"},
				"Authorization": {"[REDACTED]"}, "Content-Type": {"application/json"}}
			rhdr := map[string][]string{"Content-Type": {"application/json"}, "Date": {"Thu, 26 Nov 2026 07:20:05 GMT"}}
			for {
				i := next.Add(1) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				at := begin.Add(time.Duration(i) * step)
				ag := r.IntN(len(agents))
				px := proxies[r.IntN(len(proxies))]
				s := &audit.Start{ID: newID(at), Time: at, Node: "bench-node", Agent: agents[ag], TokenID: fmt.Sprintf("tok_%02d", ag),
					Proxy: px, Method: verbs[pick(r, methods)], Path: fmt.Sprintf("/v1/customers/cus_%08d/charges", r.IntN(1e8)),
					Query: "limit=10&expand=data", Decision: audit.Allow, Rule: "allow-" + px, RequestHeaders: hdr, SecretVersion: 3}
				var err error
				if r.IntN(100) < 5 { // a refusal: one whole record
					f := refusals[pickRefusal(r)]
					s.Decision, s.Reason, s.Rule = audit.Deny, f.reason, ""
					if strings.HasSuffix(f.reason, ":") {
						s.Rule = "no-deletes"
						s.Reason += s.Rule
					}
					err = w.Record(ctx, s, &audit.End{Status: f.status, LatencyMS: 0.2 + r.Float64()})
					events.Add(1)
					denied.Add(1)
				} else {
					if err = w.Begin(ctx, s); err == nil {
						e := &audit.End{Status: pick(r, statuses), LatencyMS: 20 + 200*r.Float64(), UpstreamLatencyMS: 18 + 200*r.Float64(),
							Upstream: true, RequestBytes: int64(*flagBody), ResponseBytes: int64(*flagBody),
							RequestBody:  &audit.Body{Data: textBody(r, *flagBody)},
							ResponseBody: &audit.Body{Data: textBody(r, *flagBody)}, ResponseHeaders: rhdr}
						err = w.Finish(ctx, s.ID, e)
					}
					events.Add(2)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		return err
	}
	if e := firstErr.Load(); e != nil {
		return fmt.Errorf("writing: %v", e)
	}
	commits, commitSecs := histCount(m, "keyhole_audit_commit_seconds")
	evs := events.Load()
	fmt.Printf("### writing (audit.Writer, sync: each producer waits for every commit)\n\n")
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| records written | %d (%d forwarded = start + end events, %d refused = one event) |\n", done.Load(), done.Load()-denied.Load(), denied.Load())
	fmt.Printf("| time | %.1f s |\n", elapsed.Seconds())
	fmt.Printf("| records/s | %.0f |\n", float64(done.Load())/elapsed.Seconds())
	fmt.Printf("| events/s (commits of start, end, refusal) | %.0f |\n", float64(evs)/elapsed.Seconds())
	if commits > 0 {
		fmt.Printf("| transactions | %d (%.1f events each on average, %.2f ms each on average) |\n", commits, float64(evs)/float64(commits),
			commitSecs*1000/float64(commits))
	}
	return nil
}

func pickRefusal(r *mrand.Rand) int {
	n := r.IntN(100)
	for i, f := range refusals {
		if n < f.w {
			return i
		}
		n -= f.w
	}
	return 0
}

// histCount reads a histogram's sample count and sum from the registry.
func histCount(m *metrics.Metrics, name string) (uint64, float64) {
	mfs, err := m.Registry.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}

// checkpoint moves the WAL into the database file and truncates it, as
// SQLite does when the last connection closes.
func checkpoint(path string) error {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}

func size(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func human(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", b>>10)
	}
}

// ---- querying ----

// filter is one kind of GET /api/v1/logs page: make returns the query
// (and its API query string) for the i-th random trial.
type filter struct {
	name   string
	make   func(r *mrand.Rand) (store.LogQuery, url.Values)
	deep   bool // page 50: walk 49 pages first, time the 50th
	window bool // has since= and until=
}

func filters() []filter {
	begin := spanEnd.Add(-*flagSpan)
	window := func(r *mrand.Rand) (time.Time, time.Time) {
		s := begin.Add(time.Duration(r.Int64N(int64(*flagSpan - *flagWindow))))
		return s, s.Add(*flagWindow)
	}
	return []filter{
		{name: "newest page, no filter", make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			return store.LogQuery{}, url.Values{}
		}},
		{name: "proxy=", make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			p := proxies[r.IntN(len(proxies))]
			return store.LogQuery{Proxy: p}, url.Values{"proxy": {p}}
		}},
		{name: "agent=", make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			a := agents[r.IntN(len(agents))]
			return store.LogQuery{Agent: a}, url.Values{"agent": {a}}
		}},
		{name: "status=403", make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			return store.LogQuery{Status: 403}, url.Values{"status": {"403"}}
		}},
		{name: "decision=deny", make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			return store.LogQuery{Decision: audit.Deny}, url.Values{"decision": {"deny"}}
		}},
		{name: "proxy= & status=", make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			p, s := proxies[r.IntN(len(proxies))], queried[r.IntN(len(queried))]
			return store.LogQuery{Proxy: p, Status: s}, url.Values{"proxy": {p}, "status": {fmt.Sprint(s)}}
		}},
		{name: fmt.Sprintf("since= & until= (%v window)", *flagWindow), window: true, make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			s, u := window(r)
			return store.LogQuery{Since: s, Until: u}, url.Values{"since": {s.Format(time.RFC3339Nano)}, "until": {u.Format(time.RFC3339Nano)}}
		}},
		{name: fmt.Sprintf("proxy= & since= & until= (%v)", *flagWindow), window: true, make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			p := proxies[r.IntN(len(proxies))]
			s, u := window(r)
			return store.LogQuery{Proxy: p, Since: s, Until: u}, url.Values{"proxy": {p}, "since": {s.Format(time.RFC3339Nano)}, "until": {u.Format(time.RFC3339Nano)}}
		}},
		{name: "page 50 by cursor, no filter", deep: true, make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			return store.LogQuery{}, url.Values{}
		}},
		{name: "page 50 by cursor, proxy=", deep: true, make: func(r *mrand.Rand) (store.LogQuery, url.Values) {
			p := proxies[r.IntN(len(proxies))]
			return store.LogQuery{Proxy: p}, url.Values{"proxy": {p}}
		}},
	}
}

type stats struct {
	d    []time.Duration
	rows int
}

func (s *stats) pct(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	slices.Sort(s.d)
	i := int(p*float64(len(s.d))+0.5) - 1
	return s.d[min(max(i, 0), len(s.d)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// cursorAt walks 49 pages of q (ids only) and returns the id that page 50
// starts below, or "" when there are fewer pages.
func cursorAt(ctx context.Context, st *sqlite.Store, q store.LogQuery) (string, error) {
	q.Limit, q.WithData = 100, false
	for range 49 {
		rows, err := st.QueryLogs(ctx, q)
		if err != nil {
			return "", err
		}
		if len(rows) < 100 {
			return "", nil
		}
		q.Before = rows[len(rows)-1].Index.ID
	}
	return q.Before, nil
}

// queryStore times each filter through QueryLogs as GET /api/v1/logs runs
// it (limit 100, with the events' data); it returns the filters whose p95
// misses the target.
func queryStore(ctx context.Context, st *sqlite.Store) []filter {
	fmt.Printf("### GET /logs pages through the store (QueryLogs, limit 100, with data; %d random queries per filter)\n\n", *flagQueries)
	fmt.Printf("| filter | rows/page | p50 ms | p95 ms | p99 ms | max ms | index only p95 ms |\n|---|---|---|---|---|---|---|\n")
	var slow []filter
	for fi, f := range filters() {
		r := mrand.New(mrand.NewPCG(*flagSeed, 1000+uint64(fi)))
		var full, idx stats
		for range *flagQueries {
			q, _ := f.make(r)
			if f.deep {
				c, err := cursorAt(ctx, st, q)
				if err != nil {
					fmt.Fprintln(os.Stderr, f.name, err)
					break
				}
				q.Before = c
			}
			q.Limit = 100
			q.WithData = false
			t0 := time.Now()
			if _, err := st.QueryLogs(ctx, q); err != nil {
				fmt.Fprintln(os.Stderr, f.name, err)
				break
			}
			idx.d = append(idx.d, time.Since(t0))
			q.WithData = true
			t0 = time.Now()
			rows, err := st.QueryLogs(ctx, q)
			if err != nil {
				fmt.Fprintln(os.Stderr, f.name, err)
				break
			}
			full.d = append(full.d, time.Since(t0))
			full.rows += len(rows)
		}
		n := max(len(full.d), 1)
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s |\n", f.name, full.rows/n, ms(full.pct(.5)), ms(full.pct(.95)), ms(full.pct(.99)),
			ms(full.pct(1)), ms(idx.pct(.95)))
		if full.pct(.95) >= target {
			slow = append(slow, f)
		}
	}
	fmt.Printf("\ntarget: p95 < %v for a filtered page", target)
	if len(slow) == 0 {
		fmt.Printf(" — met by every filter\n\n")
	} else {
		names := make([]string, len(slow))
		for i, f := range slow {
			names[i] = f.name
		}
		fmt.Printf(" — MISSED by: %s\n\n", strings.Join(names, "; "))
	}
	return slow
}

// explain prints SQLite's plan of each filter's SQL. The SQL is built here
// the way internal/store/sqlite QueryLogs builds it (keep the two alike).
func explain(path string, only []filter) {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro")
	if err != nil {
		fmt.Fprintln(os.Stderr, "explain:", err)
		return
	}
	defer db.Close()
	list := only
	if *flagExplain {
		list = filters()
	}
	fmt.Printf("### EXPLAIN QUERY PLAN\n\n")
	for _, f := range list {
		q, _ := f.make(mrand.New(mrand.NewPCG(1, 1)))
		if f.deep {
			q.Before = "01a20000-0000-7000-8000-000000000000"
		}
		var where []string
		var args []any
		add := func(c string, v any) { where = append(where, c); args = append(args, v) }
		if q.Proxy != "" {
			add("proxy = ?", q.Proxy)
		}
		if q.Agent != "" {
			add("agent = ?", q.Agent)
		}
		if q.Decision != "" {
			add("decision = ?", q.Decision)
		}
		if q.Status != 0 {
			add("status = ?", q.Status)
		}
		if !q.Since.IsZero() {
			add("time >= ?", q.Since.UnixMicro())
		}
		if !q.Until.IsZero() {
			add("time < ?", q.Until.UnixMicro())
		}
		if q.Before != "" {
			add("id < ?", q.Before)
		}
		s := "SELECT * FROM audit_records"
		if len(where) > 0 {
			s += " WHERE " + strings.Join(where, " AND ")
		}
		s += " ORDER BY id DESC LIMIT 101"
		fmt.Printf("%s:\n    %s\n", f.name, s)
		rows, err := db.Query("EXPLAIN QUERY PLAN "+s, args...)
		if err != nil {
			fmt.Printf("    (%v)\n", err)
			continue
		}
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			fmt.Printf("    → %s\n", detail)
		}
		rows.Close()
	}
	fmt.Println()
}

// idBounds shows what a slow time-window filter costs when the window is
// also given as a range of ids: ids are UUIDv7, whose first 48 bits are the
// millisecond, so every (column, id) index can then seek straight to the
// window instead of walking back from the newest record. The bounds are
// widened by a second (a record's id and its time are taken a moment
// apart); the time condition still decides. A suggestion for
// internal/store/sqlite QueryLogs, timed here on the index query alone.
func idBounds(path string, f filter) {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro")
	if err != nil {
		return
	}
	defer db.Close()
	bound := func(t time.Time) string {
		ms := uint64(t.UnixMilli())
		return fmt.Sprintf("%08x-%04x-7000-8000-000000000000", ms>>16, ms&0xffff)
	}
	build := func(q store.LogQuery, ids bool) (string, []any) {
		where, args := []string{"time >= ?", "time < ?"}, []any{q.Since.UnixMicro(), q.Until.UnixMicro()}
		if q.Proxy != "" {
			where, args = append([]string{"proxy = ?"}, where...), append([]any{q.Proxy}, args...)
		}
		if ids {
			where = append(where, "id >= ?", "id < ?")
			args = append(args, bound(q.Since.Add(-time.Second)), bound(q.Until.Add(time.Second)))
		}
		return "SELECT * FROM audit_records WHERE " + strings.Join(where, " AND ") + " ORDER BY id DESC LIMIT 101", args
	}
	fmt.Printf("### %s, with the window also as an id range (suggestion)\n\n", f.name)
	r := mrand.New(mrand.NewPCG(*flagSeed, 77))
	var as, bs stats
	for range *flagQueries {
		q, _ := f.make(r)
		for _, v := range []struct {
			ids bool
			s   *stats
		}{{false, &as}, {true, &bs}} {
			s, args := build(q, v.ids)
			t0 := time.Now()
			rows, err := db.Query(s, args...)
			if err != nil {
				fmt.Println("   ", err)
				return
			}
			for rows.Next() {
				v.s.rows++
			}
			rows.Close()
			v.s.d = append(v.s.d, time.Since(t0))
		}
	}
	q, _ := f.make(r)
	s, args := build(q, true)
	fmt.Printf("    %s\n", s)
	if rows, err := db.Query("EXPLAIN QUERY PLAN "+s, args...); err == nil {
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			fmt.Printf("    → %s\n", detail)
		}
		rows.Close()
	}
	fmt.Printf("\n| index query (no event data) | rows | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|\n")
	fmt.Printf("| as QueryLogs runs it | %d | %s | %s | %s |\n", as.rows/len(as.d), ms(as.pct(.5)), ms(as.pct(.95)), ms(as.pct(.99)))
	fmt.Printf("| with id >= ? AND id < ? added | %d | %s | %s | %s |\n\n", bs.rows/len(bs.d), ms(bs.pct(.5)), ms(bs.pct(.95)), ms(bs.pct(.99)))
}

// queryAPI starts a real node (keyhole serve, in process) on the database
// and times the same filters through GET /api/v1/logs, responses read and
// decoded as a client would.
func queryAPI(ctx context.Context, path string) error {
	admTok := "bench-" + strings.ReplaceAll(base64.RawURLEncoding.EncodeToString(randBytes(30)), "-", "x")
	os.Setenv("KEYHOLE_ADMIN_TOKEN", admTok)
	key := base64.StdEncoding.EncodeToString(randBytes(32))
	os.Setenv("KEYHOLE_MASTER_KEY", key)
	gw, adm := freeAddr(), freeAddr()
	cfg := server.Config{Listen: gw, AdminListen: adm, Store: "sqlite://" + path, AuditDurability: "sync", AuditFailure: "closed",
		LogLevel: "error", LogFormat: "text", SQLiteSync: *flagSync, ShutdownTimeout: 5 * time.Second}
	nctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- server.Run(nctx, cfg, io.Discard, os.Stderr) }()
	defer func() {
		cancel()
		<-done
	}()
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, err := c.Get("http://" + gw + "/-/health"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("the node stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the node did not start within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	get := func(v url.Values) (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+adm+"/api/v1/logs?"+v.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+admTok)
		res, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		var page struct {
			Records    []json.RawMessage `json:"records"`
			NextCursor string            `json:"next_cursor"`
		}
		if res.StatusCode != 200 {
			b, _ := io.ReadAll(res.Body)
			return 0, "", fmt.Errorf("%s: %s", res.Status, b)
		}
		if err := json.NewDecoder(res.Body).Decode(&page); err != nil {
			return 0, "", err
		}
		return len(page.Records), page.NextCursor, nil
	}
	fmt.Printf("### GET /api/v1/logs through a node's admin API (HTTP on loopback, JSON decoded; %d random queries per filter)\n\n", *flagQueries)
	fmt.Printf("| filter | rows/page | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n")
	for fi, f := range filters() {
		r := mrand.New(mrand.NewPCG(*flagSeed, 1000+uint64(fi)))
		var s stats
		trials := *flagQueries
		if f.deep {
			// Each trial walks 49 pages through HTTP first: fewer trials.
			trials = min(trials, 50)
			f.name += fmt.Sprintf(" (%d queries)", trials)
		}
		for range trials {
			_, v := f.make(r)
			if f.deep { // walk 49 pages by next_cursor, untimed
				for range 49 {
					_, next, err := get(v)
					if err != nil {
						return err
					}
					v.Set("cursor", next)
				}
			}
			t0 := time.Now()
			n, _, err := get(v)
			if err != nil {
				return fmt.Errorf("%s: %v", f.name, err)
			}
			s.d = append(s.d, time.Since(t0))
			s.rows += n
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", f.name, s.rows/max(len(s.d), 1), ms(s.pct(.5)), ms(s.pct(.95)), ms(s.pct(.99)), ms(s.pct(1)))
	}
	fmt.Println()
	return nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
