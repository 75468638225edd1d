package storetest

// Config.Apply (a whole declarative configuration in one transaction,
// SPEC §7 POST /apply): what it creates, replaces, rotates and prunes,
// that an apply changing nothing writes nothing (no secret version, no
// configuration version), that a dry run writes nothing, and that an
// apply that fails at its last step leaves the store exactly as it was.

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// applyTests are appended to Run's list.
var applyTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ApplyCreatesThenChangesNothing", testApplyIdempotent},
	{"ApplyRotatesReplacesAndUpdates", testApplyUpdates},
	{"ApplyIsAllOrNothing", testApplyAtomic},
	{"ApplyPrunes", testApplyPrune},
	{"ApplyDryRunWritesNothing", testApplyDryRun},
	{"ConcurrentAppliesAllLand", testApplyConcurrent},
}

// sealer is an ApplySecret.Seal for fixtures: the value of a secret is
// its "ciphertext" with the version taken out ("ct:NAME:VALUE@N"), so
// Seal can say whether it changed, as the admin API does by decrypting.
type sealer struct {
	mu    sync.Mutex
	calls []string // "name current old-ciphertext"
}

func (z *sealer) secret(name, value string) store.ApplySecret {
	return store.ApplySecret{Name: name, Seal: func(cur int, old []byte) ([]byte, string, []string, error) {
		z.mu.Lock()
		z.calls = append(z.calls, fmt.Sprintf("%s %d %s", name, cur, old))
		z.mu.Unlock()
		prefix := fmt.Sprintf("ct:%s:%s@", name, value)
		if cur > 0 && bytes.Equal(old, []byte(fmt.Sprintf("%s%d", prefix, cur))) {
			return nil, "", nil, nil
		}
		return []byte(fmt.Sprintf("%s%d", prefix, cur+1)), "string", nil, nil
	}}
}

func failingSecret(name string) store.ApplySecret {
	return store.ApplySecret{Name: name, Seal: func(int, []byte) ([]byte, string, []string, error) {
		return nil, "", nil, errors.New("the vault is sealed")
	}}
}

func spec(name, body string) store.Proxy {
	return store.Proxy{Name: name, Spec: []byte(`{"name":"` + name + `"` + body + `}`)}
}

func load(t *testing.T, s store.Store) *store.State {
	t.Helper()
	st, err := s.Load(t.Context())
	must(t, "Load", err)
	return st
}

func wantResult(t *testing.T, what string, got, want store.ApplyResult) {
	t.Helper()
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("%s: result (-want +got):\n%s", what, d)
	}
}

