package server

// Running the official Node.js SDKs (sdktest/, examples/typescript/)
// against a test node. The packages come from the npm registry at the
// versions pinned in each folder's package-lock.json; .ci/run installs
// them with `npm ci`. Without node or node_modules these tests skip and say
// why — except under CI=true, where a missing install is a failure, so CI
// can never pass by skipping them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the module's root (this file is in internal/server).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// nodeProject returns the folder of a Node.js project of the repository
// (relative to its root) once its packages are installed, or skips the test.
func nodeProject(t *testing.T, rel string) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), rel)
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		missing = rel + "/node_modules is missing: run `npm ci` in " + rel + " (.ci/run does)"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI=true but %s; .ci/run installs the SDKs before the tests", missing)
		}
		t.Skipf("skipped: %s", missing)
	}
	return dir
}

// sdkEnv is the environment of a Node.js script: the machine's, without
// anything that would send the SDKs elsewhere or give them other keys, plus
// the given pairs.
func sdkEnv(kv ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		uk := strings.ToUpper(k)
		if strings.HasPrefix(uk, "OPENAI_") || strings.HasPrefix(uk, "ANTHROPIC_") || strings.HasPrefix(uk, "STRIPE_") ||
			strings.HasSuffix(uk, "_PROXY") || uk == "NODE_OPTIONS" || strings.HasPrefix(uk, "KEYHOLE_") || uk == "KH_TOKEN" {
			continue
		}
		env = append(env, e)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		env = append(env, kv[i]+"="+kv[i+1])
	}
	return env
}

// step is one line a script printed.
type step map[string]any

func (s step) str(k string) string { return str(s, k) }

// runNode runs `node script` in dir with the env pairs, records everything
// it printed in the node's leak checks (no canary secret, no token), fails
// the test if it exits non-zero, and returns its steps by name (a step
// printed twice keeps the last).
func (n *testNode) runNode(dir, script string, kv ...string) map[string]step {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = sdkEnv(kv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	n.see("node "+script+" stdout", stdout.String(), false)
	n.see("node "+script+" stderr", stderr.String(), false)
	steps := map[string]step{}
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var s step
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.str("step") != "" {
			steps[s.str("step")] = s
		}
	}
	if err != nil {
		n.t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, clip(stdout.String()), tail(stderr.String(), 4000))
	}
	return steps
}
