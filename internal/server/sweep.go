package server

// The sweep: every node deletes, once a minute, the dashboard sessions and
// the OAuth connect flows that have expired (store.Sessions,
// store.OAuthFlows). Nothing depends on it for correctness — an expired
// row is refused when read — it only keeps the tables small. Several nodes
// sweeping the same tables is harmless: each DELETE takes what is left.

import (
	"context"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// sweepEvery is how often a node sweeps.
const sweepEvery = time.Minute

// startSweep starts the node's sweep goroutine; n.stopSweep stops it.
func (n *Node) startSweep() {
	ss, _ := n.st.(store.Sessions)
	fs, _ := n.st.(store.OAuthFlows)
	if ss == nil && fs == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.sweep(ctx, ss, fs, time.Now())
			}
		}
	}()
	n.stopSweep = func() { cancel(); <-done }
}

// sweep deletes what expired at now.
func (n *Node) sweep(ctx context.Context, ss store.Sessions, fs store.OAuthFlows, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if ss != nil {
		if k, err := ss.DeleteExpiredSessions(ctx, now); err != nil {
			n.log.Warn("expired dashboard sessions could not be deleted (retried in a minute)", "err", err)
		} else if k > 0 {
			n.log.Debug("expired dashboard sessions deleted", "count", k)
		}
	}
	if fs != nil {
		if k, err := fs.DeleteExpiredFlows(ctx, now); err != nil {
			n.log.Warn("expired OAuth connect flows could not be deleted (retried in a minute)", "err", err)
		} else if k > 0 {
			n.log.Debug("expired OAuth connect flows deleted", "count", k)
		}
	}
}
