package ui_test

// Browser tests: Debian's Chromium (/usr/bin/chromium), driven by
// chromedp, against a real node. They skip, saying why, where Chromium is
// not installed — except in CI (CI=true), where .ci/run installs it and a
// missing browser is a failure.
//
// Every page runs with a binding (window.__pwned(…), which reports to the
// test) and a listener for Content-Security-Policy violations, both
// installed by the DevTools protocol before any page script: the XSS test
// plants payloads that call the binding or set window.__pwnedFlag, and
// asserts that none ever fires and no violation is reported.
//
// With KEYHOLE_UI_SCREENSHOTS=1 the tests save a screenshot of each page
// into docs/img/ (how the README's pictures are made).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// pwnedBinding is the function payloads call; calling it means a payload ran.
const pwnedBinding = "__pwned"

// watch is injected into every document before its own scripts.
const watch = `window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
});`

type tab struct {
	t       *testing.T
	n       *node
	ctx     context.Context
	mu      sync.Mutex
	pwned   []string
	errs    []string
	dialogs int
}

func newTab(t *testing.T, n *node) *tab {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing in CI: .ci/run installs Debian's chromium (apt-get install -y chromium)", chromiumPath)
		}
		t.Skipf("browser tests need Debian's Chromium at %s (apt-get install -y chromium); skipped", chromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 860),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	tb := &tab{t: t, n: n, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.AddBinding, runtime.AddBindingParams{Name: pwnedBinding}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watch}); err != nil {
		t.Fatal(err)
	}
	dialogs := make(chan struct{}, 16)
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventBindingCalled:
			if ev.Name == pwnedBinding {
				tb.mu.Lock()
				tb.pwned = append(tb.pwned, ev.Payload)
				tb.mu.Unlock()
			}
		case *runtime.EventExceptionThrown:
			tb.mu.Lock()
			tb.errs = append(tb.errs, (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
			tb.mu.Unlock()
		case *page.EventJavascriptDialogOpening:
			select {
			case dialogs <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Accept confirmation dialogs (revoke, delete) from another goroutine:
	// Listen's callback must not send commands.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-dialogs:
				tb.mu.Lock()
				tb.dialogs++
				tb.mu.Unlock()
				chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}
		}
	}()
	return tb
}

// do runs steps with a timeout, failing the test with what it was doing.
func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(tb.ctx, chromedp.Location())
		body, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ''`))
		if v, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('.validation')].map(e => e.className + ': ' + e.textContent).join('\n')`)); v != "" {
			body = "validation: " + v + "\n" + body
		}
		tb.mu.Lock()
		body = fmt.Sprintf("script errors: %q\n%s", tb.errs, body)
		tb.mu.Unlock()
		tb.t.Fatalf("%s: %v\nat %s\npage text:\n%s", what, err, loc, body)
	}
}