func testApplyIdempotent(t *testing.T, s store.Store) {
	ctx := t.Context()
	var z sealer
	plan := func(sec float64) store.ApplyPlan {
		gh := spec("gh", `,"upstream":"https://api.github.com"`)
		gh.Secret = "gh-token"
		return store.ApplyPlan{At: at(sec),
			Secrets: []store.ApplySecret{z.secret("gh-token", "v1"), z.secret("slack", "s1")},
			Proxies: []store.Proxy{gh, spec("open", `,"auth":{"type":"none"}`)},
			Agents:  []store.Agent{{Name: "builder", Labels: map[string]string{"team": "infra"}}, {Name: "bare"}},
		}
	}
	v0 := version(t, s)
	res, err := s.Apply(ctx, plan(1))
	must(t, "Apply", err)
	wantResult(t, "first apply", res, store.ApplyResult{
		Secrets: store.ApplyChanges{Created: []string{"gh-token", "slack"}},
		Proxies: store.ApplyChanges{Created: []string{"gh", "open"}},
		Agents:  store.ApplyChanges{Created: []string{"builder", "bare"}},
	})
	if !res.Changed() {
		t.Error("Changed() = false after creating everything")
	}
	v1 := version(t, s)
	if v1 <= v0 {
		t.Errorf("version %d → %d after an apply that created everything, want a bump", v0, v1)
	}
	st := load(t, s)
	want := &store.State{
		Version: v1,
		Secrets: []store.Secret{
			{Name: "gh-token", Version: 1, Kind: "string", CreatedAt: at(1), UsedBy: []string{"gh"}},
			{Name: "slack", Version: 1, Kind: "string", CreatedAt: at(1)},
		},
		Sealed: map[string]store.SecretVersion{
			"gh-token": {Name: "gh-token", Version: 1, Ciphertext: []byte("ct:gh-token:v1@1"), CreatedAt: at(1)},
			"slack":    {Name: "slack", Version: 1, Ciphertext: []byte("ct:slack:s1@1"), CreatedAt: at(1)},
		},
		Proxies: []store.Proxy{
			{Name: "gh", Secret: "gh-token", Spec: plan(1).Proxies[0].Spec, CreatedAt: at(1), UpdatedAt: at(1)},
			{Name: "open", Spec: plan(1).Proxies[1].Spec, CreatedAt: at(1), UpdatedAt: at(1)},
		},
		Agents: []store.Agent{
			{Name: "bare", Labels: map[string]string{}, CreatedAt: at(1)},
			{Name: "builder", Labels: map[string]string{"team": "infra"}, CreatedAt: at(1)},
		},
	}
	if d := cmp.Diff(want, st, opts, sorted); d != "" {
		t.Errorf("state after the first apply (-want +got):\n%s", d)
	}

	// The same plan again: Seal sees the current version and its
	// ciphertext, says "unchanged", and nothing at all is written.
	z.calls = nil
	res, err = s.Apply(ctx, plan(2))
	must(t, "Apply again", err)
	wantResult(t, "second apply", res, store.ApplyResult{
		Secrets: store.ApplyChanges{Unchanged: []string{"gh-token", "slack"}},
		Proxies: store.ApplyChanges{Unchanged: []string{"gh", "open"}},
		Agents:  store.ApplyChanges{Unchanged: []string{"builder", "bare"}},
	})
	if res.Changed() {
		t.Error("Changed() = true for an apply that changed nothing")
	}
	if d := cmp.Diff([]string{"gh-token 1 ct:gh-token:v1@1", "slack 1 ct:slack:s1@1"}, z.calls); d != "" {
		t.Errorf("Seal calls (-want +got):\n%s", d)
	}
	if v := version(t, s); v != v1 {
		t.Errorf("version %d → %d after an apply that changed nothing, want no bump", v1, v)
	}
	if d := cmp.Diff(st, load(t, s), opts, sorted); d != "" {
		t.Errorf("an apply that changed nothing changed the state (-before +after):\n%s", d)
	}
}

func testApplyUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	var z sealer
	first := store.ApplyPlan{At: at(1),
		Secrets: []store.ApplySecret{z.secret("a", "v1"), z.secret("b", "w1")},
		Proxies: []store.Proxy{
			{Name: "p1", Secret: "a", Spec: []byte(`{"name":"p1","n":1,"list":[1,2]}`)},
			{Name: "p2", Secret: "a", Spec: []byte(`{"name":"p2"}`)},
			{Name: "p3", Spec: []byte(`{"name":"p3","x":true}`)},
		},
		Agents: []store.Agent{{Name: "bot", Labels: map[string]string{"env": "dev"}}, {Name: "ops"}},
	}
	_, err := s.Apply(ctx, first)
	must(t, "Apply", err)
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-bot", "bot", "", 0, 1)))

	second := store.ApplyPlan{At: at(5),
		Secrets: []store.ApplySecret{z.secret("a", "v2"), z.secret("b", "w1")},
		Proxies: []store.Proxy{
			// The same JSON value, written another way: unchanged.
			{Name: "p1", Secret: "a", Spec: []byte(` { "list" : [1, 2], "n":1, "name":"p1" }`)},
			// Another secret: replaced.
			{Name: "p2", Secret: "b", Spec: []byte(`{"name":"p2"}`)},
			// Another spec: replaced.
			{Name: "p3", Spec: []byte(`{"name":"p3","x":false}`)},
		},
		Agents: []store.Agent{{Name: "bot", Labels: map[string]string{"env": "prod"}}, {Name: "ops", Labels: map[string]string{}}},
	}
	res, err := s.Apply(ctx, second)
	must(t, "Apply", err)
	wantResult(t, "second apply", res, store.ApplyResult{
		Secrets: store.ApplyChanges{Updated: []string{"a"}, Unchanged: []string{"b"}},
		Proxies: store.ApplyChanges{Updated: []string{"p2", "p3"}, Unchanged: []string{"p1"}},
		Agents:  store.ApplyChanges{Updated: []string{"bot"}, Unchanged: []string{"ops"}},
	})
	st := load(t, s)
	sec := map[string]store.Secret{}
	for _, x := range st.Secrets {
		sec[x.Name] = x
	}
	if a := sec["a"]; a.Version != 2 || a.RotatedAt == nil || !a.RotatedAt.Equal(at(5)) || !a.CreatedAt.Equal(at(1)) {
		t.Errorf("secret a = %+v, want version 2, created at(1), rotated at(5)", a)
	}
	if got := string(st.Sealed["a"].Ciphertext); got != "ct:a:v2@2" {
		t.Errorf("secret a's latest ciphertext = %q, want ct:a:v2@2", got)
	}
	if b := sec["b"]; b.Version != 1 || b.RotatedAt != nil {
		t.Errorf("secret b = %+v, want version 1, never rotated (its value did not change)", b)
	}
	px := map[string]store.Proxy{}
	for _, p := range st.Proxies {
		px[p.Name] = p
	}
	if p := px["p2"]; p.Secret != "b" || !p.CreatedAt.Equal(at(1)) || !p.UpdatedAt.Equal(at(5)) {
		t.Errorf("replaced proxy p2 = %+v, want secret b, created at(1), updated at(5)", p)
	}
	if p := px["p3"]; string(p.Spec) != `{"name":"p3","x":false}` || !p.UpdatedAt.Equal(at(5)) {
		t.Errorf("replaced proxy p3 = %s updated %v, want the new spec, updated at(5)", p.Spec, p.UpdatedAt)
	}
	if p := px["p1"]; !p.UpdatedAt.Equal(at(1)) {
		t.Errorf("unchanged proxy p1 was written (updated_at %v)", p.UpdatedAt)
	}
	for _, a := range st.Agents {
		if a.Name == "bot" && (a.Labels["env"] != "prod" || !a.CreatedAt.Equal(at(1))) {
			t.Errorf("agent bot = %+v, want labels env=prod, created at(1)", a)
		}
	}
	// Updating an agent's labels keeps its tokens.
	tk, err := s.GetToken(ctx, "tok-bot")
	must(t, "GetToken", err)
	if tk.RevokedAt != nil {
		t.Error("updating an agent's labels revoked its token")
	}
}

func testApplyAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	var z sealer
	_, err := s.Apply(ctx, store.ApplyPlan{At: at(1),
		Secrets: []store.ApplySecret{z.secret("a", "v1")},
		Proxies: []store.Proxy{{Name: "p1", Secret: "a", Spec: []byte(`{"name":"p1"}`)}},
		Agents:  []store.Agent{{Name: "bot"}},
	})
	must(t, "Apply", err)
	before, v := load(t, s), version(t, s)

	cases := []struct {
		name    string
		plan    store.ApplyPlan
		wantErr error
		wantObj string // ApplyError's Kind and Name, when one is expected
	}{
		{
			// Everything before the last proxy would succeed: a secret
			// rotated, one created, a proxy replaced, one created, and an
			// agent; then a proxy names a secret that exists nowhere.
			name: "last proxy's secret is missing",
			plan: store.ApplyPlan{At: at(2),
				Secrets: []store.ApplySecret{z.secret("a", "v2"), z.secret("new", "n1")},
				Proxies: []store.Proxy{
					{Name: "p1", Secret: "new", Spec: []byte(`{"name":"p1","v":2}`)},
					{Name: "p2", Secret: "a", Spec: []byte(`{"name":"p2"}`)},
					{Name: "p3", Secret: "nowhere", Spec: []byte(`{"name":"p3"}`)},
				},
				Agents:       []store.Agent{{Name: "bot", Labels: map[string]string{"x": "y"}}, {Name: "new-bot"}},
				PruneAgents:  true,
				PruneProxies: true,
			},
			wantErr: store.ErrMissingRef, wantObj: "proxy p3",
		},
		{
			name: "last secret cannot be sealed",
			plan: store.ApplyPlan{At: at(2),
				Secrets: []store.ApplySecret{z.secret("a", "v3"), z.secret("other", "o1"), failingSecret("broken")},
				Proxies: []store.Proxy{{Name: "p9", Spec: []byte(`{"name":"p9"}`)}},
			},
		},
		{
			name: "a proxy listed twice",
			plan: store.ApplyPlan{At: at(2),
				Secrets: []store.ApplySecret{z.secret("a", "v4")},
				Proxies: []store.Proxy{{Name: "p1", Spec: []byte(`{}`)}, {Name: "p1", Spec: []byte(`{"x":1}`)}},
			},
			wantErr: store.ErrConflict, wantObj: "proxy p1",
		},
		{
			name: "a secret listed twice",
			plan: store.ApplyPlan{At: at(2),
				Secrets: []store.ApplySecret{z.secret("z", "1"), z.secret("z", "2")},
			},
			wantErr: store.ErrConflict, wantObj: "secret z",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(ctx, tc.plan)
			if err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantObj != "" {
				var ae *store.ApplyError
				if !errors.As(err, &ae) || ae.Kind+" "+ae.Name != tc.wantObj {
					t.Errorf("err = %v, want an *ApplyError about %s", err, tc.wantObj)
				}
			}
			if got := version(t, s); got != v {
				t.Errorf("version %d → %d after a failed apply", v, got)
			}
			if d := cmp.Diff(before, load(t, s), opts, sorted); d != "" {
				t.Errorf("a failed apply changed the store (-before +after):\n%s", d)
			}
		})
	}
}

func testApplyPrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	var z sealer
	_, err := s.Apply(ctx, store.ApplyPlan{At: at(1),
		Secrets: []store.ApplySecret{z.secret("a", "v1"), z.secret("b", "w1")},
		Proxies: []store.Proxy{
			{Name: "keep", Secret: "a", Spec: []byte(`{"name":"keep"}`)},
			{Name: "old", Secret: "b", Spec: []byte(`{"name":"old"}`)},
			{Name: "older", Spec: []byte(`{"name":"older"}`)},
		},
		Agents: []store.Agent{{Name: "keeper"}, {Name: "gone"}},
	})
	must(t, "Apply", err)
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-gone", "gone", "", 0, 2)))
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-keeper", "keeper", "", 0, 2)))

	// Without prune, what the plan leaves out stays.
	res, err := s.Apply(ctx, store.ApplyPlan{At: at(3),
		Proxies: []store.Proxy{{Name: "keep", Secret: "a", Spec: []byte(`{"name":"keep"}`)}},
		Agents:  []store.Agent{{Name: "keeper"}},
	})
	must(t, "Apply without prune", err)
	if res.Changed() {
		t.Errorf("an apply without prune that lists a subset changed something: %+v", res)
	}

	// Prune proxies only: agents stay.
	res, err = s.Apply(ctx, store.ApplyPlan{At: at(4), PruneProxies: true,
		Proxies: []store.Proxy{{Name: "keep", Secret: "a", Spec: []byte(`{"name":"keep"}`)}},
	})
	must(t, "Apply PruneProxies", err)
	wantResult(t, "prune proxies", res, store.ApplyResult{
		Proxies: store.ApplyChanges{Unchanged: []string{"keep"}, Deleted: []string{"old", "older"}},
	})

	// Prune agents: the gone agent's token is revoked at the apply's time,
	// the keeper's is not; secrets are never pruned, used or not.
	res, err = s.Apply(ctx, store.ApplyPlan{At: at(5), PruneAgents: true, Agents: []store.Agent{{Name: "keeper"}}})
	must(t, "Apply PruneAgents", err)
	wantResult(t, "prune agents", res, store.ApplyResult{
		Agents: store.ApplyChanges{Unchanged: []string{"keeper"}, Deleted: []string{"gone"}},
	})
	st := load(t, s)
	var proxies, agents, secrets []string
	for _, p := range st.Proxies {
		proxies = append(proxies, p.Name)
	}
	for _, a := range st.Agents {
		agents = append(agents, a.Name)
	}
	for _, x := range st.Secrets {
		secrets = append(secrets, x.Name)
	}
	if d := cmp.Diff([]string{"keep"}, proxies); d != "" {
		t.Errorf("proxies after prune (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"keeper"}, agents); d != "" {
		t.Errorf("agents after prune (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"a", "b"}, secrets); d != "" {
		t.Errorf("secrets after prune (-want +got):\n%s", d)
	}
	gone, err := s.GetToken(ctx, "tok-gone")
	must(t, "GetToken", err)
	if gone.RevokedAt == nil || !gone.RevokedAt.Equal(at(5)) {
		t.Errorf("the pruned agent's token: revoked_at = %v, want %v", gone.RevokedAt, at(5))
	}
	kept, err := s.GetToken(ctx, "tok-keeper")
	must(t, "GetToken", err)
	if kept.RevokedAt != nil {
		t.Error("the kept agent's token was revoked")
	}

	// Prune with empty lists deletes every proxy and agent.
	res, err = s.Apply(ctx, store.ApplyPlan{At: at(6), PruneProxies: true, PruneAgents: true})
	must(t, "Apply prune everything", err)
	wantResult(t, "prune everything", res, store.ApplyResult{
		Proxies: store.ApplyChanges{Deleted: []string{"keep"}},
		Agents:  store.ApplyChanges{Deleted: []string{"keeper"}},
	})
}

func testApplyDryRun(t *testing.T, s store.Store) {
	ctx := t.Context()
	var z sealer
	_, err := s.Apply(ctx, store.ApplyPlan{At: at(1),
		Secrets: []store.ApplySecret{z.secret("a", "v1")},
		Proxies: []store.Proxy{{Name: "p1", Secret: "a", Spec: []byte(`{"name":"p1"}`)}, {Name: "p2", Spec: []byte(`{}`)}},
		Agents:  []store.Agent{{Name: "bot"}, {Name: "old"}},
	})
	must(t, "Apply", err)
	must(t, "CreateToken", s.CreateToken(ctx, agentToken("tok-old", "old", "", 0, 2)))
	before, v := load(t, s), version(t, s)

	plan := store.ApplyPlan{At: at(3), PruneProxies: true, PruneAgents: true,
		Secrets: []store.ApplySecret{z.secret("a", "v2"), z.secret("b", "w1")},
		Proxies: []store.Proxy{{Name: "p1", Secret: "b", Spec: []byte(`{"name":"p1"}`)}, {Name: "p3", Spec: []byte(`{}`)}},
		Agents:  []store.Agent{{Name: "bot", Labels: map[string]string{"a": "b"}}, {Name: "new"}},
	}
	want := store.ApplyResult{
		Secrets: store.ApplyChanges{Created: []string{"b"}, Updated: []string{"a"}},
		Proxies: store.ApplyChanges{Created: []string{"p3"}, Updated: []string{"p1"}, Deleted: []string{"p2"}},
		Agents:  store.ApplyChanges{Created: []string{"new"}, Updated: []string{"bot"}, Deleted: []string{"old"}},
	}
	dry := plan
	dry.DryRun = true
	res, err := s.Apply(ctx, dry)
	must(t, "Apply dry run", err)
	wantResult(t, "dry run", res, want)
	if got := version(t, s); got != v {
		t.Errorf("version %d → %d after a dry run", v, got)
	}
	if d := cmp.Diff(before, load(t, s), opts, sorted); d != "" {
		t.Errorf("a dry run changed the store (-before +after):\n%s", d)
	}
	tk, err := s.GetToken(ctx, "tok-old")
	must(t, "GetToken", err)
	if tk.RevokedAt != nil {
		t.Error("a dry run revoked a token")
	}
	// The real apply does what the dry run said.
	res, err = s.Apply(ctx, plan)
	must(t, "Apply", err)
	wantResult(t, "the apply after its dry run", res, want)
}

// testApplyConcurrent: applies running at once (from several nodes) are
// serialized: each rotation of one shared secret gets its own version,
// and every agent each apply creates is there.
func testApplyConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	var z sealer
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Apply(ctx, store.ApplyPlan{At: at(float64(i)),
				Secrets: []store.ApplySecret{z.secret("shared", fmt.Sprint("value-", i))},
				Agents:  []store.Agent{{Name: fmt.Sprint("agent-", i)}},
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, "a concurrent Apply", err)
	}
	sec, err := s.GetSecret(ctx, "shared")
	must(t, "GetSecret", err)
	if sec.Version != n {
		t.Errorf("the shared secret is at version %d after %d applies with different values, want %d", sec.Version, n, n)
	}
	agents, err := s.ListAgents(ctx)
	must(t, "ListAgents", err)
	if len(agents) != n {
		t.Errorf("%d agents after %d concurrent applies that each created one", len(agents), n)
	}
}
