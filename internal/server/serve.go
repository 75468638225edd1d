package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyhole-gw/keyhole/internal/admin"
	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/forward"
	"github.com/keyhole-gw/keyhole/internal/gateway"
	"github.com/keyhole-gw/keyhole/internal/httpfront"
	"github.com/keyhole-gw/keyhole/internal/metrics"
	"github.com/keyhole-gw/keyhole/internal/netguard"
	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/postgres"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/token"
	"github.com/keyhole-gw/keyhole/internal/ui"
	"github.com/keyhole-gw/keyhole/internal/vault"
	"github.com/keyhole-gw/keyhole/internal/version"
)

// MaxHeaderBytes bounds an agent request's header block (SPEC §3.4: 431 beyond).
const MaxHeaderBytes = 64 << 10

// Node is a running keyhole node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	out     io.Writer
	st      store.Store
	master  *vault.MasterKey
	m       *metrics.Metrics
	cat     *catalog.Catalog
	aw      *audit.Writer
	quotas  *quota.Tracker
	gw      *http.Server
	adm     *http.Server
	gwLn    net.Listener
	admLn   net.Listener
	fwd     *forward.Server // --forward-listen (nil: off)
	fwdLn   net.Listener
	nodeID  string
	notices []string
	// stopRetention stops the audit retention loop and waits for it.
	stopRetention func()
	// stopSweep stops the sweep of expired sessions and flows (sweep.go).
	stopSweep func()
	// sh: several nodes (cluster.go).
	sh *shared
}

// Run starts a node and serves until ctx is done or SIGTERM/SIGINT, then
// shuts down gracefully. out receives the start-up summary.
func Run(ctx context.Context, cfg Config, out io.Writer, logw io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n := &Node{cfg: cfg, out: out, log: newLogger(cfg, logw)}
	if err := n.open(ctx); err != nil {
		n.close()
		return err
	}
	return n.serve(ctx)
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	lvl := slog.LevelInfo
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opt := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opt))
	}
	return slog.New(slog.NewTextHandler(w, opt))
}

func (n *Node) open(ctx context.Context) error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("cannot create the data folder %s: %w", cfg.DataDir, err)
	}
	var err error
	switch {
	case strings.HasPrefix(cfg.Store, "sqlite://"):
		path, err := sqlite.ParseURL(cfg.Store)
		if err != nil {
			return err
		}
		if n.st, err = sqlite.Open(ctx, path, sqlite.Options{Synchronous: cfg.SQLiteSync}); err != nil {
			return err
		}
	case postgres.IsURL(cfg.Store):
		if n.st, err = n.openPostgres(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--store %q: use sqlite://PATH or postgres://…", cfg.Store)
	}
	if n.master, err = n.masterKey(); err != nil {
		return err
	}
	if err := n.checkMaster(ctx); err != nil {
		return err
	}
	if n.nodeID, err = n.nodeName(); err != nil {
		return err
	}
	if err := n.bootstrapAdmin(ctx); err != nil {
		return err
	}
	n.m = metrics.New()
	guard, err := netguard.New(cfg.AllowCIDRs)
	if err != nil {
		return err
	}
	// Several nodes (cluster.go): limits shared through Redis, the
	// refresh-token lock; then the change watcher and shared quotas.
	limits, oauth, err := n.openShared(ctx)
	if err != nil {
		return err
	}
	n.cat, err = catalog.New(ctx, catalog.Options{Store: n.st, Master: n.master, Guard: guard, Limits: limits,
		Logger: n.log, Metrics: n.m, OAuth: oauth})
	if err != nil {
		return err
	}
	qs, _ := n.st.(quota.Store)
	if n.quotas, err = quota.New(ctx, qs, n.log, n.nodeID); err != nil {
		return err
	}
	n.startShared()
	n.aw, err = audit.NewWriter(ctx, n.st, audit.Options{Node: n.nodeID, Async: cfg.AuditDurability == "async",
		FailOpen: cfg.AuditFailure == "open", Logger: n.log, Metrics: n.m,
		CheckpointKey:  n.master.DeriveKey(audit.CheckpointPurpose),
		CheckpointFile: filepath.Join(cfg.DataDir, audit.CheckpointFileName)})
	if err != nil {
		return err
	}
	n.startSweep()
	if cfg.AuditRetention != "" {
		keep, err := ParseRetention(cfg.AuditRetention)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		r := &audit.Retention{Writer: n.aw, Store: n.st, Keep: keep, Logger: n.log}
		go func() {
			defer close(done)
			r.Run(rctx, time.Hour)
		}()
		n.stopRetention = func() { cancel(); <-done }
	}
	return nil
}