func (tb *tab) eval(js string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is true (across navigations:
// an evaluation that fails while a page is replaced is tried again).
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	tb.do(what, func(context.Context, *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Void{}, fmt.Errorf("not true within 30 s: %s (last error: %v)", expr, last)
	})
}

// submit clicks a button that submits a form and waits for the next page.
func (tb *tab) submit(what, sel string) {
	tb.t.Helper()
	tb.do(what, evalVoid(`(window.__stale = true)`), chromedp.Click(chromedp.CSS(sel)))
	tb.waitJS(what+": the next page", `!window.__stale && document.readyState === 'complete'`)
}

func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do("open "+path, chromedp.Navigate(tb.n.admin+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// shot saves a screenshot of the viewport (or the whole page) as
// docs/img/NAME.png when KEYHOLE_UI_SCREENSHOTS=1.
func (tb *tab) shot(name string, full bool) {
	tb.t.Helper()
	if os.Getenv("KEYHOLE_UI_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	var png []byte
	var err error
	// Let the fonts settle and any focus ring go.
	chromedp.Run(ctx, chromedp.Evaluate[bool](`(document.activeElement && document.activeElement.blur && document.activeElement.blur(), window.scrollTo(0, 0), true)`))
	if full {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	} else {
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "img")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// clean fails the test if a payload ran, a CSP violation was reported or a
// page script threw.
func (tb *tab) clean(where string) {
	tb.t.Helper()
	if v := tb.eval(`JSON.stringify(window.__csp || [])`); v != "[]" {
		tb.t.Errorf("%s: Content-Security-Policy violations: %s", where, v)
	}
	if v := tb.eval(`String(window.__pwnedFlag)`); v != "undefined" {
		tb.t.Errorf("%s: a payload set window.__pwnedFlag = %s", where, v)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.pwned) > 0 {
		tb.t.Errorf("%s: payloads ran: %q", where, tb.pwned)
	}
	if len(tb.errs) > 0 {
		tb.t.Errorf("%s: page scripts threw: %q", where, tb.errs)
	}
	tb.pwned, tb.errs = nil, nil
}

func (tb *tab) loginToken(tok string) {
	tb.t.Helper()
	tb.open("/login")
	tb.do("type the token", chromedp.SendKeys(chromedp.CSS("#token"), tok))
	tb.submit("sign in", "#login-form button[type=submit]")
	tb.do("signed in", chromedp.WaitVisible(chromedp.CSS("nav.side")))
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// setVal sets a form field's value as typing would (input and change
// events).
func setVal(sel, v string) chromedp.Action[chromedp.Void] {
	return evalVoid(fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true })()`, js(sel), js(v)))
}

// evalVoid runs a script as a step.
func evalVoid(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](expr)(ctx, t)
		return chromedp.Void{}, err
	}
}

func js(s string) string { return fmt.Sprintf("%q", s) }

// TestDashboardFlow is the walk-through: sign in, create a secret
// and a proxy with a rule, issue a token, send calls through the gateway,
// watch them arrive in the live log, open one, rotate the secret, revoke
// the token, see the denial; then the overview and audit integrity.
func TestDashboardFlow(t *testing.T) {
	n := startNode(t)
	tb := newTab(t, n)

	tb.open("/login")
	tb.shot("login", false)
	tb.loginToken(n.token)

	// A secret, through the write-only form.
	first := "sk_test_first_" + randAlnum(20)
	tb.open("/secrets")
	tb.do("type a secret", chromedp.SendKeys(chromedp.CSS("#s-name"), "echo-key"), chromedp.SendKeys(chromedp.CSS("#s-value"), first))
	tb.submit("store a secret", `form[aria-label="Store a secret"] button[type=submit]`)
	if strings.Contains(tb.eval(`document.documentElement.outerHTML`), first) {
		t.Errorf("the secret page shows the secret's value")
	}

	// A proxy, from the editor, validated as it is typed.
	tb.open("/proxies/new")
	tb.do("fill the proxy editor",
		chromedp.SendKeys(chromedp.CSS("#p-name"), "echo"),
		chromedp.SendKeys(chromedp.CSS("#p-upstream"), n.up.URL),
		setVal("#p-secret", "echo-key"),
		setVal("#p-rules", ""),
		chromedp.SendKeys(chromedp.CSS("#p-rules"), `[{"name":"read","effect":"allow","methods":["GET","POST"],"paths":["/v1/**"]},{"name":"bad","effect":"allow","paths":["/**"],"when":"request.method =="}]`))
	tb.waitJS("the editor reports the bad condition", `document.getElementById('proxy-validation').classList.contains('bad') && /when/.test(document.getElementById('proxy-validation').textContent)`)
	tb.do("fix the rules", setVal("#p-rules", ""),
		chromedp.SendKeys(chromedp.CSS("#p-rules"), `[{"name":"read","effect":"allow","methods":["GET","POST"],"paths":["/v1/**"]}]`))
	tb.waitJS("the editor reports a valid proxy", `document.getElementById('proxy-validation').classList.contains('ok')`)
	tb.shot("proxy-editor", true)
	tb.submit("create the proxy", "#proxy-form button[type=submit]")
	tb.do("the proxy page", chromedp.WaitVisible(chromedp.CSS("#rule-read")))

	// A deny rule from the add-rule form, validated as it is typed.
	tb.do("type a rule with a bad rate limit", chromedp.SendKeys(chromedp.CSS("#r-name"), "no-admin"), setVal("#r-effect", "deny"),
		chromedp.SendKeys(chromedp.CSS("#r-paths"), "/v1/admin/**"), chromedp.SendKeys(chromedp.CSS("#r-rate"), "lots"))
	tb.waitJS("the rule form reports the bad rate limit", `document.getElementById('rule-validation').classList.contains('bad')`)
	tb.do("fix it", setVal("#r-rate", ""), chromedp.SendKeys(chromedp.CSS("#r-when"), " "))
	tb.waitJS("the rule form reports a valid rule", `document.getElementById('rule-validation').classList.contains('ok')`)
	tb.submit("add the rule", "#rule-form button[type=submit]")
	tb.do("the new rule", chromedp.WaitVisible(chromedp.CSS("#rule-no-admin")))

	// An agent and a token, shown once.
	tb.open("/agents")
	tb.do("type an agent", chromedp.SendKeys(chromedp.CSS("#a-name"), "billing-bot"), chromedp.SendKeys(chromedp.CSS("#a-labels"), "team=billing"))
	tb.submit("create an agent", `form[aria-label="Create an agent"] button[type=submit]`)
	tb.do("fill the token form", chromedp.Click(chromedp.CSS(`#issue-form input[value="echo"]`)), chromedp.SendKeys(chromedp.CSS("#t-ttl"), "24h"),
		chromedp.SendKeys(chromedp.CSS("#t-name"), "ci"))
	tb.submit("issue a token", "#issue-form button[type=submit]")
	tok := strings.TrimSpace(tb.text("#new-token"))
	if !strings.HasPrefix(tok, "kh_") {
		t.Fatalf("the issued token is %q", tok)
	}
	tb.shot("token-issued", false)
	// Shown once: the agent's page does not show it again.
	tb.open("/agents/billing-bot")
	if strings.Contains(tb.eval(`document.documentElement.outerHTML`), tok) {
		t.Errorf("the agent page shows the token again")
	}

	// Try a request: which rule would decide.
	tb.open("/proxies/echo")
	tb.do("try a request", setVal("#t-path", "/v1/admin/users"), chromedp.Click(chromedp.CSS("#try-run")))
	tb.waitJS("the try panel names the deny rule", `/denied_by_rule:no-admin/.test(document.getElementById('try-reason').textContent)`)
	tb.shot("proxy", true)

	// The live log: calls through the gateway appear as they happen.
	tb.open("/logs")
	tb.do("start the live tail", chromedp.Click(chromedp.CSS("#live")))
	tb.waitJS("the stream is open", `document.getElementById('live').dataset.state === 'open'`)
	if st := n.gateway(tok, "GET", "/echo/v1/customers?limit=3", nil, ""); st != 200 {
		t.Fatalf("allowed call = %d", st)
	}
	if st := n.gateway(tok, "POST", "/echo/v1/charges", http.Header{"Content-Type": {"application/json"}}, `{"amount":4200,"currency":"eur","metadata":{"order":"A-17"}}`); st != 200 {
		t.Fatalf("POST = %d", st)
	}
	if st := n.gateway(tok, "GET", "/echo/v1/admin/users", nil, ""); st != 403 {
		t.Fatalf("denied call = %d", st)
	}
	tb.waitJS("the calls appear in the live log", `['/v1/customers', '/v1/charges', '/v1/admin/users'].every(p =>
		[...document.querySelectorAll('#log-rows td.path')].some(td => td.textContent === p))`)
	tb.waitJS("the forwarded calls complete", `[...document.querySelectorAll('#log-rows tr')].filter(tr => tr.querySelector('td.path').textContent.startsWith('/v1/c')).every(tr => tr.querySelector('.status').textContent === '200')`)
	tb.shot("logs-live", false)

	// Open one: headers, the pretty-printed body, decision, rule, version, chain.
	tb.do("open the POST", evalVoid(`(window.__stale = true)`), evalVoid(`(() => { const td = [...document.querySelectorAll('#log-rows td.path')].find(td => td.textContent === '/v1/charges'); td.click(); return true })()`),
		chromedp.WaitVisible(chromedp.CSS("#h-chain")))
	body := tb.eval(`document.body.innerText`)
	for _, want := range []string{"allowed_by_rule:read", "v1", `"amount": 4200`, `"customer": {`, "Content-Type", "start", "end"} {
		if !strings.Contains(body, want) {
			t.Errorf("the record's page lacks %q", want)
		}
	}
	tb.shot("request-detail", true)

	// Rotate the secret: the next call carries the new value.
	second := "sk_test_second_" + randAlnum(20)
	tb.open("/secrets/echo-key")
	tb.submit("submit the rotate form empty", "#rotate button[type=submit]")
	if !strings.Contains(tb.text(".flash"), "Nothing changed") {
		t.Errorf("an empty rotate form did something: %q", tb.text(".flash"))
	}
	tb.do("type the new value", chromedp.SendKeys(chromedp.CSS("#r-value"), second))
	tb.submit("rotate", "#rotate button[type=submit]")
	if f := tb.text(".flash"); !strings.Contains(f, "version 2") {
		t.Errorf("after rotation the page says %q", f)
	}
	if v, _ := chromedp.Run(tb.ctx, chromedp.Value(chromedp.CSS("#r-value"))); v != "" {
		t.Errorf("the rotate form echoes a value")
	}
	tb.shot("secret", false)
	if st := n.gateway(tok, "GET", "/echo/v1/customers/cus_123", nil, ""); st != 200 {
		t.Fatalf("call after rotation = %d", st)
	}
	if got := n.up.lastAuth(); got != "Bearer "+second {
		t.Errorf("after rotation the upstream got %q, want the new secret", got)
	}

	// Revoke the token: the next call is refused, and the log shows why.
	tb.open("/agents/billing-bot")
	tb.submit("revoke", `tr[data-token] form button[type=submit]`)
	tb.do("the revoked token", chromedp.WaitVisible(chromedp.CSS(".state-revoked")))
	if st := n.gateway(tok, "GET", "/echo/v1/customers", nil, ""); st != 401 {
		t.Errorf("call with the revoked token = %d, want 401", st)
	}
	tb.open("/logs?decision=deny")
	tb.waitJS("the denial is in the log", `[...document.querySelectorAll('#log-rows .reason')].some(s => s.textContent === 'token_revoked')`)
	tb.shot("logs", false)

	tb.open("/?window=15m")
	tb.waitJS("the overview counts the calls", `/[4-9]/.test(document.querySelector('.stat-value').textContent)`)
	tb.shot("overview", false)
	tb.open("/proxies")
	tb.shot("proxies", false)
	tb.open("/audit")
	tb.submit("verify the chain", "#verify")
	if v := tb.text("#verify-result"); !strings.Contains(v, "Intact") {
		t.Errorf("audit verification says %q", v)
	}
	tb.shot("audit", false)
	tb.open("/access")
	tb.shot("access", false)
	tb.clean("the walk-through")
	if tb.dialogs < 1 {
		t.Errorf("revoking asked for no confirmation")
	}
}

// TestDashboardViewer: a dashboard user with the viewer role signs in with
// a password and sees no change buttons and no payloads; the server
// refuses a change from the page's own script.
func TestDashboardViewer(t *testing.T) {
	n := startNode(t)
	tok := n.setup("sk_test_" + randAlnum(24))
	n.gateway(tok, "POST", "/echo/v1/charges", http.Header{"X-Trace": {"abc"}}, `{"amount":1}`)
	pw := "viewer password " + randAlnum(6)
	n.mustAPI(n.token, "POST", "/api/v1/users", map[string]any{"name": "vera", "role": "viewer", "password": pw}, 201)

	tb := newTab(t, n)
	tb.open("/login?method=password")
	tb.do("type the password", chromedp.SendKeys(chromedp.CSS("#user"), "vera"), chromedp.SendKeys(chromedp.CSS("#password"), pw))
	tb.submit("sign in with a password", "#login-form button[type=submit]")
	tb.do("signed in", chromedp.WaitVisible(chromedp.CSS("nav.side")))
	if r := tb.text(".who .role"); !strings.EqualFold(r, "viewer") {
		t.Errorf("signed in with role %q", r)
	}
	for path, absent := range map[string][]string{
		"/proxies":            {`a[href="/proxies/new"]`},
		"/proxies/echo":       {`a[href="/proxies/echo/edit"]`, "#rule-form", `form[action$="/delete"]`},
		"/agents/billing-bot": {"#issue-form", `form[action^="/tokens/"]`},
		"/secrets/echo-key":   {"#rotate", "#connect"},
	} {
		tb.open(path)
		for _, sel := range absent {
			if tb.eval(fmt.Sprintf(`String(!!document.querySelector(%s))`, js(sel))) != "false" {
				t.Errorf("%s shows %s to a viewer", path, sel)
			}
		}
	}
	tb.open("/logs?proxy=echo")
	tb.do("open the record", chromedp.Click(chromedp.CSS("#log-rows td.time a")), chromedp.WaitVisible(chromedp.CSS("#h-chain")))
	if body := tb.eval(`document.body.innerText`); !strings.Contains(body, "[hidden]") || strings.Contains(body, `"amount"`) {
		t.Errorf("a viewer sees header values or bodies")
	}
	status := tb.eval(`(async () => { const r = await fetch('/api/v1/proxies/echo', {method: 'DELETE',
		headers: {'X-Keyhole-CSRF': document.querySelector('meta[name=csrf-token]').content}}); return String(r.status) })()`)
	if status != "403" {
		t.Errorf("a viewer's DELETE from the page = %s, want 403", status)
	}
	tb.clean("the viewer")
}

// xssPayloads are planted in logged requests: each would call the binding
// (or set a flag) if the page ever treated it as code or markup.
var xssPayloads = []string{
	`<script>__pwned('script')</script>`,
	`<img src=x onerror="__pwned('img')">`,
	`<svg onload=__pwned('svg')><circle r=1 /></svg>`,
	`javascript:__pwned('js-url')`,
	`</script><script>__pwned('close-script')</script>`,
	`"><img src=x onerror=__pwned('dq')>`,
	`'><img src=x onerror=__pwned('sq')>`,
	`" onmouseover="__pwned('attr') x="`,
	`</style><style>body{background:url(/css-injection)}</style><div style="background:url(/inline-style)">`,
	"\u2028__pwned('u2028')\u2029;window.__pwnedFlag=1//",
	`{{constructor.constructor('__pwned("tpl")')()}}`,
	`<a href="javascript:__pwned('link')">click</a>`,
	`<iframe srcdoc="<script>parent.__pwned('srcdoc')</script>"></iframe>`,
	`<math><mtext><table><mglyph><style><img src=x onerror=__pwned('mxss')>`,
}

// pathSafe keeps what a request path can carry (the gateway refuses
// control bytes, encoded slashes and dot segments before any rule).
func pathSafe(p string) string {
	p = strings.NewReplacer("/", "|", "\u2028", "", "\u2029", "", "..", "").Replace(p)
	return strings.ReplaceAll(escapePath(p), "%2F", "|")
}

func escapePath(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// TestDashboardHostileData plants XSS payloads in logged requests' paths,
// queries, headers and bodies (and, echoed, in responses), then opens
// every page that shows them — server-rendered and live — and asserts that
// nothing ran, the CSP reported nothing, and the payloads show as text.
func TestDashboardHostileData(t *testing.T) {
	n := startNode(t)
	tok := n.setup("sk_test_" + randAlnum(24))
	tb := newTab(t, n)
	tb.loginToken(n.token)

	send := func(i int, p string) {
		hdr := http.Header{"X-Payload": {strings.NewReplacer("\u2028", " ", "\u2029", " ").Replace(p)}, "Content-Type": {"application/json"},
			"User-Agent": {p[:min(len(p), 40)]}}
		body := fmt.Sprintf(`{"note":%s,"raw":"%s"}`, js(p), strings.ReplaceAll(escapePath(p), "%", "\\u0025"))
		n.gateway(tok, "POST", fmt.Sprintf("/echo/v1/x%d/%s?q=%s", i, pathSafe(p), escapePath(p)), hdr, body)
		// A non-JSON body too, and a refused call (no rule for GET on /v1/admin).
		n.gateway(tok, "PUT", fmt.Sprintf("/echo/v1/t%d", i), http.Header{"Content-Type": {"text/html"}}, p)
		n.gateway(tok, "GET", fmt.Sprintf("/echo/v1/admin/%s", pathSafe(p)), http.Header{"X-Payload": {"x"}}, "")
	}
	for i, p := range xssPayloads[:len(xssPayloads)/2] {
		send(i, p)
	}

	// Server-rendered list and live tail.
	tb.open("/logs")
	tb.do("live tail", chromedp.Click(chromedp.CSS("#live")))
	tb.waitJS("the stream is open", `document.getElementById('live').dataset.state === 'open'`)
	for i, p := range xssPayloads[len(xssPayloads)/2:] {
		send(len(xssPayloads)/2+i, p)
	}
	tb.waitJS("the live rows arrive", fmt.Sprintf(`document.querySelectorAll('#log-rows tr').length >= %d`, 3*len(xssPayloads)))
	// The payload of a path shows as text.
	if !strings.Contains(tb.eval(`document.getElementById('log-rows').innerText`), `<script>__pwned('script')<|script>`) {
		t.Errorf("the log does not show the script payload as text")
	}
	tb.shot("hostile-log", false)
	tb.clean("the request log")

	// Every record's page.
	out := n.mustAPI(n.token, "GET", "/api/v1/logs?proxy=echo&limit=200", nil, 200)
	recs := out["records"].([]any)
	if len(recs) < 3*len(xssPayloads) {
		t.Fatalf("%d records, want %d", len(recs), 3*len(xssPayloads))
	}
	for _, r := range recs {
		id := r.(map[string]any)["id"].(string)
		tb.open("/logs/" + id)
		tb.clean("record " + id)
	}
	tb.open("/logs/" + recs[len(recs)-1].(map[string]any)["id"].(string))
	text := tb.eval(`document.body.innerText`)
	for _, want := range []string{`<script>__pwned('script')</script>`, `"note": "<script>__pwned('script')</script>"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the record page does not show %q as text", want)
		}
	}
	tb.shot("hostile-detail", true)
	tb.clean("the record pages")

	// The try panel with a payload as the path and a header.
	tb.open("/proxies/echo")
	tb.do("try a hostile request", setVal("#t-path", `/v1/<img src=x onerror=__pwned('try')>`),
		setVal("#t-headers", `X-A: <script>__pwned('try-h')</script>`), chromedp.Click(chromedp.CSS("#try-run")))
	tb.waitJS("the try panel answers", `!document.getElementById('try-result').hidden`)
	tb.open("/?window=15m")
	tb.open("/audit")
	tb.clean("the other pages")
}
