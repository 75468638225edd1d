package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var tokenRE = regexp.MustCompile(`^kh_[0-9A-Za-z]{40,}$`)

// quickstart runs SPEC §9's three commands exactly as written, with
// $STRIPE_KEY a canary, and returns the issued token.
func quickstart(t *testing.T, n *testNode, up *upstream, key string) string {
	t.Helper()
	n.plant(key)
	// printf %s "$STRIPE_KEY" | keyhole secret set stripe-key
	if out := n.ok(t, key, "secret", "set", "stripe-key"); out != "secret stripe-key version 1 stored\n" {
		t.Errorf("secret set printed %q", out)
	}
	// keyhole proxy create stripe --upstream https://api.stripe.com --auth bearer --secret stripe-key --allow 'GET /v1/customers/**'
	n.ok(t, "", "proxy", "create", "stripe", "--upstream", up.URL, "--auth", "bearer",
		"--secret", "stripe-key", "--allow", "GET /v1/customers/**")
	// keyhole agent create billing-bot && keyhole token issue billing-bot --proxy stripe --ttl 24h
	n.ok(t, "", "agent", "create", "billing-bot")
	out := n.ok(t, "", "token", "issue", "billing-bot", "--proxy", "stripe", "--ttl", "24h")
	tok := strings.TrimSuffix(out, "\n")
	if !tokenRE.MatchString(tok) || strings.Count(out, "\n") != 1 {
		t.Fatalf("token issue must print only the token and a newline; got %q", out)
	}
	return tok
}

