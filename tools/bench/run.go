package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// proc is a started server process.
type proc struct {
	cmd  *exec.Cmd
	name string
}

func (p *proc) stop() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
		}
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var pinned = false

// benchUpstreamKey is the upstream credential every target injects.
const benchUpstreamKey = "sk_bench_upstream_key_0123456789"

// start runs a command pinned to cpu (when taskset exists) with GOMAXPROCS=1.
func start(name, cpu string, env []string, logDir string, args ...string) (*proc, error) {
	if pinned {
		args = append([]string{"-c", cpu}, args...)
		args = append([]string{"taskset"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), env...)
	f, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = logDir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd, name: name}, nil
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", url)
}

type adminClient struct{ base, tok string }

func (a adminClient) do(method, path string, body any) (map[string]any, error) {
	js, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, a.base+"/api/v1"+path, bytes.NewReader(js))
	req.Header.Set("Authorization", "Bearer "+a.tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m, nil
}

func randB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// keyholeNode starts a keyhole node and configures the benchmark proxies.
func keyholeNode(bin, dir, name, upstream string, extra ...string) (*proc, string, string, error) {
	gw, adm := freePort(), freePort()
	admTok := "bench-admin-" + strings.Repeat("x", 32)
	env := []string{"KEYHOLE_MASTER_KEY=" + randB64(32), "KEYHOLE_ADMIN_TOKEN=" + admTok}
	args := append([]string{bin, "serve", "--listen", gw, "--admin-listen", adm, "--store", "sqlite://" + filepath.Join(dir, name+".db"),
		"--allow-upstream-cidr", "127.0.0.0/8", "--log-level", "warn"}, extra...)
	p, err := start(name, "0", env, dir, args...)
	if err != nil {
		return nil, "", "", err
	}
	if err := waitHTTP("http://" + gw + "/-/health"); err != nil {
		return p, "", "", err
	}
	a := adminClient{"http://" + adm, admTok}
	secret := getenv("BENCH_UPSTREAM_KEY", benchUpstreamKey)
	steps := []struct {
		path string
		body any
	}{
		{"/secrets", map[string]any{"name": "bench-key", "value": secret}},
		{"/proxies", map[string]any{"name": "bench", "upstream": upstream, "auth": map[string]any{"type": "bearer", "secret": "bench-key"},
			"rules": []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}}}}},
		{"/proxies", map[string]any{"name": "nocap", "upstream": upstream, "auth": map[string]any{"type": "bearer", "secret": "bench-key"},
			"capture": map[string]any{"request_body": false, "response_body": false},
			"rules":   []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}}}}},
		{"/proxies", map[string]any{"name": "jsonrule", "upstream": upstream, "auth": map[string]any{"type": "bearer", "secret": "bench-key"},
			"rules": []any{map[string]any{"name": "small", "effect": "allow", "methods": []string{"POST"}, "paths": []string{"/echo"}, "when": "request.json.amount <= 100"}}}},
		{"/agents", map[string]any{"name": "bench-bot"}},
	}
	for _, s := range steps {
		if _, err := a.do("POST", s.path, s.body); err != nil {
			return p, "", "", err
		}
	}
	m, err := a.do("POST", "/agents/bench-bot/tokens", map[string]any{"proxies": []string{"bench", "nocap", "jsonrule"}, "ttl": "24h"})
	if err != nil {
		return p, "", "", err
	}
	return p, "http://" + gw, m["token"].(string), nil
}

