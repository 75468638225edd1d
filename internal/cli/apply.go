package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// `keyhole apply -f keyhole.yaml` (SPEC §9): a declarative config. The file
// (YAML or JSON, spec.ParseConfig) lists secrets by reference, whole proxies
// and agents. The CLI resolves every secret reference on this machine (the
// node never reads an environment variable or a file for an apply) and
// sends everything to POST /api/v1/apply, which applies it in one
// transaction. No message of this file quotes a secret's value, nor the
// name of the variable or file it came from (which may be a value written
// where a name belongs): an entry is named by its place in the file, its
// secret's name and its line.

const applyLong = `Apply a declarative config: secrets (by reference), proxies with their rules,
and agents, all at once. The node validates everything first and applies it
in one transaction: either all of it is applied or nothing is. Applying the
same file again changes nothing.

The file is YAML or JSON (one schema; strict: unknown fields and repeated
keys are refused, with the line at fault). "-f -" reads it from stdin.

  secrets   each names a secret and where THIS machine reads its value:
            exactly one of from_env (an environment variable, taken
            exactly), from_file (the file's content, one trailing newline
            dropped; a relative path is relative to the config file's
            folder), value_object_from_env or value_object_from_file (an
            object secret: each field from a variable or a file). A value is
            never written in the file. A secret whose value differs from the
            stored one is rotated; secrets are never deleted by apply.
  proxies   whole proxies, as POST /api/v1/proxies takes them (omitted
            fields take their defaults). A proxy that differs is replaced.
  agents    agent names and labels.

With --prune, the proxies and agents the file does not list are deleted,
within the sections the file has (a file without an agents section never
deletes an agent; an empty "agents: []" deletes them all). Deleting an
agent revokes its tokens. --dry-run prints what would change and changes
nothing.`

const applyExample = `  # keyhole.yaml
  secrets:
    - name: stripe-key
      from_env: STRIPE_KEY
  proxies:
    - name: stripe
      upstream: https://api.stripe.com
      auth: {type: bearer, secret: stripe-key}
      rules:
        - name: read-customers
          effect: allow
          methods: [GET]
          paths: ["/v1/customers", "/v1/customers/**"]
        - name: no-delete
          effect: deny
          methods: [DELETE]
          paths: ["/**"]
  agents:
    - name: billing-bot
      labels: {team: billing}

  STRIPE_KEY=sk_live_… keyhole apply -f keyhole.yaml --dry-run
  STRIPE_KEY=sk_live_… keyhole apply -f keyhole.yaml
  keyhole apply -f keyhole.yaml --prune        # also delete unlisted proxies and agents`

// applyAnswer is POST /api/v1/apply's answer.
type applyAnswer struct {
	Changed bool                `json:"changed"`
	DryRun  bool                `json:"dry_run"`
	Secrets map[string][]string `json:"secrets"`
	Proxies map[string][]string `json:"proxies"`
	Agents  map[string][]string `json:"agents"`
}