func TestQuickstartAndCommands(t *testing.T) {
	n := startNode(t)
	up := newUpstream(t)
	key := canary()
	tok := quickstart(t, n, up, key)

	t.Run("gateway", func(t *testing.T) {
		if st, body := n.call("GET", "/stripe/v1/customers/cus_1?limit=3", tok); st != 200 {
			t.Fatalf("GET with the issued token → %d %s", st, body)
		}
		if got := up.lastAuth(); got != "Bearer "+key {
			t.Errorf("the secret from stdin is not what the upstream got (match: %v)", got == "Bearer "+key)
		}
		if st, _ := n.call("GET", "/stripe/v1/refunds", tok); st != 403 {
			t.Errorf("a path no rule allows → %d, want 403", st)
		}
	})

	t.Run("json", func(t *testing.T) {
		var issued struct {
			ID, Token, Agent string
			Proxies          []string
		}
		if err := json.Unmarshal([]byte(n.ok(t, "", "token", "issue", "billing-bot", "--proxy", "stripe", "--json")), &issued); err != nil ||
			!tokenRE.MatchString(issued.Token) || issued.ID == "" || issued.Agent != "billing-bot" {
			t.Errorf("token issue --json: %+v %v", issued, err)
		}
		for _, c := range []struct {
			args []string
			key  string
		}{
			{[]string{"secret", "ls"}, "secrets"},
			{[]string{"proxy", "ls"}, "proxies"},
			{[]string{"agent", "ls"}, "agents"},
			{[]string{"token", "ls", "billing-bot"}, "tokens"},
			{[]string{"admin-token", "ls"}, "admin_tokens"},
			{[]string{"logs"}, "records"},
			{[]string{"rule", "ls", "stripe"}, "rules"},
			{[]string{"secret", "show", "stripe-key"}, "version"},
			{[]string{"proxy", "show", "stripe"}, "upstream"},
			{[]string{"agent", "show", "billing-bot"}, "labels"},
			{[]string{"audit", "verify"}, "ok"},
		} {
			out := n.ok(t, "", append(c.args, "--json")...)
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Errorf("keyhole %s --json is not JSON: %v\n%s", strings.Join(c.args, " "), err, out)
			} else if _, ok := m[c.key]; !ok {
				t.Errorf("keyhole %s --json has no %q: %s", strings.Join(c.args, " "), c.key, out)
			}
		}
		// Tokens issued with --json are listed, never shown again.
		if ls := n.ok(t, "", "token", "ls", "billing-bot", "--json"); strings.Contains(ls, issued.Token) || strings.Contains(ls, tok) {
			t.Errorf("token ls shows a token")
		}
	})

	t.Run("rotate", func(t *testing.T) {
		key2 := canary()
		n.plant(key2)
		// echo adds a newline; it is not part of the value.
		out := n.ok(t, key2+"\n", "secret", "rotate", "stripe-key")
		if !strings.Contains(out, "version 2") {
			t.Errorf("secret rotate printed %q", out)
		}
		n.call("GET", "/stripe/v1/customers", tok)
		if got := up.lastAuth(); got != "Bearer "+key2 {
			t.Errorf("after rotate the upstream does not get the new value exactly (match: %v)", got == "Bearer "+key2)
		}
		ls := n.ok(t, "", "secret", "ls")
		if !regexp.MustCompile(`(?m)^stripe-key\s+2\s+string\s+-\s+stripe\s`).MatchString(ls) {
			t.Errorf("secret ls:\n%s", ls)
		}
		env := n.env()
		env["MY_KEY"] = key2
		if r := n.runEnv(env, "", "secret", "set", "env-key", "--from-env", "MY_KEY"); r.code != 0 {
			t.Errorf("--from-env: %+v", r)
		}
	})

	t.Run("rules", func(t *testing.T) {
		out := n.ok(t, "", "rule", "add", "stripe", "--allow", "GET,HEAD /v1/charges")
		if !strings.Contains(out, "rule allow-2 added") {
			t.Errorf("rule add printed %q", out)
		}
		n.ok(t, "", "rule", "add", "stripe", "--deny", "/v1/customers/cus_bad", "--name", "no-bad")
		if st, _ := n.call("GET", "/stripe/v1/charges", tok); st != 200 {
			t.Errorf("after rule add, GET /v1/charges → %d", st)
		}
		if st, _ := n.call("GET", "/stripe/v1/customers/cus_bad", tok); st != 403 {
			t.Errorf("deny rule: → %d", st)
		}
		show := n.ok(t, "", "proxy", "show", "stripe")
		for _, want := range []string{"upstream:", up.URL, "bearer, secret stripe-key", "allow-1", "/v1/customers/**", "no-bad", "deny", "GET,HEAD"} {
			if !strings.Contains(show, want) {
				t.Errorf("proxy show lacks %q:\n%s", want, show)
			}
		}
		if out := n.ok(t, "", "rule", "rm", "stripe", "allow-2"); !strings.Contains(out, "removed") {
			t.Errorf("rule rm printed %q", out)
		}
		if ls := n.ok(t, "", "rule", "ls", "stripe"); strings.Contains(ls, "allow-2") || !strings.Contains(ls, "no-bad") {
			t.Errorf("rule ls after rm:\n%s", ls)
		}
	})

	t.Run("tokens", func(t *testing.T) {
		n.ok(t, "", "agent", "create", "temp-bot", "--label", "team=ops")
		tok2 := strings.TrimSpace(n.ok(t, "", "token", "issue", "temp-bot", "--proxy", "stripe", "--name", "laptop"))
		var ls struct {
			Tokens []tokenView `json:"tokens"`
		}
		json.Unmarshal([]byte(n.ok(t, "", "token", "ls", "temp-bot", "--json")), &ls)
		if len(ls.Tokens) != 1 {
			t.Fatalf("token ls: %+v", ls)
		}
		table := n.ok(t, "", "token", "ls", "temp-bot")
		for _, want := range []string{"ID", "LAST USED", ls.Tokens[0].ID, "laptop", "active"} {
			if !strings.Contains(table, want) {
				t.Errorf("token ls lacks %q:\n%s", want, table)
			}
		}
		if show := n.ok(t, "", "agent", "show", "temp-bot"); !strings.Contains(show, "team=ops") || !strings.Contains(show, ls.Tokens[0].ID) {
			t.Errorf("agent show:\n%s", show)
		}
		n.ok(t, "", "token", "revoke", ls.Tokens[0].ID)
		if st, _ := n.call("GET", "/stripe/v1/customers", tok2); st != 401 {
			t.Errorf("revoked token → %d", st)
		}
		n.ok(t, "", "agent", "rm", "temp-bot")
		if r := n.run("", "agent", "show", "temp-bot"); r.code != 1 {
			t.Errorf("agent show after rm: %+v", r)
		}
	})

	t.Run("admin-token", func(t *testing.T) {
		out := n.ok(t, "", "admin-token", "issue", "--name", "grafana", "--role", "viewer", "--ttl", "1d")
		viewer := strings.TrimSuffix(out, "\n")
		if !strings.HasPrefix(viewer, "kha_") || strings.ContainsAny(viewer, " \n") {
			t.Fatalf("admin-token issue printed %q", out)
		}
		env := map[string]string{"KEYHOLE_ADDR": strings.TrimPrefix(n.admin, "http://"), "KEYHOLE_ADMIN_TOKEN": viewer}
		if r := n.runEnv(env, "", "proxy", "ls"); r.code != 0 || !strings.Contains(r.out, "stripe") {
			t.Errorf("a viewer token reads proxies (bare host:port address): %+v", r)
		}
		r := n.runEnv(env, "", "agent", "create", "nope")
		if r.code != 1 || !strings.Contains(r.err, "(forbidden, HTTP 403)") {
			t.Errorf("a viewer cannot write: %+v", r)
		}
		ls := n.ok(t, "", "admin-token", "ls")
		if !strings.Contains(ls, "grafana") || !strings.Contains(ls, "viewer") || strings.Contains(ls, viewer) {
			t.Errorf("admin-token ls:\n%s", ls)
		}
		id := ""
		for _, line := range strings.Split(ls, "\n") {
			if strings.Contains(line, "grafana") {
				id = strings.Fields(line)[0]
			}
		}
		n.ok(t, "", "admin-token", "revoke", id)
		r = n.runEnv(env, "", "proxy", "ls")
		if r.code != 1 || !strings.Contains(r.err, "unauthenticated, HTTP 401") || strings.Contains(r.err, viewer) {
			t.Errorf("a revoked admin token: %+v", r)
		}
	})

	t.Run("logs", func(t *testing.T) {
		out := n.ok(t, "", "logs", "--proxy", "stripe")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[0], "LATENCY") {
			t.Fatalf("logs:\n%s", out)
		}
		if !strings.Contains(out, "/v1/customers/cus_1?limit=3") || !strings.Contains(out, "no_rule_allows") {
			t.Errorf("logs lacks the requests made:\n%s", out)
		}
		// Newest first: the first row is the most recent request.
		var page struct{ Records []logRecord }
		json.Unmarshal([]byte(n.ok(t, "", "logs", "--proxy", "stripe", "--json", "--limit", "2")), &page)
		if len(page.Records) != 2 || page.Records[0].ID <= page.Records[1].ID {
			t.Errorf("logs --json --limit 2: %+v", page.Records)
		}
		if deny := n.ok(t, "", "logs", "--proxy", "stripe", "--decision", "deny"); strings.Contains(deny, " allow ") {
			t.Errorf("--decision deny lists allowed requests:\n%s", deny)
		}
		show := n.ok(t, "", "logs", "show", page.Records[0].ID)
		var rec map[string]any
		if err := json.Unmarshal([]byte(show), &rec); err != nil || rec["id"] != page.Records[0].ID {
			t.Errorf("logs show: %v\n%s", err, show)
		}
	})

	t.Run("export", func(t *testing.T) {
		for _, bodies := range []bool{false, true} {
			args := []string{"logs", "export", "--format", "jsonl", "--proxy", "stripe"}
			if bodies {
				args = append(args, "--with-bodies")
			}
			out := n.ok(t, "", args...)
			sc := bufio.NewScanner(strings.NewReader(out))
			sc.Buffer(nil, 1<<20)
			prev, count := "", 0
			for sc.Scan() {
				var r map[string]any
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("a jsonl line does not parse: %v\n%s", err, sc.Text())
				}
				id, _ := r["id"].(string)
				if id <= prev {
					t.Errorf("export is not oldest first: %s after %s", id, prev)
				}
				if _, ok := r["response_body"]; bodies && !ok {
					t.Errorf("--with-bodies record has no response_body: %s", sc.Text())
				}
				prev = id
				count++
			}
			if count < 5 {
				t.Errorf("export wrote %d records:\n%s", count, out)
			}
		}
		if r := n.run("", "logs", "export", "--format", "csv"); r.code != 2 {
			t.Errorf("--format csv: %+v", r)
		}
	})

	t.Run("verify", func(t *testing.T) {
		out := n.ok(t, "", "audit", "verify")
		if !regexp.MustCompile(`^audit log intact: \d+ records? on 1 node\n$`).MatchString(out) {
			t.Errorf("audit verify printed %q", out)
		}
	})

	t.Run("secret-rm", func(t *testing.T) {
		r := n.run("", "secret", "rm", "stripe-key")
		if r.code != 1 || !strings.Contains(r.err, "(conflict, HTTP 409)") {
			t.Errorf("secret rm of a used secret: %+v", r)
		}
		n.ok(t, "", "proxy", "rm", "stripe")
		n.ok(t, "", "secret", "rm", "stripe-key")
		if ls := n.ok(t, "", "secret", "ls"); strings.Contains(ls, "stripe-key") {
			t.Errorf("secret ls after rm:\n%s", ls)
		}
	})
}

