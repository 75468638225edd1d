package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// caddyVersion is the Caddy built for the comparison (SPEC §11: keyhole's
// throughput should be above Caddy's reverse_proxy doing the same work).
const caddyVersion = "v2.11.9"

// startCaddy builds Caddy into dir (go install from the module proxy; it
// is never part of keyhole's module) and runs it pinned like the other
// servers, with a Caddyfile that does what the baseline does: check the
// bearer token, strip /bench, swap Authorization for the upstream key.
func startCaddy(dir, upstream, tok string) (*proc, string, error) {
	gobin := filepath.Join(dir, "bin")
	build := exec.Command("go", "install", "github.com/caddyserver/caddy/v2/cmd/caddy@"+caddyVersion)
	build.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, "", fmt.Errorf("building caddy %s: %w", caddyVersion, err)
	}
	addr := freePort()
	key := getenv("BENCH_UPSTREAM_KEY", benchUpstreamKey)
	cf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
	@authorized header Authorization "Bearer %s"
	handle @authorized {
		uri strip_prefix /bench
		reverse_proxy %s {
			header_up Authorization "Bearer %s"
			flush_interval -1
		}
	}
	respond 401
}
`, addr, tok, strings.TrimPrefix(upstream, "http://"), key)
	cfPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o600); err != nil {
		return nil, "", err
	}
	p, err := start("caddy", "0", []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, dir,
		filepath.Join(gobin, "caddy"), "run", "--config", cfPath, "--adapter", "caddyfile")
	if err != nil {
		return nil, "", err
	}
	if err := waitHTTP("http://" + addr + "/"); err != nil {
		return p, "", err
	}
	return p, "http://" + addr, nil
}
