package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keyhole ca init | export | init --rotate against a node without
// --forward-listen (the CA is created on demand there).
func TestCACommands(t *testing.T) {
	n := startNode(t)
	if r := n.run("", "ca", "export"); r.code != 1 || !strings.Contains(r.err, "keyhole ca init") {
		t.Errorf("export before init: exit %d, stderr %q; want 1 and a hint to run keyhole ca init", r.code, r.err)
	}
	out := n.ok(t, "", "ca", "init")
	if !strings.Contains(out, "generation 1") || !strings.Contains(out, "keyhole ca export") {
		t.Errorf("ca init printed %q", out)
	}
	if r := n.run("", "ca", "init"); r.code != 1 || !strings.Contains(r.err, "--rotate") {
		t.Errorf("a second init: exit %d, stderr %q; want 1 and a hint about --rotate", r.code, r.err)
	}
	pem1 := n.ok(t, "", "ca", "export")
	b, rest := pem.Decode([]byte(pem1))
	if b == nil || b.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("ca export printed %q; want one PEM certificate", pem1)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil || !c.IsCA {
		t.Fatalf("the exported certificate: %v, IsCA %v", err, c != nil && c.IsCA)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	n.ok(t, "", "ca", "export", "--out", file)
	if got, _ := os.ReadFile(file); string(got) != pem1 {
		t.Errorf("--out wrote %q", got)
	}
	var v caView
	if err := json.Unmarshal([]byte(n.ok(t, "", "ca", "init", "--rotate", "--json")), &v); err != nil || v.Generation != 2 {
		t.Fatalf("ca init --rotate --json: %v, generation %d", err, v.Generation)
	}
	if pem2 := n.ok(t, "", "ca", "export"); pem2 == pem1 || pem2 != v.Certificate {
		t.Error("after --rotate, export does not print the new certificate")
	}
	if strings.Contains(strings.Join(n.outputs, ""), "PRIVATE KEY") {
		t.Error("a ca command printed a private key")
	}
}