// chainHeads are the audit checkpoints that verify compares the chains
// with (admin.Options.ChainHeads).
func (n *Node) chainHeads(ctx context.Context) map[string]store.ChainHead {
	h, err := n.aw.Checkpoints(ctx)
	if err != nil {
		n.log.Error("cannot read the audit checkpoints for verify", "err", err)
		return map[string]store.ChainHead{n.nodeID: {Source: audit.SourceHeads, Invalid: "its checkpoints could not be read (see the node's log)"}}
	}
	return h
}

// masterKey reads KEYHOLE_MASTER_KEY or --master-key-file; with neither and
// an embedded store it uses (or on first start generates) the data
// folder's master-key file.
func (n *Node) masterKey() (*vault.MasterKey, error) {
	path := n.cfg.MasterKeyFile
	if v := os.Getenv("KEYHOLE_MASTER_KEY"); v != "" {
		if path != "" {
			return nil, errors.New("both KEYHOLE_MASTER_KEY and --master-key-file are set; give the master key one way only")
		}
		mk, err := vault.ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("KEYHOLE_MASTER_KEY: %w", err)
		}
		return mk, nil
	}
	if path == "" {
		if !strings.HasPrefix(n.cfg.Store, "sqlite://") {
			return nil, errors.New("a shared store needs the master key: set KEYHOLE_MASTER_KEY or --master-key-file (the same key on every node)")
		}
		path = filepath.Join(n.cfg.DataDir, "master-key")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			_, b64, err := vault.GenerateMasterKey()
			if err != nil {
				return nil, err
			}
			if err := writeSecretFile(path, b64+"\n"); err != nil {
				return nil, fmt.Errorf("cannot save the generated master key: %w", err)
			}
			n.notices = append(n.notices, "master key: generated into "+path+" (0600). Production should supply its own (KEYHOLE_MASTER_KEY or --master-key-file) and keep a copy: without it the vault cannot be opened.")
			n.log.Warn("generated a master key into the data folder; production should supply its own", "file", path)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the master key file: %w", err)
	}
	mk, err := vault.ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return mk, nil
}

// writeSecretFile creates a file readable by the owner only, refusing to
// overwrite one.
func writeSecretFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkMaster binds the store to its master key: the first start records
// the key's fingerprint and creates the first data key; later starts with
// another key refuse to start, saying so.
func (n *Node) checkMaster(ctx context.Context) error {
	fp := n.master.Fingerprint()
	got, err := n.st.SetMetaIfAbsent(ctx, "master_fingerprint", fp)
	if err != nil {
		return fmt.Errorf("cannot read the store: %w", err)
	}
	if got != fp {
		return fmt.Errorf("the master key does not open this store: the store was sealed with master key %s, this node was given master key %s. Start it with the key the store was created with (KEYHOLE_MASTER_KEY or --master-key-file)", got, fp)
	}
	keys, err := n.st.Keys(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		wk, err := n.master.NewDataKey(1)
		if err != nil {
			return err
		}
		if err := n.st.AddKey(ctx, store.Key{ID: wk.ID, Wrapped: wk.Wrapped, CreatedAt: time.Now().UTC(), Active: true}); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		if keys, err = n.st.Keys(ctx); err != nil {
			return err
		}
	}
	if _, err := catalog.Keyring(n.master, keys); err != nil {
		if errors.Is(err, vault.ErrWrongMasterKey) {
			return fmt.Errorf("the master key (fingerprint %s) does not open this store's vault keys; start the node with the key the store was created with", fp)
		}
		return err
	}
	return nil
}

// nodeName is KEYHOLE_NODE_ID, else the data folder's node-id file
// (created once), so a node's audit chain continues across restarts.
func (n *Node) nodeName() (string, error) {
	if n.cfg.NodeID != "" {
		return n.cfg.NodeID, nil
	}
	path := filepath.Join(n.cfg.DataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, strings.ToLower(host))
	if host == "" {
		host = "node"
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := fmt.Sprintf("%s-%s", host, hex.EncodeToString(b))
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cannot save the node id: %w", err)
	}
	return id, nil
}

