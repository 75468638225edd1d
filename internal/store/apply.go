package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"time"
)

// ApplyPlan is a whole declarative configuration (SPEC §7 POST /apply,
// §9 keyhole apply) that Config.Apply writes in one transaction: every
// part of it, or nothing.
//
// The plan is applied in this order: secrets (created, or rotated when
// Seal says the value changed), proxies (created, replaced when their spec
// or secret differs), agents (created, labels updated when they differ),
// then the proxies and agents the plan does not list are deleted when
// PruneProxies or PruneAgents says so. Secrets are never deleted.
type ApplyPlan struct {
	// At is the time of every change the plan makes.
	At      time.Time
	Secrets []ApplySecret
	// Proxies are whole proxies: Name, Secret and Spec are used;
	// CreatedAt and UpdatedAt are At.
	Proxies []Proxy
	// Agents: Name and Labels are used; CreatedAt is At.
	Agents []Agent
	// PruneProxies deletes every proxy that Proxies does not name.
	PruneProxies bool
	// PruneAgents deletes every agent that Agents does not name, and
	// revokes its tokens (as DeleteAgent does).
	PruneAgents bool
	// DryRun computes the result as if the plan were applied, then rolls
	// the transaction back: nothing is written.
	DryRun bool
}

// ApplySecret is one secret of a plan.
type ApplySecret struct {
	Name string
	// Seal is called inside the transaction with the secret's current
	// version and the ciphertext of that version (0 and nil when the
	// secret does not exist). It returns the ciphertext of version
	// current+1 (the vault binds a ciphertext to its version) with the
	// value's kind and field names, or a nil ciphertext when the value is
	// unchanged: then nothing is written for the secret and its version
	// stays. An error aborts the whole apply.
	Seal func(current int, ciphertext []byte) (ct []byte, kind string, fields []string, err error)
}

// ApplyResult says what an apply changed (or, for a dry run, would have
// changed), by name. Lists follow the plan's order; deleted names are
// sorted. Updated holds the rotated secrets, replaced proxies and agents
// whose labels changed.
type ApplyResult struct {
	Secrets, Proxies, Agents ApplyChanges
}

// ApplyChanges are the names of one kind of object, by what happened.
type ApplyChanges struct {
	Created, Updated, Unchanged, Deleted []string
}

// Changed reports whether the apply wrote (or would write) anything.
func (r *ApplyResult) Changed() bool {
	for _, c := range []ApplyChanges{r.Secrets, r.Proxies, r.Agents} {
		if len(c.Created)+len(c.Updated)+len(c.Deleted) > 0 {
			return true
		}
	}
	return false
}

// ApplyError is an apply refused because of one object of the plan (a
// proxy whose secret does not exist, a name listed twice); it wraps
// ErrMissingRef or ErrConflict. Nothing was written.
type ApplyError struct {
	Kind string // "secret", "proxy" or "agent"
	Name string
	Err  error
}

func (e *ApplyError) Error() string { return fmt.Sprintf("%s %s: %v", e.Kind, e.Name, e.Err) }

func (e *ApplyError) Unwrap() error { return e.Err }

// CheckPlan refuses a plan that names an object twice (implementations
// call it before they start).
func CheckPlan(p ApplyPlan) error {
	lists := []struct {
		kind  string
		names []string
	}{{kind: "secret"}, {kind: "proxy"}, {kind: "agent"}}
	for _, s := range p.Secrets {
		lists[0].names = append(lists[0].names, s.Name)
	}
	for _, x := range p.Proxies {
		lists[1].names = append(lists[1].names, x.Name)
	}
	for _, x := range p.Agents {
		lists[2].names = append(lists[2].names, x.Name)
	}
	for _, l := range lists {
		seen := make(map[string]bool, len(l.names))
		for _, n := range l.names {
			if seen[n] {
				return &ApplyError{Kind: l.kind, Name: n, Err: fmt.Errorf("listed twice: %w", ErrConflict)}
			}
			seen[n] = true
		}
	}
	return nil
}

// SameSpec reports whether two stored proxy specs are the same JSON value
// (key order and spacing aside): a PostgreSQL jsonb column, or another
// build's encoder, may write the same spec with other bytes.
func SameSpec(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// SameLabels reports whether two agents' labels are equal (nil and empty
// alike).
func SameLabels(a, b map[string]string) bool { return maps.Equal(a, b) }
