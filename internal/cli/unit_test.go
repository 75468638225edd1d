package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

func TestNormalizeAddr(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{name: "empty is the default", in: "", want: "http://127.0.0.1:8081"},
		{name: "bare host:port", in: "127.0.0.1:8081", want: "http://127.0.0.1:8081"},
		{name: "bare name:port", in: "keyhole.internal:9000", want: "http://keyhole.internal:9000"},
		{name: "bare :port", in: ":8081", want: "http://127.0.0.1:8081"},
		{name: "bare IPv6", in: "[::1]:8081", want: "http://[::1]:8081"},
		{name: "trailing slash", in: "http://127.0.0.1:8081/", want: "http://127.0.0.1:8081"},
		{name: "spaces", in: "  http://127.0.0.1:8081  ", want: "http://127.0.0.1:8081"},
		{name: "https", in: "https://keyhole.example.com", want: "https://keyhole.example.com"},
		{name: "https with a path prefix", in: "https://ops.example.com/keyhole/", want: "https://ops.example.com/keyhole"},
		{name: "the API path from the banner", in: "http://127.0.0.1:8081/api/v1", want: "http://127.0.0.1:8081"},
		{name: "ftp", in: "ftp://x:21", wantErr: "scheme must be http or https"},
		{name: "credentials", in: "http://admin:pw@127.0.0.1:8081", wantErr: "must not carry credentials"},
		{name: "query", in: "http://127.0.0.1:8081/?token=x", wantErr: "query"},
		{name: "no host", in: "http://", wantErr: "no host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := normalizeAddr(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("normalizeAddr(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("the error repeats a password: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("normalizeAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestShorthandRules(t *testing.T) {
	for _, tc := range []struct {
		name        string
		allow, deny []string
		want        []ruleJSON
		wantErr     string
	}{
		{name: "quickstart", allow: []string{"GET /v1/customers/**"},
			want: []ruleJSON{{Name: "allow-1", Effect: "allow", Methods: []string{"GET"}, Paths: []string{"/v1/customers/**"}}}},
		{name: "several methods and paths", allow: []string{"GET,HEAD /v1/customers,/v1/customers/*"},
			want: []ruleJSON{{Name: "allow-1", Effect: "allow", Methods: []string{"GET", "HEAD"}, Paths: []string{"/v1/customers", "/v1/customers/*"}}}},
		{name: "star is every method", allow: []string{"* /v2/**"},
			want: []ruleJSON{{Name: "allow-1", Effect: "allow", Paths: []string{"/v2/**"}}}},
		{name: "bare pattern is every method", deny: []string{"/admin/**"},
			want: []ruleJSON{{Name: "deny-1", Effect: "deny", Paths: []string{"/admin/**"}}}},
		{name: "numbered per effect, in order", allow: []string{"GET /a", "POST /b"}, deny: []string{"DELETE /**"},
			want: []ruleJSON{
				{Name: "allow-1", Effect: "allow", Methods: []string{"GET"}, Paths: []string{"/a"}},
				{Name: "allow-2", Effect: "allow", Methods: []string{"POST"}, Paths: []string{"/b"}},
				{Name: "deny-1", Effect: "deny", Methods: []string{"DELETE"}, Paths: []string{"/**"}},
			}},
		{name: "no path", allow: []string{"GET"}, wantErr: "--allow GET"},
		{name: "empty", deny: []string{" "}, wantErr: "--deny"},
		{name: "star with methods", allow: []string{"GET,* /a"}, wantErr: "cannot be combined"},
		{name: "bad method", allow: []string{"G(T /a"}, wantErr: "method"},
		{name: "relative path", allow: []string{"GET v1/x"}, wantErr: "path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := shorthandRules(tc.allow, tc.deny)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("rules (-want +got):\n%s", d)
			}
		})
	}
	// The JSON sent omits what was not given, so the API's defaults apply.
	r, _ := shorthandRule("allow", "r", "/x")
	js, _ := json.Marshal(r)
	if string(js) != `{"name":"r","effect":"allow","paths":["/x"]}` {
		t.Errorf("rule JSON = %s", js)
	}
}

func TestNextRuleName(t *testing.T) {
	rules := []ruleJSON{{Name: "allow-1"}, {Name: "allow-3"}, {Name: "deny-1"}}
	if got := nextRuleName("allow", rules); got != "allow-2" {
		t.Errorf("got %s", got)
	}
	if got := nextRuleName("deny", rules); got != "deny-2" {
		t.Errorf("got %s", got)
	}
	if got := nextRuleName("deny", nil); got != "deny-1" {
		t.Errorf("got %s", got)
	}
}

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/v1/customers/cus_1", "/v1/customers/cus_1"},
		{"/v1/héllo wörld", "/v1/héllo wörld"},
		{"/v1/\x1b[31mred", `"/v1/\x1b[31mred"`},
		{"a\r\nb", `"a\r\nb"`},
		{"a\tb", `"a\tb"`},
		{"\u202eevil", `"\u202eevil"`},
		{"\u009b31m", `"\u009b31m"`},
		{"\x7f", `"\x7f"`},
		{"\xff", `"\xff"`},
		{"", ""},
	} {
		if got := clean(tc.in); got != tc.want {
			t.Errorf("clean(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSafeJSON(t *testing.T) {
	in := []byte("{\n  \"p\": \"a\x7fb\u202ec\u009bd\U000e0001e\xfff\"\n}\n")
	got := safeJSON(in)
	want := "{\n  \"p\": \"a\\u007fb\\u202ec\\u009bd\\udb40\\udc01e\\ufffdf\"\n}\n"
	if string(got) != want {
		t.Errorf("safeJSON = %q\nwant      %q", got, want)
	}
	var v struct{ P string }
	if err := json.Unmarshal(got, &v); err != nil || v.P != "a\x7fb\u202ec\u009bd\U000e0001e\ufffdf" {
		t.Errorf("the escaped JSON means something else: %q %v", v.P, err)
	}
	plain := []byte(`{"a":"b c"}`)
	if !bytes.Equal(safeJSON(plain), plain) {
		t.Errorf("printable JSON changed")
	}
}

func TestReadValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sk_live_1", "sk_live_1"},           // printf %s
		{"sk_live_1\n", "sk_live_1"},         // echo
		{"sk_live_1\r\n", "sk_live_1"},       // a file saved on Windows
		{"sk_live_1\n\n", "sk_live_1\n"},     // only one newline is dropped
		{"line1\nline2\n", "line1\nline2"},   // a PEM key keeps its inner newlines
		{" spaced value ", " spaced value "}, // spaces are the value's
		{"\n", ""},
	} {
		got, err := readValue(strings.NewReader(tc.in), "stdin")
		if err != nil || got != tc.want {
			t.Errorf("readValue(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := readValue(strings.NewReader(strings.Repeat("x", maxSecretValue+1)), "stdin"); err == nil {
		t.Errorf("an oversized value is accepted")
	}
}

func TestTTLValue(t *testing.T) {
	for in, want := range map[string]string{"30d": "720h", "1d": "24h", "24h": "24h", "0": "0", "90m": "90m", "d": "d"} {
		if got := ttlValue(in); got != want {
			t.Errorf("ttlValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAdminTokenDiscovery(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	env["KEYHOLE_DATA_DIR"] = dir
	if _, _, err := adminToken(getenv); err == nil || !strings.Contains(err.Error(), "set KEYHOLE_ADMIN_TOKEN") ||
		!strings.Contains(err.Error(), filepath.Join(dir, "admin-token")) {
		t.Errorf("no token anywhere: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "admin-token"), []byte("  kha_fromfile \n"), 0o600)
	if tok, src, err := adminToken(getenv); err != nil || tok != "kha_fromfile" || src != filepath.Join(dir, "admin-token") {
		t.Errorf("from the file: %q %q %v", tok, src, err)
	}
	env["KEYHOLE_ADMIN_TOKEN"] = " kha_fromenv\n"
	if tok, src, err := adminToken(getenv); err != nil || tok != "kha_fromenv" || src != "KEYHOLE_ADMIN_TOKEN" {
		t.Errorf("the environment wins: %q %q %v", tok, src, err)
	}
	delete(env, "KEYHOLE_ADMIN_TOKEN")
	os.WriteFile(filepath.Join(dir, "admin-token"), []byte("\n"), 0o600)
	if _, _, err := adminToken(getenv); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty file: %v", err)
	}
}

func TestSeg(t *testing.T) {
	for in, want := range map[string]string{"stripe": "stripe", "a/b": "a%2Fb", "..": "%2E%2E", ".": "%2E", "a b": "a%20b", "x..y": "x..y"} {
		if got := seg(in); got != want {
			t.Errorf("seg(%q) = %q, want %q", in, got, want)
		}
	}
}

// follower holds a record still in flight until it completes (or holdFor
// passes), prints it once, and never moves the cursor past it while held.
func TestFollowerHoldsIncompleteRecords(t *testing.T) {
	rec := func(id string, incomplete bool) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"id": id, "time": "2026-11-26T07:20:05.123456Z", "method": "GET",
			"path": "/p/" + id, "incomplete": incomplete})
		return b
	}
	var out bytes.Buffer
	f := &follower{printed: map[string]bool{}, seen: map[string]time.Time{}, holdFor: 30 * time.Second,
		out: &followWriter{w: &out}, cursor: "00"}
	now := time.Now()
	f.handle([]json.RawMessage{rec("01", false), rec("02", true), rec("03", false)}, now)
	if f.cursor != "01" || !strings.Contains(out.String(), "/p/03") || strings.Contains(out.String(), "/p/02") {
		t.Fatalf("cursor %s, out:\n%s", f.cursor, out.String())
	}
	// Next poll (after the cursor 01): 02 is complete now, 03 was printed.
	f.handle([]json.RawMessage{rec("02", false), rec("03", false), rec("04", false)}, now.Add(time.Second))
	if f.cursor != "04" || strings.Count(out.String(), "/p/03") != 1 || strings.Count(out.String(), "/p/02") != 1 || len(f.printed) != 0 {
		t.Fatalf("cursor %s, printed %v, out:\n%s", f.cursor, f.printed, out.String())
	}
	// A record in flight longer than holdFor is printed without its status.
	f.handle([]json.RawMessage{rec("05", true)}, now.Add(2*time.Second))
	f.handle([]json.RawMessage{rec("05", true)}, now.Add(40*time.Second))
	if f.cursor != "05" || strings.Count(out.String(), "/p/05") != 1 {
		t.Fatalf("cursor %s, out:\n%s", f.cursor, out.String())
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// serve is the server package's command (its help is checked there).
		if c.Name() == "help" || c.Name() == "completion" || c.Name() == "serve" {
			return
		}
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("%s lacks Short, Long or Example", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	root := newRoot(func(string) string { return "" })
	root.InitDefaultHelpCmd()
	walk(root)
	// --help works on each command and exits 0.
	for _, args := range [][]string{{"--help"}, {"secret", "set", "--help"}, {"logs", "export", "--help"}, {"proxy"}} {
		var out, errb bytes.Buffer
		if code := runCLI(context.Background(), nil, strings.NewReader(""), &out, &errb, args...); code != 0 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("keyhole %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
}