// bootstrapAdmin makes KEYHOLE_ADMIN_TOKEN an admin token, or on a first
// start without it creates one and saves it to <data dir>/admin-token.
func (n *Node) bootstrapAdmin(ctx context.Context) error {
	list, err := n.st.ListAdminTokens(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if v := os.Getenv("KEYHOLE_ADMIN_TOKEN"); v != "" {
		if err := token.ValidBootstrap(v); err != nil {
			return fmt.Errorf("KEYHOLE_ADMIN_TOKEN: %w", err)
		}
		h := token.Hash(v)
		for _, t := range list {
			if t.Hash == h {
				if t.RevokedAt != nil {
					n.log.Warn("KEYHOLE_ADMIN_TOKEN was revoked through the admin API; it stays revoked")
				}
				return nil
			}
		}
		// A new bootstrap token replaces the previous one from the
		// environment, so rotating the variable retires the old value.
		for _, t := range list {
			if t.Name == "bootstrap (KEYHOLE_ADMIN_TOKEN)" && t.RevokedAt == nil {
				if err := n.st.RevokeAdminToken(ctx, t.ID, now); err != nil {
					return err
				}
			}
		}
		n.notices = append(n.notices, "admin token: KEYHOLE_ADMIN_TOKEN was given and is an admin token")
		err := n.st.CreateAdminToken(ctx, store.AdminToken{ID: token.NewID("adm_"), Hash: h, Name: "bootstrap (KEYHOLE_ADMIN_TOKEN)", Role: "admin", CreatedAt: now})
		if errors.Is(err, store.ErrConflict) {
			return nil // several nodes starting at once: another one stored it first
		}
		return err
	}
	if len(list) > 0 {
		return nil
	}
	raw, err := token.Generate(token.Admin)
	if err != nil {
		return err
	}
	path := filepath.Join(n.cfg.DataDir, "admin-token")
	os.Remove(path) // a stale file from a deleted store
	if err := writeSecretFile(path, raw+"\n"); err != nil {
		return fmt.Errorf("cannot save the admin token: %w", err)
	}
	if err := n.st.CreateAdminToken(ctx, store.AdminToken{ID: token.NewID("adm_"), Hash: token.Hash(raw), Name: "bootstrap", Role: "admin", CreatedAt: now}); err != nil {
		return err
	}
	msg := "admin token: saved to " + path + " (0600); the keyhole CLI on this machine uses it"
	if isTerminal(n.out) {
		// SPEC §2: printed once — to a terminal only, never into a log
		// file or a journal.
		msg += "\n  it is (shown once): " + raw
	}
	n.notices = append(n.notices, msg)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (n *Node) serve(ctx context.Context) error {
	cfg := n.cfg
	var err error
	if n.gwLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("gateway listener %s: %w", cfg.Listen, err)
	}
	if n.admLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		n.gwLn.Close()
		return fmt.Errorf("admin listener %s: %w", cfg.AdminListen, err)
	}
	guard := httpfront.NewListener(n.gwLn, httpfront.Options{MaxHeaderBytes: MaxHeaderBytes}).(*httpfront.Listener)
	gw := gateway.New(gateway.Options{Catalog: n.cat, Audit: n.aw, Store: n.st, Guard: guard, HostSuffix: cfg.HostSuffix,
		Node: n.nodeID, Logger: n.log, Metrics: n.m, Ready: n.ready, Quotas: n.quotas})
	// The dashboard (internal/ui) is mounted on the admin listener and
	// calls the admin API in-process; the API accepts its session cookie.
	dash, err := ui.New(ui.Options{Store: n.st, Catalog: n.cat, Audit: n.aw, Node: n.nodeID, Logger: n.log})
	if err != nil {
		n.gwLn.Close()
		n.admLn.Close()
		return err
	}
	api := admin.New(admin.Options{Store: n.st, Catalog: n.cat, Audit: n.aw, Master: n.master, Node: n.nodeID,
		Logger: n.log, Metrics: n.m, ChainHeads: n.chainHeads, Sessions: dash, Extra: map[string]http.Handler{"/": dash}})
	dash.SetAPI(api)
	errLog := slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)
	// DisableGeneralOptionsHandler: net/http otherwise answers "OPTIONS *"
	// itself with 200, before the gateway (which refuses every target that
	// is not origin-form, SPEC §3.4) sees it, and without an audit record.
	n.gw = &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: MaxHeaderBytes, ErrorLog: errLog, DisableGeneralOptionsHandler: true}
	n.adm = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 1 << 20, ErrorLog: errLog}
	if err := n.startForward(ctx, gw); err != nil {
		n.gwLn.Close()
		n.admLn.Close()
		return err
	}
	errc := make(chan error, 3)
	go func() { errc <- n.gw.Serve(guard) }()
	go func() { errc <- n.adm.Serve(n.admLn) }()
	if n.fwd != nil {
		go func() { errc <- n.fwd.Serve(n.fwdLn) }()
	}
	n.summary()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	select {
	case <-ctx.Done():
	case s := <-sig:
		n.log.Info("shutting down", "signal", s.String(), "timeout", cfg.ShutdownTimeout)
	case err := <-errc:
		n.close()
		return err
	}
	return n.shutdown()
}

