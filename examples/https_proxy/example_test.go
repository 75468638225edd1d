package httpsproxy

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestSandbox runs the HTTPS_PROXY sandbox example (run.sh) end to end: a
// stand-in HTTPS API, a keyhole node with --forward-listen configured through
// the CLI, and unchanged agents (curl; Python's urllib when python3 is
// installed) whose environment holds no API key.
func TestSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the sandbox builds keyhole and runs it")
	}
	for _, tool := range []string{"bash", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "run.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
