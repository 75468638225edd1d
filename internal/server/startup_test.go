package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A node given another master key than the one its store was sealed with
// refuses to start and says why, naming both fingerprints and never the key.
func TestWrongMasterKeyRefusesToStart(t *testing.T) {
	n := startNode(t)
	n.secret("k", canary())
	n.stop()

	other := make([]byte, 32)
	rand.Read(other)
	otherB64 := base64.StdEncoding.EncodeToString(other)
	t.Setenv("KEYHOLE_MASTER_KEY", otherB64)
	var out, errOut syncBuffer
	cfg := Config{Listen: freeAddr(t), AdminListen: freeAddr(t), Store: "sqlite://" + filepath.Join(n.dir, "keyhole.db"),
		AuditDurability: "sync", AuditFailure: "closed", LogLevel: "info", LogFormat: "text", SQLiteSync: "NORMAL",
		ShutdownTimeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := Run(ctx, cfg, &out, &errOut)
	if err == nil {
		t.Fatal("a node with the wrong master key started")
	}
	msg := err.Error()
	if !strings.Contains(msg, "master key does not open this store") || !strings.Contains(msg, "KEYHOLE_MASTER_KEY") {
		t.Errorf("the refusal must say the master key does not open the store and what to do; got %q", msg)
	}
	if strings.Contains(msg, otherB64) || strings.Contains(out.String()+errOut.String(), otherB64) {
		t.Errorf("the refusal must never print the master key")
	}
}

// The first start without a master key or admin token generates both into
// the data folder (mode 0600), says where, and prints no token when its
// output is not a terminal; the second start reuses them.
func TestFirstStartGeneratesKeyAndAdminToken(t *testing.T) {
	dir := t.TempDir()
	os.Unsetenv("KEYHOLE_MASTER_KEY")
	os.Unsetenv("KEYHOLE_ADMIN_TOKEN")
	t.Setenv("KEYHOLE_MASTER_KEY", "")
	t.Setenv("KEYHOLE_ADMIN_TOKEN", "")
	run := func() (string, string) {
		var out, errOut syncBuffer
		gw, adm := freeAddr(t), freeAddr(t)
		cfg := Config{Listen: gw, AdminListen: adm, Store: "sqlite://" + filepath.Join(dir, "data", "keyhole.db"),
			AuditDurability: "sync", AuditFailure: "closed", LogLevel: "info", LogFormat: "text", SQLiteSync: "NORMAL",
			ShutdownTimeout: time.Second}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, &out, &errOut) }()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if r, err := http.Get("http://" + gw + "/-/health"); err == nil {
				r.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node did not start: %s %s", out.String(), errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		tok, err := os.ReadFile(filepath.Join(dir, "data", "admin-token"))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", "http://"+adm+"/api/v1/proxies", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Errorf("the saved admin token must work on the admin API; got %v %v", res, err)
		} else {
			res.Body.Close()
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if strings.Contains(out.String()+errOut.String(), strings.TrimSpace(string(tok))) {
			t.Errorf("the generated admin token must not be printed when the output is not a terminal")
		}
		return out.String(), strings.TrimSpace(string(tok))
	}
	first, tok1 := run()
	for _, f := range []string{"master-key", "admin-token", "node-id", "keyhole.db"} {
		st, err := os.Stat(filepath.Join(dir, "data", f))
		if err != nil {
			t.Fatalf("%s was not created: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v; want 0600", f, st.Mode().Perm())
		}
	}
	for _, want := range []string{"gateway (agents): http://", "admin API:", "admin token: saved to", "master key: generated", "next:"} {
		if !strings.Contains(first, want) {
			t.Errorf("the first start's summary must say %q; got:\n%s", want, first)
		}
	}
	second, tok2 := run()
	if tok1 != tok2 || strings.Contains(second, "generated") || strings.Contains(second, "saved to") {
		t.Errorf("the second start must reuse the key and token; got:\n%s", second)
	}
}

// Changing KEYHOLE_ADMIN_TOKEN retires the previous value at the next start.
func TestBootstrapTokenRotation(t *testing.T) {
	n := startNode(t)
	old := n.adminToken
	n.adminToken = "bootstrap-" + randString(40)
	t.Setenv("KEYHOLE_ADMIN_TOKEN", n.adminToken)
	n.restart()
	if r := n.adminAs(old, "GET", "/proxies", nil); r.status != 401 {
		t.Errorf("the previous KEYHOLE_ADMIN_TOKEN must stop working; got %d", r.status)
	}
	if r := n.admin("GET", "/proxies", nil); r.status != 200 {
		t.Errorf("the new KEYHOLE_ADMIN_TOKEN must work; got %d", r.status)
	}
}