// startForward opens --forward-listen (SPEC §3.7), creating keyhole's CA
// on first use.
func (n *Node) startForward(ctx context.Context, gw *gateway.Gateway) error {
	if n.cfg.ForwardListen == "" {
		return nil
	}
	fs := forward.New(forward.Options{Gateway: gw, Store: n.st, Master: n.master, Logger: n.log, MaxHeaderBytes: MaxHeaderBytes})
	created, err := fs.EnsureCA(ctx, true)
	if err != nil {
		return fmt.Errorf("forward proxy: cannot load or create keyhole's CA: %w", err)
	}
	if created != nil {
		n.notices = append(n.notices, "forward proxy: created keyhole's CA (SHA-256 "+created.Fingerprint()+"); agents trust it from `keyhole ca export`")
	}
	if n.fwdLn, err = net.Listen("tcp", n.cfg.ForwardListen); err != nil {
		return fmt.Errorf("forward-proxy listener %s: %w", n.cfg.ForwardListen, err)
	}
	n.fwd = fs
	return nil
}

func (n *Node) summary() {
	w := n.out
	fmt.Fprintf(w, "keyhole %s serving (node %s)\n", version.String(), n.nodeID)
	fmt.Fprintf(w, "  gateway (agents): http://%s\n", n.gwLn.Addr())
	fmt.Fprintf(w, "  admin API:        http://%s/api/v1   (metrics: /metrics)\n", n.admLn.Addr())
	fmt.Fprintf(w, "  dashboard:        http://%s/\n", n.admLn.Addr())
	if n.fwdLn != nil {
		fmt.Fprintf(w, "  forward proxy:    %s\n", forward.Describe(n.fwdLn.Addr()))
	}
	fmt.Fprintf(w, "  store:            %s\n", redactURL(n.cfg.Store))
	for _, s := range n.notices {
		fmt.Fprintf(w, "  %s\n", s)
	}
	fmt.Fprintf(w, "next: printf %%s \"$API_KEY\" | keyhole secret set my-api-key   (then keyhole proxy create …; see README)\n")
}

// redactURL hides a password in a store URL.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if at := strings.LastIndex(s, "@"); at > i {
			if colon := strings.Index(s[i+3:at], ":"); colon >= 0 {
				return s[:i+3+colon+1] + "xxxxx" + s[at:]
			}
		}
	}
	return s
}

// ready is /-/ready: the store answers and takes writes, and the audit
// writer's last commit succeeded.
func (n *Node) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.st.Ping(ctx); err != nil {
		return errors.New("the store does not accept writes")
	}
	if !n.aw.Healthy() {
		return errors.New("the audit log cannot commit records")
	}
	return nil
}

// shutdown: stop accepting, let in-flight requests finish (bounded), then
// flush the audit log and close the store.
func (n *Node) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		n.adm.Shutdown(ctx)
		close(done)
	}()
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		if n.fwd != nil {
			if err := n.fwd.Shutdown(ctx); err != nil {
				n.log.Warn("forward-proxy requests did not finish before --shutdown-timeout; closing them", "err", err)
			}
		}
	}()
	if err := n.gw.Shutdown(ctx); err != nil {
		n.log.Warn("in-flight requests did not finish before --shutdown-timeout; closing them", "err", err)
		n.gw.Close()
	}
	<-done
	<-fwdDone
	n.adm.Close()
	n.close()
	n.log.Info("stopped")
	return nil
}

func (n *Node) close() {
	if n.stopSweep != nil {
		n.stopSweep()
	}
	if n.stopRetention != nil {
		n.stopRetention() // before the writer that it appends its cuts through
	}
	if n.quotas != nil {
		n.quotas.Close()
	}
	if n.aw != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.aw.Close(ctx); err != nil {
			n.log.Error("audit events could not be flushed", "err", err)
		}
		cancel()
	}
	if n.cat != nil {
		n.cat.CloseIdle()
	}
	n.closeShared()
	if n.st != nil {
		n.st.Close()
	}
}