func (a *app) applyCmd() *cobra.Command {
	var file string
	var prune, dryRun bool
	c := &cobra.Command{
		Use:     "apply -f FILE",
		Short:   "Apply a declarative config (keyhole.yaml): secrets by reference, proxies, rules, agents",
		Long:    applyLong,
		Example: applyExample,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				// The arguments are not repeated: one may be a secret.
				return usagef(c, "%s takes the config with -f FILE, and no arguments (got %d)", c.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			name, data, err := readConfig(c, file)
			if err != nil {
				return err
			}
			cfg, err := spec.ParseConfig(data)
			if err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
			dir := "."
			if file != "-" {
				dir = filepath.Dir(file)
			}
			secrets, err := resolveSecrets(a, cfg, dir, name)
			if err != nil {
				return err
			}
			body := map[string]any{"secrets": secrets, "prune": prune, "dry_run": dryRun}
			if cfg.HasProxies {
				// An empty list is sent as [] (listed, so --prune empties it),
				// never as null (not listed).
				body["proxies"] = append([]json.RawMessage{}, cfg.ProxiesJSON...)
			}
			if cfg.HasAgents {
				body["agents"] = append([]spec.Agent{}, cfg.Agents...)
			}
			js, err := json.Marshal(body)
			if err != nil {
				return err
			}
			if len(js) > spec.MaxConfigBytes {
				return fmt.Errorf("%s: with its secrets' values the config is larger than the %d bytes the node takes in one apply; split it into several files",
					name, spec.MaxConfigBytes)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var ans applyAnswer
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/apply", nil, json.RawMessage(js), &ans)
			if err != nil {
				return placeAPIError(err, cfg, name)
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := io.WriteString(c.OutOrStdout(), applySummary(&ans))
				return err
			})
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", `the config file, YAML or JSON ("-" for stdin)`)
	c.Flags().BoolVar(&prune, "prune", false, "delete the proxies and agents the file does not list (within the sections it has; never secrets)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, and change nothing")
	c.MarkFlagRequired("file")
	return c
}

// readConfig reads the config (bounded by spec.MaxConfigBytes) and returns
// the name its messages use.
func readConfig(c *cobra.Command, path string) (string, []byte, error) {
	if path == "" {
		return "", nil, usagef(c, "-f needs a file name (or - for stdin)")
	}
	name := clean(path)
	var r io.Reader
	if path == "-" {
		name = "stdin"
		r = c.InOrStdin()
		if isTerminal(r) {
			return "", nil, fmt.Errorf("-f - reads the config from stdin, and stdin is a terminal; pipe it in or give a file: %s -f keyhole.yaml", c.CommandPath())
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", nil, fmt.Errorf("cannot read %s: %v", name, pathErr(err))
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, spec.MaxConfigBytes+1))
	if err != nil {
		return "", nil, fmt.Errorf("cannot read %s: %v", name, pathErr(err))
	}
	if len(b) > spec.MaxConfigBytes {
		return "", nil, fmt.Errorf("%s is larger than %d bytes", name, spec.MaxConfigBytes)
	}
	return name, b, nil
}

// resolveSecrets reads every secret's value where the config says. dir is
// the folder relative from_file paths start from; name is the config's name
// for messages.
func resolveSecrets(a *app, cfg *spec.Config, dir, name string) ([]spec.SecretValue, error) {
	out := make([]spec.SecretValue, 0, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		entry := fmt.Sprintf("secrets[%d]", i)
		fail := func(path, format string, args ...any) error {
			where := name
			if n := cfg.Line(path); n > 0 {
				where += fmt.Sprintf(": line %d", n)
			}
			return fmt.Errorf("%s: %s (%s): %s", where, entry, clean(s.Name), fmt.Sprintf(format, args...))
		}
		var val any
		switch {
		case s.FromEnv != "":
			v, err := envValue(a, s.FromEnv, "from_env")
			if err != nil {
				return nil, fail(entry+".from_env", "%v", err)
			}
			val = v
		case s.FromFile != "":
			v, err := fileValue(dir, s.FromFile, "from_file")
			if err != nil {
				return nil, fail(entry+".from_file", "%v", err)
			}
			val = v
		case s.ValueObjectFromEnv != nil || s.ValueObjectFromFile != nil:
			refs, kind := s.ValueObjectFromEnv, "value_object_from_env"
			if refs == nil {
				refs, kind = s.ValueObjectFromFile, "value_object_from_file"
			}
			obj := make(map[string]string, len(refs))
			for _, field := range sortedFields(refs) {
				what := kind + "." + field
				var v string
				var err error
				if kind == "value_object_from_env" {
					v, err = envValue(a, refs[field], what)
				} else {
					v, err = fileValue(dir, refs[field], what)
				}
				if err != nil {
					return nil, fail(entry+"."+what, "%v", err)
				}
				obj[field] = v
			}
			val = obj
		default:
			// ParseConfig refuses an entry without a source.
			return nil, fail(entry, "no value source")
		}
		js, err := json.Marshal(val)
		if err != nil {
			return nil, fail(entry, "the value cannot be encoded")
		}
		out = append(out, spec.SecretValue{Name: s.Name, Value: js})
	}
	return out, nil
}

// envValue is an environment variable's value, exactly. The message names
// the config key, not the variable (which may be a value typed where a
// name belongs).
func envValue(a *app, env, what string) (string, error) {
	v := a.getenv(env)
	if v == "" {
		return "", fmt.Errorf("the environment variable named by %s is empty or not set", what)
	}
	return v, nil
}

// fileValue is a file's content with one trailing newline dropped, read as
// `secret set --from-file` reads one. A relative path starts at dir.
func fileValue(dir, path, what string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the file named by %s: %v", what, pathErr(err))
	}
	defer f.Close()
	v, err := readValue(f, "the file named by "+what)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fmt.Errorf("the file named by %s is empty", what)
	}
	return v, nil
}

func sortedFields(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// configPath is the entry an apply error starts with: secrets[0],
// proxies[2].rules[1], agents[3].name.
var configPath = regexp.MustCompile(`^(?:secrets|proxies|agents)\[\d+\](?:\.[a-z_]+|\[\d+\])*`)

// placeAPIError prefixes a 400 of the node that names an entry of the
// config with the file and the entry's line.
func placeAPIError(err error, cfg *spec.Config, name string) error {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return err
	}
	where := name
	if p := configPath.FindString(ae.Message); p != "" {
		if n := cfg.Line(p); n > 0 {
			where += fmt.Sprintf(": line %d", n)
		}
	}
	ae.Message = where + ": " + ae.Message
	return ae
}

// applySummary is the human answer: one line per section that has
// anything to say, then whether anything changed.
func applySummary(ans *applyAnswer) string {
	var b strings.Builder
	for _, sec := range []struct {
		name    string
		m       map[string][]string
		changed []string // in the order printed
	}{
		{"secrets", ans.Secrets, []string{"created", "rotated"}},
		{"proxies", ans.Proxies, []string{"created", "replaced", "deleted"}},
		{"agents", ans.Agents, []string{"created", "updated", "deleted"}},
	} {
		var parts []string
		for _, what := range sec.changed {
			if names := sec.m[what]; len(names) > 0 {
				cleaned := make([]string, len(names))
				for i, n := range names {
					cleaned[i] = clean(n)
				}
				parts = append(parts, what+" "+strings.Join(cleaned, ", "))
			}
		}
		if n := len(sec.m["unchanged"]); n > 0 {
			parts = append(parts, fmt.Sprintf("unchanged %d", n))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", sec.name, strings.Join(parts, "; "))
		}
	}
	switch {
	case ans.DryRun:
		b.WriteString("dry run: nothing was changed\n")
	case !ans.Changed:
		b.WriteString("nothing to change: the node already matches the config\n")
	}
	return b.String()
}