type scenario struct {
	name  string
	path  string // appended to the proxy's base
	proxy string // keyhole proxy name ("bench" by default)
	rate  float64
	conns int
	post  []byte
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	rounds := fs.Int("rounds", 3, "interleaved rounds")
	dur := fs.Duration("duration", 8*time.Second, "length of each measurement")
	conns := fs.Int("conns", 50, "keep-alive connections for max throughput")
	rate := fs.Float64("rate", 300, "fixed rate for the latency scenario")
	only := fs.String("scenarios", "max,rate,sse,big,body", "comma-separated: max, rate, sse, big, body")
	keep := fs.Bool("keep", false, "keep the temp folder (server logs)")
	withCaddy := fs.Bool("caddy", false, "also measure Caddy's reverse_proxy doing the same token check and header swap (builds caddy "+caddyVersion+" from the Go module proxy)")
	fs.Parse(args)

	if os.Getenv("BENCH_PINNED") != "" {
		pinned = true // this is the re-run, pinned to core 1 (so it sees one CPU)
	} else if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		pinned = true
		{
			// Re-run this process (the load generator) pinned to core 1.
			exe, _ := os.Executable()
			cmd := exec.Command("taskset", append([]string{"-c", "1", exe, "run"}, args...)...)
			cmd.Env = append(os.Environ(), "BENCH_PINNED=1", "GOMAXPROCS=1")
			cmd.Stdout, cmd.Stderr, cmd.Stdin = os.Stdout, os.Stderr, os.Stdin
			return cmd.Run()
		}
	} else {
		fmt.Println("note: taskset or a second core is missing; servers and load generator share the cores")
	}
	dir, err := os.MkdirTemp("", "keyhole-bench-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("logs in", dir)
	}
	bin := filepath.Join(dir, "keyhole")
	build := exec.Command("go", "build", "-o", bin, "./cmd/keyhole")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building keyhole (run from the project root): %w", err)
	}
	self, _ := os.Executable()

	upAddr, baseAddr := freePort(), freePort()
	tok := "kh_benchtoken"
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	up, err := start("upstream", "1", nil, dir, self, "upstream", "-listen", upAddr)
	if err != nil {
		return err
	}
	procs = append(procs, up)
	base, err := start("baseline", "0", []string{"BENCH_TOKEN=" + tok}, dir, self, "baseline", "-listen", baseAddr, "-upstream", "http://"+upAddr)
	if err != nil {
		return err
	}
	procs = append(procs, base)
	if err := waitHTTP("http://" + upAddr + "/small"); err != nil {
		return err
	}
	if err := waitHTTP("http://" + baseAddr + "/"); err != nil {
		return err
	}
	khSync, syncURL, syncTok, err := keyholeNode(bin, dir, "keyhole-sync", "http://"+upAddr)
	if khSync != nil {
		procs = append(procs, khSync)
	}
	if err != nil {
		return err
	}
	khAsync, asyncURL, asyncTok, err := keyholeNode(bin, dir, "keyhole-async", "http://"+upAddr, "--audit-durability", "async")
	if khAsync != nil {
		procs = append(procs, khAsync)
	}
	if err != nil {
		return err
	}

	caddyURL := ""
	if *withCaddy {
		p, u, err := startCaddy(dir, "http://"+upAddr, tok)
		if p != nil {
			procs = append(procs, p)
		}
		if err != nil {
			return fmt.Errorf("caddy: %w", err)
		}
		caddyURL = u
	}

	body := []byte(`{"amount":50,"pad":"` + strings.Repeat("p", 64<<10-32) + `"}`)
	all := []scenario{
		{name: "max", path: "/small", conns: *conns},
		{name: "rate", path: "/small", rate: *rate},
		{name: "sse", path: "/sse", conns: 10},
		{name: "big", path: "/big?n=1048576", conns: 4},
		{name: "body", path: "/echo", proxy: "jsonrule", conns: 10, post: body},
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	var summary []string
	fmt.Printf("keyhole benchmark: %d rounds × %v per measurement, GOMAXPROCS=1 servers%s\n", *rounds, *dur,
		map[bool]string{true: " pinned to core 0, load generator and upstream on core 1", false: ""}[pinned])
	for _, sc := range all {
		if !want[sc.name] {
			continue
		}
		proxy := sc.proxy
		if proxy == "" {
			proxy = "bench"
		}
		targets := []target{
			{name: "baseline", url: "http://" + baseAddr + "/bench" + sc.path, token: tok},
			{name: "keyhole sync", url: syncURL + "/" + proxy + sc.path, token: syncTok},
			{name: "keyhole async", url: asyncURL + "/" + proxy + sc.path, token: asyncTok},
		}
		if sc.name == "max" {
			targets = append(targets, target{name: "keyhole sync, capture off", url: syncURL + "/nocap" + sc.path, token: syncTok})
		}
		if caddyURL != "" && (sc.name == "max" || sc.name == "rate") {
			targets = append(targets, target{name: "caddy reverse_proxy", url: caddyURL + "/bench" + sc.path, token: tok})
		}
		for i := range targets {
			targets[i].method = "GET"
			if sc.post != nil {
				targets[i].method, targets[i].body, targets[i].ctype = "POST", sc.post, "application/json"
			}
		}
		results := map[string][]result{}
		for r := 0; r < *rounds; r++ {
			// Interleave: each round visits every target, in rotated order.
			for k := range targets {
				t := targets[(k+r)%len(targets)]
				var res result
				if sc.rate > 0 {
					res = openLoop(t, sc.rate, *dur)
				} else {
					res = closedLoop(t, sc.conns, *dur)
				}
				results[t.name] = append(results[t.name], res)
			}
		}
		summary = append(summary, report(sc, targets, results)...)
	}
	fmt.Printf("\nsummary keyhole÷baseline (medians of %d interleaved rounds): %s\n", *rounds, strings.Join(summary, " | "))
	return nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func report(sc scenario, targets []target, results map[string][]result) []string {
	fmt.Printf("\n== %s (%s%s)\n", sc.name, sc.path, map[bool]string{true: fmt.Sprintf(", fixed %.0f req/s", sc.rate), false: fmt.Sprintf(", %d conns", sc.conns)}[sc.rate > 0])
	fmt.Printf("%-28s %10s %10s %10s %10s %8s\n", "target", "req/s", "p50", "p90", "p99", "errors")
	med := map[string][4]float64{}
	for _, t := range targets {
		var rps, p50, p90, p99 []float64
		errs := 0
		for _, r := range results[t.name] {
			rps = append(rps, r.rps())
			p50 = append(p50, float64(r.pct(50).Microseconds())/1000)
			p90 = append(p90, float64(r.pct(90).Microseconds())/1000)
			p99 = append(p99, float64(r.pct(99).Microseconds())/1000)
			errs += r.errs
		}
		m := [4]float64{median(rps), median(p50), median(p90), median(p99)}
		med[t.name] = m
		fmt.Printf("%-28s %10.0f %9.3fms %9.3fms %9.3fms %8d\n", t.name, m[0], m[1], m[2], m[3], errs)
	}
	b := med["baseline"]
	var parts, short []string
	for _, t := range targets[1:] {
		k := med[t.name]
		parts = append(parts, fmt.Sprintf("%s: throughput %.2f× p50 %.2f× p99 %.2f×", t.name, k[0]/b[0], k[1]/b[1], k[3]/b[3]))
		if sc.rate > 0 {
			short = append(short, fmt.Sprintf("%s %s p50 %.2f× p99 %.2f×", sc.name, t.name, k[1]/b[1], k[3]/b[3]))
		} else {
			short = append(short, fmt.Sprintf("%s %s %.2f×", sc.name, t.name, k[0]/b[0]))
		}
	}
	fmt.Printf("ratios ÷ baseline — %s\n", strings.Join(parts, "; "))
	return short
}
