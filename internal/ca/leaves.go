package ca

import (
	"crypto/tls"
	"strconv"
	"sync"
	"time"
)

// Leaves caches minted leaf certificates per CA generation and host. A
// leaf is reused until less than a quarter of its lifetime is left (so an
// agent never sees one about to expire), then minted anew. Safe for
// concurrent use; minting is done under the lock, so a burst of tunnels to
// a new host mints one leaf, not one each (minting takes well under a
// millisecond).
type Leaves struct {
	// Max bounds the cache (0: DefaultMaxLeaves). Leaves are minted only
	// for hosts that some proxy's upstream names, so the bound is a
	// backstop, not a working limit.
	Max int

	mu sync.Mutex
	m  map[string]*tls.Certificate
}

// DefaultMaxLeaves is Leaves.Max's default.
const DefaultMaxLeaves = 4096

// Get returns a leaf for host signed by a, minting it when the cache has
// none that is fresh enough.
func (l *Leaves) Get(a *Authority, host string, now time.Time) (*tls.Certificate, error) {
	key := strconv.Itoa(a.Generation) + "/" + host
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.m[key]; c != nil && fresh(c, now) {
		return c, nil
	}
	c, err := a.Mint(host, now)
	if err != nil {
		return nil, err
	}
	if l.m == nil {
		l.m = map[string]*tls.Certificate{}
	}
	max := l.Max
	if max <= 0 {
		max = DefaultMaxLeaves
	}
	if len(l.m) >= max {
		for k, v := range l.m {
			if !fresh(v, now) {
				delete(l.m, k)
			}
		}
		if len(l.m) >= max {
			clear(l.m)
		}
	}
	l.m[key] = c
	return c, nil
}

// Reset empties the cache (a new CA generation is in use).
func (l *Leaves) Reset() {
	l.mu.Lock()
	clear(l.m)
	l.mu.Unlock()
}

// Len is the number of cached leaves.
func (l *Leaves) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func fresh(c *tls.Certificate, now time.Time) bool {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return now.Before(c.Leaf.NotAfter.Add(-life / 4))
}