func TestErrors(t *testing.T) {
	n := startNode(t)
	key := canary()
	n.plant(key)
	n.ok(t, key, "secret", "set", "k1")

	t.Run("unknown proxy", func(t *testing.T) {
		r := n.run("", "proxy", "show", "nope")
		if r.code != 1 || r.out != "" || !strings.HasPrefix(r.err, "keyhole: proxy nope does not exist (not_found, HTTP 404)") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("conflict hint", func(t *testing.T) {
		r := n.run(key, "secret", "set", "k1")
		if r.code != 1 || !strings.Contains(r.err, "(conflict, HTTP 409)") || !strings.Contains(r.err, "keyhole secret rotate k1") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		r := n.run("", "proxy", "create", "p1", "--upstream", "http://127.0.0.1:1", "--auth", "bearer", "--secret", "missing", "--allow", "GET /**")
		if r.code != 1 || !strings.Contains(r.err, "(invalid_request, HTTP 400)") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("no token", func(t *testing.T) {
		env := map[string]string{"KEYHOLE_ADDR": n.admin, "KEYHOLE_DATA_DIR": t.TempDir()}
		r := n.runEnv(env, "", "proxy", "ls")
		if r.code != 1 || !strings.Contains(r.err, "set KEYHOLE_ADMIN_TOKEN") || !strings.Contains(r.err, "KEYHOLE_DATA_DIR") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("token file", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "admin-token"), []byte(n.token+"\n"), 0o600)
		env := map[string]string{"KEYHOLE_ADDR": n.admin + "/", "KEYHOLE_DATA_DIR": dir}
		if r := n.runEnv(env, "", "secret", "ls"); r.code != 0 || !strings.Contains(r.out, "k1") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		env := map[string]string{"KEYHOLE_ADDR": n.admin, "KEYHOLE_ADMIN_TOKEN": "kha_wrong" + randAlnum(40)}
		r := n.runEnv(env, "", "secret", "ls")
		if r.code != 1 || !strings.Contains(r.err, "(unauthenticated, HTTP 401)") || !strings.Contains(r.err, "read from KEYHOLE_ADMIN_TOKEN") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("gateway address", func(t *testing.T) {
		env := map[string]string{"KEYHOLE_ADDR": n.gw, "KEYHOLE_ADMIN_TOKEN": n.token}
		r := n.runEnv(env, "", "secret", "ls")
		if r.code != 1 || !strings.Contains(r.err, "admin listener") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		addr := freeAddr(t)
		env := map[string]string{"KEYHOLE_ADDR": addr, "KEYHOLE_ADMIN_TOKEN": n.token}
		r := n.runEnv(env, "", "agent", "ls")
		want := "keyhole: no keyhole node answers at http://" + addr + "; start one with `keyhole serve` or set KEYHOLE_ADDR\n"
		if r.code != 1 || r.err != want {
			t.Errorf("got %+v, want stderr %q", r, want)
		}
		// --addr wins over KEYHOLE_ADDR.
		if r := n.runEnv(env, "", "--addr", n.admin, "agent", "ls"); r.code != 0 {
			t.Errorf("--addr: %+v", r)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"secret", "set"},
			{"secret", "set", "a", "b"},
			{"secret", "bogus"},
			{"rule", "add", "stripe"},
			{"rule", "add", "stripe", "--allow", "GET /a", "--deny", "GET /b"},
			{"token", "issue", "bot"},
			{"proxy", "create", "p", "--upstream", "https://x.example", "--allow", "GET"},
			{"proxy", "create", "p", "--upstream", "https://x.example", "--header", "X-Key"},
			{"logs", "--limit", "5000"},
			{"logs", "--nope"},
		} {
			r := n.run("", args...)
			if r.code != 2 || !strings.HasPrefix(r.err, "keyhole: ") {
				t.Errorf("keyhole %s: want a usage error (exit 2); got %+v", strings.Join(args, " "), r)
			}
		}
	})
	t.Run("a value typed where it does not belong is not echoed", func(t *testing.T) {
		v := canary()
		n.plant(v)
		for _, args := range [][]string{
			{"secret", "set", "k9", v},
			{"secret", "rotate", "k1", v},
			{"secret", v},
			{"secret", "set", "k9", "--from-env", v},
			{"secret", "set", "k9", "--from-file", v},
			{"proxy", "create", "p9", "--upstream", "https://x.example", "--auth", "header", "--secret", "k1", "--header", "X-Api-Key: " + v},
			{"proxy", "create", "p9", "--upstream", "https://x.example", "--auth", "query", "--secret", "k1", "--param", v},
		} {
			if r := n.run("", args...); r.code == 0 {
				t.Errorf("keyhole %v succeeded", args)
			}
		}
	})
	t.Run("secret from a terminal", func(t *testing.T) {
		var out, errb bytes.Buffer
		code := runCLI(context.Background(), n.env(), devNull(t), &out, &errb, "secret", "set", "k2")
		if code != 1 || !strings.Contains(errb.String(), `printf %s "$KEY" | keyhole secret set k2`) {
			t.Errorf("code %d, stderr %q", code, errb.String())
		}
	})
	t.Run("secret sources", func(t *testing.T) {
		k3 := canary()
		n.plant(k3)
		p := filepath.Join(t.TempDir(), "v")
		os.WriteFile(p, []byte(k3+"\r\n"), 0o600)
		n.ok(t, "", "secret", "set", "k3", "--from-file", p)
		n.ok(t, `{"username":"u","password":"`+k3+`"}`, "secret", "set", "k4", "--object")
		if show := n.ok(t, "", "secret", "show", "k4"); !strings.Contains(show, "password,username") || !strings.Contains(show, "object") {
			t.Errorf("secret show of an object:\n%s", show)
		}
		for _, c := range []struct {
			stdin string
			args  []string
		}{
			{"", []string{"secret", "set", "k5"}},
			{"\n", []string{"secret", "set", "k5"}},
			{"not json " + k3, []string{"secret", "set", "k5", "--object"}},
			{`{"a":1}`, []string{"secret", "set", "k5", "--object"}},
			{"", []string{"secret", "set", "k5", "--from-env", "UNSET_VAR"}},
			{"", []string{"secret", "set", "k5", "--from-file", "/nonexistent/file"}},
		} {
			if r := n.run(c.stdin, c.args...); r.code == 0 {
				t.Errorf("keyhole %s with stdin %q succeeded", strings.Join(c.args, " "), c.stdin)
			}
		}
	})
}

// A logged path may carry ANSI escapes and CR/LF (the gateway records what
// agents send; the real node stores percent-encoded paths, so a fake admin
// API serves the hostile records here): every output must show them
// escaped, never raw (log injection, terminal escape injection).
func TestLogsEscapesRecordedStrings(t *testing.T) {
	hostile := []string{
		"/v1/\x1b[31mred\x1b[0m",
		"/v1/ok\r\n2026-01-01T00:00:00.000Z  GET  stripe  /FORGED  200  allow",
		"/v1/\u202eevil\u009b31m\x7f\tTAB",
		"/v1/\xff\xfe-invalid-utf8",
	}
	var recs []map[string]any
	for i, p := range hostile {
		recs = append(recs, map[string]any{"id": fmt.Sprintf("0000000%d", 9-i), "time": "2026-11-26T07:20:05.123456Z",
			"proxy": "stripe", "method": "GET", "path": p, "status": 400, "decision": "deny", "reason": "bad_path",
			"agent": "bot\x1b]0;title\x07", "latency_ms": 0.5, "query": "a=\x1b[2J"})
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/logs":
			if r.URL.Query().Get("cursor") != "" {
				json.NewEncoder(w).Encode(map[string]any{"records": []any{}, "next_cursor": ""})
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"records": recs, "next_cursor": ""})
		case strings.HasPrefix(r.URL.Path, "/api/v1/logs/"):
			json.NewEncoder(w).Encode(recs[0])
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	env := map[string]string{"KEYHOLE_ADDR": api.URL, "KEYHOLE_ADMIN_TOKEN": "kha_test"}
	for _, args := range [][]string{{"logs"}, {"logs", "--json"}, {"logs", "export"}, {"logs", "show", "00000009"},
		{"logs", "export", "--with-bodies"}} {
		var out, errb bytes.Buffer
		if code := runCLI(context.Background(), env, strings.NewReader(""), &out, &errb, args...); code != 0 {
			t.Fatalf("keyhole %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
		}
		s := out.String()
		for _, r := range s {
			if r != '\n' && r != ' ' && !strconv.IsPrint(r) {
				t.Errorf("keyhole %s printed the raw control character %U:\n%q", strings.Join(args, " "), r, s)
				break
			}
		}
		if !utf8.ValidString(s) {
			t.Errorf("keyhole %s printed invalid UTF-8", strings.Join(args, " "))
		}
		for _, line := range strings.Split(s, "\n") {
			if strings.HasPrefix(line, "2026-01-01") {
				t.Errorf("keyhole %s: a recorded CR/LF started a forged line:\n%s", strings.Join(args, " "), s)
			}
		}
		if args[len(args)-1] == "--json" || len(args) > 1 && (args[1] == "export" || args[1] == "show") {
			// Still JSON, with the same meaning.
			dec := json.NewDecoder(strings.NewReader(s))
			for dec.More() {
				var v map[string]any
				if err := dec.Decode(&v); err != nil {
					t.Fatalf("keyhole %s: escaped output is not JSON: %v\n%s", strings.Join(args, " "), err, s)
				}
			}
		}
		if args[0] == "logs" && len(args) == 1 && !strings.Contains(s, `"/v1/\x1b[31mred\x1b[0m?a=\x1b[2J"`) {
			t.Errorf("logs shows an escaped path Go-quoted; got:\n%s", s)
		}
	}
	// The follow writer escapes the same way.
	var out bytes.Buffer
	fw := &followWriter{w: &out}
	for _, r := range recs {
		raw, _ := json.Marshal(r)
		fw.record(raw)
	}
	if strings.ContainsAny(out.String(), "\x1b\r\u202e\u009b\x7f") || strings.Contains(out.String(), "\n2026-01-01") {
		t.Errorf("follow printed raw control characters:\n%q", out.String())
	}
}

func TestLogsFollow(t *testing.T) {
	n := startNode(t)
	up := newUpstream(t)
	tok := quickstart(t, n, up, canary())
	n.call("GET", "/stripe/v1/customers/before", tok)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, n.env(), strings.NewReader(""), &out, &errb, "logs", "--follow", "--proxy", "stripe")
	}()
	if !eventually(5*time.Second, func() bool { return strings.Contains(out.String(), "/v1/customers/before") }) {
		t.Fatalf("follow did not print the latest records:\n%s\n%s", out.String(), errb.String())
	}
	for i := range 3 {
		n.call("GET", fmt.Sprintf("/stripe/v1/customers/after-%d", i), tok)
	}
	if !eventually(10*time.Second, func() bool { return strings.Contains(out.String(), "/v1/customers/after-2") }) {
		t.Fatalf("follow did not print new records:\n%s\n%s", out.String(), errb.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("follow exited %d after cancel: %s", code, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop on cancel")
	}
	s := out.String()
	if strings.Count(s, "/v1/customers/after-1") != 1 || strings.Count(s, "/v1/customers/before") != 1 {
		t.Errorf("follow printed a record twice or not at all:\n%s", s)
	}
	if a, b := strings.Index(s, "after-0"), strings.Index(s, "after-2"); a < 0 || a > b {
		t.Errorf("follow prints oldest first:\n%s", s)
	}
}
