package cli

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// applyConfig is a keyhole.yaml: a string secret from STRIPE_KEY, an
// object secret from two files (one relative to the config's folder), two
// proxies with rules and an agent. readMethods are the stripe rule's.
func applyConfig(upstream, readMethods string) string {
	return `# keyhole.yaml
secrets:
  - name: stripe-key
    from_env: STRIPE_KEY
  - name: jira
    value_object_from_file:
      username: jira/user
      password: jira/password
proxies:
  - name: stripe
    upstream: ` + upstream + `
    auth: {type: bearer, secret: stripe-key}
    rules:
      - name: read-customers
        effect: allow
        methods: [` + readMethods + `]
        paths: ["/v1/customers", "/v1/customers/**"]
  - name: jira
    upstream: ` + upstream + `/rest
    auth: {type: basic, secret: jira}
    rules:
      - {name: all, effect: allow, paths: ["/**"]}
agents:
  - name: billing-bot
    labels: {team: billing}
`
}

// writeFile writes content to dir/name (folders made) and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// applyJSON runs apply with --json and decodes the answer.
func applyJSON(t *testing.T, n *testNode, env map[string]string, args ...string) applyAnswer {
	t.Helper()
	r := n.runEnv(env, "", append([]string{"apply", "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("keyhole apply %s --json: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	var ans applyAnswer
	if err := json.Unmarshal([]byte(r.out), &ans); err != nil {
		t.Fatalf("apply --json is not JSON: %v\n%s", err, r.out)
	}
	return ans
}

// applyOK runs apply and returns its human output.
func applyOK(t *testing.T, n *testNode, env map[string]string, args ...string) string {
	t.Helper()
	r := n.runEnv(env, "", append([]string{"apply"}, args...)...)
	if r.code != 0 {
		t.Fatalf("keyhole apply %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

func wantLines(t *testing.T, what, got string, want ...string) {
	t.Helper()
	if w := strings.Join(want, "\n") + "\n"; got != w {
		t.Errorf("%s printed:\n%s\nwant:\n%s", what, got, w)
	}
}

func TestApply(t *testing.T) {
	n := startNode(t)
	up := newUpstream(t)
	key1, key2, key3, jiraPW := canary(), canary(), canary(), canary()
	for _, c := range []string{key1, key2, key3, jiraPW} {
		n.plant(c)
	}
	dir := t.TempDir()
	writeFile(t, dir, "jira/user", "svc-keyhole\n")
	writeFile(t, dir, "jira/password", jiraPW+"\n") // the newline is dropped
	cfgPath := writeFile(t, dir, "keyhole.yaml", applyConfig(up.URL, "GET"))
	env := n.env()
	env["STRIPE_KEY"] = key1

	// A file read from another directory: relative from_file paths start
	// at the config's folder, not at the working directory.
	out := applyOK(t, n, env, "-f", cfgPath)
	wantLines(t, "the first apply", out,
		"secrets: created stripe-key, jira",
		"proxies: created stripe, jira",
		"agents: created billing-bot")

	tok := strings.TrimSpace(n.ok(t, "", "token", "issue", "billing-bot", "--proxy", "stripe,jira"))
	if st, body := n.call("GET", "/stripe/v1/customers", tok); st != 200 {
		t.Fatalf("GET through the applied proxy → %d %s", st, body)
	}
	if got := up.lastAuth(); got != "Bearer "+key1 {
		t.Errorf("the upstream did not get the value of STRIPE_KEY exactly (match: %v)", got == "Bearer "+key1)
	}
	if st, _ := n.call("GET", "/jira/issue/1", tok); st != 200 {
		t.Fatalf("GET through jira → %d", st)
	}
	if got, want := up.lastAuth(), basicAuth("svc-keyhole", jiraPW); got != want {
		t.Errorf("the object secret from files is not what the upstream got (match: %v)", got == want)
	}

	t.Run("again", func(t *testing.T) {
		out := applyOK(t, n, env, "-f", cfgPath)
		wantLines(t, "the same apply again", out,
			"secrets: unchanged 2",
			"proxies: unchanged 2",
			"agents: unchanged 1",
			"nothing to change: the node already matches the config")
		ans := applyJSON(t, n, env, "-f", cfgPath)
		if ans.Changed || ans.DryRun || len(ans.Secrets["unchanged"]) != 2 || len(ans.Proxies["unchanged"]) != 2 ||
			len(ans.Agents["unchanged"]) != 1 || len(ans.Proxies["deleted"]) != 0 {
			t.Errorf("apply --json of the same file: %+v", ans)
		}
		if v := n.ok(t, "", "secret", "show", "stripe-key", "--json"); !strings.Contains(v, `"version": 1`) {
			t.Errorf("the same value applied again bumped the version:\n%s", v)
		}
	})

	t.Run("rule changed", func(t *testing.T) {
		writeFile(t, dir, "keyhole.yaml", applyConfig(up.URL, "GET, HEAD"))
		out := applyOK(t, n, env, "-f", cfgPath)
		wantLines(t, "a changed rule", out,
			"secrets: unchanged 2",
			"proxies: replaced stripe; unchanged 1",
			"agents: unchanged 1")
		if show := n.ok(t, "", "rule", "ls", "stripe"); !strings.Contains(show, "GET,HEAD") {
			t.Errorf("rule ls after the apply:\n%s", show)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		env["STRIPE_KEY"] = key2
		ans := applyJSON(t, n, env, "-f", cfgPath)
		if !ans.Changed || strings.Join(ans.Secrets["rotated"], ",") != "stripe-key" || strings.Join(ans.Secrets["unchanged"], ",") != "jira" {
			t.Errorf("apply with a new STRIPE_KEY: %+v", ans)
		}
		n.call("GET", "/stripe/v1/customers", tok)
		if got := up.lastAuth(); got != "Bearer "+key2 {
			t.Errorf("after the rotation the upstream does not get the new value (match: %v)", got == "Bearer "+key2)
		}
		if v := n.ok(t, "", "secret", "show", "stripe-key", "--json"); !strings.Contains(v, `"version": 2`) {
			t.Errorf("after the rotation:\n%s", v)
		}
	})

	// A config without the jira proxy and without agents.
	stripeOnly := strings.Replace(applyConfig(up.URL, "GET, HEAD"), `  - name: jira
    upstream: `+up.URL+`/rest
    auth: {type: basic, secret: jira}
    rules:
      - {name: all, effect: allow, paths: ["/**"]}
`, "", 1)
	stripeOnly = stripeOnly[:strings.Index(stripeOnly, "agents:")]
	stripePath := writeFile(t, dir, "stripe-only.yaml", stripeOnly)

	t.Run("dry run", func(t *testing.T) {
		env["STRIPE_KEY"] = key3
		out := applyOK(t, n, env, "-f", stripePath, "--prune", "--dry-run")
		wantLines(t, "a dry run", out,
			"secrets: rotated stripe-key; unchanged 1",
			"proxies: deleted jira; unchanged 1",
			"dry run: nothing was changed")
		ans := applyJSON(t, n, env, "-f", stripePath, "--prune", "--dry-run")
		if !ans.DryRun || !ans.Changed {
			t.Errorf("apply --dry-run --json: %+v", ans)
		}
		if v := n.ok(t, "", "secret", "show", "stripe-key", "--json"); !strings.Contains(v, `"version": 2`) {
			t.Errorf("a dry run rotated the secret:\n%s", v)
		}
		n.ok(t, "", "proxy", "show", "jira")
		n.call("GET", "/stripe/v1/customers", tok)
		if got := up.lastAuth(); got != "Bearer "+key2 {
			t.Errorf("after a dry run the upstream does not get the previous value")
		}
		env["STRIPE_KEY"] = key2
	})

	t.Run("prune", func(t *testing.T) {
		// Without --prune, an unlisted proxy stays.
		wantLines(t, "an apply without --prune", applyOK(t, n, env, "-f", stripePath),
			"secrets: unchanged 2",
			"proxies: unchanged 1",
			"nothing to change: the node already matches the config")
		n.ok(t, "", "proxy", "show", "jira")

		out := applyOK(t, n, env, "-f", stripePath, "--prune")
		wantLines(t, "--prune", out,
			"secrets: unchanged 2",
			"proxies: deleted jira; unchanged 1")
		if r := n.run("", "proxy", "show", "jira"); r.code != 1 {
			t.Errorf("the pruned proxy is still there: %+v", r)
		}
		// The file has no agents section: no agent is pruned.
		n.ok(t, "", "agent", "show", "billing-bot")
		// Secrets are never pruned.
		n.ok(t, "", "secret", "show", "jira")
	})

	t.Run("stdin", func(t *testing.T) {
		js := `{"agents":[{"name":"billing-bot","labels":{"team":"billing"}},{"name":"ops-bot"}]}`
		r := n.runEnv(env, js, "apply", "-f", "-")
		if r.code != 0 {
			t.Fatalf("apply -f - : %+v", r)
		}
		wantLines(t, "apply -f -", r.out, "agents: created ops-bot; unchanged 1")
	})

	t.Run("audit log", func(t *testing.T) {
		// The apply records hold names only: the canaries (checked in
		// every output at cleanup) must not be in them, bodies included.
		export := n.ok(t, "", "logs", "export", "--format", "jsonl", "--proxy", "-admin", "--with-bodies")
		if c := strings.Count(export, `"path":"/api/v1/apply"`); c < 8 {
			t.Errorf("the audit log has %d apply records:\n%s", c, export)
		}
		if !strings.Contains(export, `"reason":"apply.dry_run"`) {
			t.Errorf("no apply.dry_run record in the audit log")
		}
	})
}

func basicAuth(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// TestApplyErrors: every refusal names the file, the line and the entry,
// and none shows a secret value; nothing is sent to the node when a
// secret cannot be read.
func TestApplyErrors(t *testing.T) {
	n := startNode(t)
	up := newUpstream(t)
	key := canary()
	n.plant(key)
	dir := t.TempDir()
	writeFile(t, dir, "jira/user", "svc-keyhole")
	writeFile(t, dir, "jira/password", "jira-password-1")
	env := n.env()
	env["STRIPE_KEY"] = key

	fail := func(t *testing.T, env map[string]string, content string, args ...string) result {
		t.Helper()
		p := writeFile(t, dir, "keyhole.yaml", content)
		r := n.runEnv(env, "", append([]string{"apply", "-f", p}, args...)...)
		if r.code != 1 || r.out != "" {
			t.Fatalf("apply of a bad config: exit %d (want 1)\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
		}
		if !strings.HasPrefix(r.err, "keyhole: "+p+": ") {
			t.Errorf("the message does not start with the file's name:\n%s", r.err)
		}
		return r
	}
	nothingApplied := func(t *testing.T) {
		t.Helper()
		for _, what := range []string{"secret", "proxy", "agent"} {
			var m map[string][]any
			json.Unmarshal([]byte(n.ok(t, "", what, "ls", "--json")), &m)
			for k, v := range m {
				if len(v) != 0 {
					t.Errorf("a refused apply created %s: %v", k, v)
				}
			}
		}
	}

	t.Run("YAML error", func(t *testing.T) {
		r := fail(t, env, applyConfig(up.URL, "GET")+"  - name: ops-bot\n    lables: {}\n")
		if !strings.Contains(r.err, ": line 27: ") || !strings.Contains(r.err, `unknown field "lables"`) {
			t.Errorf("an unknown field:\n%s", r.err)
		}
		r = fail(t, env, "proxies:\n  - name: x\n   upstream: bad indent\n")
		if !regexp.MustCompile(`: line \d+`).MatchString(r.err) {
			t.Errorf("a YAML syntax error has no line:\n%s", r.err)
		}
		r = fail(t, env, strings.Replace(applyConfig(up.URL, "GET"), "effect: allow\n", "effect: permit\n", 1))
		if !strings.Contains(r.err, ": line 14: proxies[0].rules[0]") {
			t.Errorf("an invalid rule:\n%s", r.err)
		}
		nothingApplied(t)
	})

	t.Run("secret value in the file", func(t *testing.T) {
		r := fail(t, env, "secrets:\n  - name: stripe-key\n    value: "+key+"\n")
		if !strings.Contains(r.err, "line 3: secrets[0]") || !strings.Contains(r.err, "never written in the config") {
			t.Errorf("a value in the file:\n%s", r.err)
		}
	})

	t.Run("missing env var", func(t *testing.T) {
		e := n.env() // no STRIPE_KEY
		r := fail(t, e, applyConfig(up.URL, "GET"))
		want := ": line 4: secrets[0] (stripe-key): the environment variable named by from_env is empty or not set\n"
		if !strings.HasSuffix(r.err, want) {
			t.Errorf("an unset variable:\n%s\nwant the suffix %q", r.err, want)
		}
		e["STRIPE_KEY"] = ""
		fail(t, e, applyConfig(up.URL, "GET"))
		// A value written where the variable's name belongs is not echoed.
		v := canary()
		n.plant(v)
		fail(t, env, "secrets:\n  - name: stripe-key\n    from_env: "+v+"\n")
		fail(t, env, "secrets:\n  - name: stripe-key\n    from_file: "+v+"\n")
		fail(t, env, "secrets:\n  - name: jira\n    value_object_from_env: {password: "+v+"}\n")
		// Refused by ParseConfig (not a variable's name): not echoed either.
		r = fail(t, env, "secrets:\n  - name: stripe-key\n    from_env: "+v+"==\n")
		if !strings.Contains(r.err, "line 3: secrets[0].from_env: not an environment variable name") {
			t.Errorf("a value with = as from_env:\n%s", r.err)
		}
		nothingApplied(t)
	})

	t.Run("missing file", func(t *testing.T) {
		r := fail(t, env, strings.Replace(applyConfig(up.URL, "GET"), "jira/password", "jira/nope", 1))
		if !strings.Contains(r.err, ": line 8: secrets[1] (jira): cannot read the file named by value_object_from_file.password") {
			t.Errorf("a missing file:\n%s", r.err)
		}
		writeFile(t, dir, "empty", "\n")
		r = fail(t, env, "secrets:\n  - name: s\n    from_file: empty\n")
		if !strings.Contains(r.err, "secrets[0] (s): the file named by from_file is empty") {
			t.Errorf("an empty file:\n%s", r.err)
		}
		big := writeFile(t, dir, "big", strings.Repeat("x", maxSecretValue+1))
		r = fail(t, env, "secrets:\n  - name: s\n    from_file: "+big+"\n")
		if !strings.Contains(r.err, "larger than") {
			t.Errorf("a file too large:\n%s", r.err)
		}
		nothingApplied(t)
	})

	t.Run("refused by the node", func(t *testing.T) {
		// The node's message names the entry; the CLI adds its line.
		cfg := applyConfig(up.URL, "GET") + "  - name: x\n    labels: {a: b}\n"
		cfg = strings.Replace(cfg, "auth: {type: basic, secret: jira}", "auth: {type: basic, secret: nowhere}", 1)
		r := fail(t, env, cfg)
		if !strings.Contains(r.err, `: line 18: proxies[1] (jira): secret "nowhere" does not exist`) ||
			!strings.Contains(r.err, "(invalid_request, HTTP 400)") {
			t.Errorf("a proxy whose secret does not exist:\n%s", r.err)
		}
		// The node checks the value (too short), and does not quote it.
		e := n.env()
		e["STRIPE_KEY"] = "short"
		r = fail(t, e, applyConfig(up.URL, "GET"))
		if !strings.Contains(r.err, "secrets[0] (stripe-key): ") || strings.Contains(r.err, "short\"") {
			t.Errorf("a value the node refuses:\n%s", r.err)
		}
		nothingApplied(t)
	})

	t.Run("usage", func(t *testing.T) {
		v := canary()
		n.plant(v)
		for _, args := range [][]string{
			{"apply"},
			{"apply", "-f"},
			{"apply", "keyhole.yaml"},
			{"apply", "-f", "keyhole.yaml", v},
			{"apply", "-f", "keyhole.yaml", "--prune=maybe"},
		} {
			if r := n.run("", args...); r.code != 2 || !strings.HasPrefix(r.err, "keyhole: ") {
				t.Errorf("keyhole %s: want a usage error (exit 2); got %+v", strings.Join(args, " "), r)
			}
		}
		r := n.run("", "apply", "-f", filepath.Join(dir, "does-not-exist.yaml"))
		if r.code != 1 || !strings.Contains(r.err, "no such file") {
			t.Errorf("a missing config: %+v", r)
		}
		big := writeFile(t, dir, "huge.yaml", "# "+strings.Repeat("x", spec.MaxConfigBytes))
		if r := n.run("", "apply", "-f", big); r.code != 1 || !strings.Contains(r.err, "larger than") {
			t.Errorf("a config too large: %+v", r)
		}
	})
}

// TestApplyHelpExample: the keyhole.yaml in `keyhole apply --help` is a
// valid config.
func TestApplyHelpExample(t *testing.T) {
	var lines []string
	for _, l := range strings.Split(applyExample, "\n")[1:] {
		if strings.TrimSpace(l) == "" {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	cfg, err := spec.ParseConfig([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("the help's example does not parse: %v", err)
	}
	if len(cfg.Secrets) != 1 || cfg.Secrets[0].FromEnv != "STRIPE_KEY" || len(cfg.Proxies) != 1 ||
		len(cfg.Proxies[0].Rules) != 2 || len(cfg.Agents) != 1 {
		t.Errorf("the help's example: %+v", cfg)
	}
	var out, errb strings.Builder
	if code := runCLI(t.Context(), nil, strings.NewReader(""), &out, &errb, "apply", "--help"); code != 0 ||
		!strings.Contains(out.String(), "from_env: STRIPE_KEY") || !strings.Contains(out.String(), "--dry-run") {
		t.Errorf("apply --help: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestApplySummary: the human answer for each kind of change.
func TestApplySummary(t *testing.T) {
	ans := &applyAnswer{Changed: true, DryRun: true,
		Secrets: map[string][]string{"created": {"a"}, "rotated": {"b", "c"}, "unchanged": {"d"}},
		Proxies: map[string][]string{"created": {}, "replaced": {"github"}, "unchanged": {"x", "y", "z"}, "deleted": {"old\x1b[31m"}},
		Agents:  map[string][]string{"created": {}, "updated": {}, "unchanged": {}, "deleted": {}},
	}
	wantLines(t, "the summary", applySummary(ans),
		"secrets: created a; rotated b, c; unchanged 1",
		`proxies: replaced github; deleted "old\x1b[31m"; unchanged 3`,
		"dry run: nothing was changed")
}
