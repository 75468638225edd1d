// Package cluster keeps a node's snapshot in step with configuration
// changes that other nodes make (SPEC §10: in effect on every node within
// 1 s), on a shared PostgreSQL store.
//
// Two paths lead to the same rebuild (catalog.ReloadIfChanged, which does
// nothing unless the store's version moved):
//
//   - LISTEN: the store sends pg_notify(channel, version) in the
//     transaction of every configuration write, delivered at commit. A
//     listener on a connection of its own wakes the rebuild at once when a
//     newer version arrives. The connection is reopened by itself (backoff
//     from 100 ms to 5 s, with jitter so that nodes do not reconnect in
//     step), and every (re)connection starts with a rebuild check, since
//     notifications sent while it was down are lost.
//   - the version poll (default every 500 ms): one indexed read of a
//     one-row table. It bounds how late a change can be when a
//     notification is lost, the listener is down, or LISTEN is off (a
//     pooler in transaction mode, such as PgBouncer, does not carry
//     notifications).
//
// Rebuilds run one at a time on one goroutine; a notification that comes
// during a rebuild makes one more check after it (notifications coalesce).
package cluster

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPoll is the version poll's interval.
const DefaultPoll = 500 * time.Millisecond

// Options configure a Watcher.
type Options struct {
	// Connect opens the listener's own connection (not a pooled one: it
	// stays in LISTEN). Nil: no listener, the poll alone.
	Connect func(ctx context.Context) (*pgx.Conn, error)
	// Channel is the store's notification channel (postgres.Store.Channel).
	Channel string
	// Poll is the version poll's interval (default DefaultPoll).
	Poll time.Duration
	// Current is the configuration version the node serves.
	Current func() int64
	// Reload rebuilds the snapshot if the store's version moved.
	Reload func(ctx context.Context) error
	Logger *slog.Logger
	// Registerer takes the watcher's metrics (nil: none).
	Registerer prometheus.Registerer
}

// Watcher runs the listener and the poll until Close.
type Watcher struct {
	o      Options
	log    *slog.Logger
	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	listening atomic.Bool
	m         metrics
}

type metrics struct {
	up            prometheus.Gauge
	notifications prometheus.Counter
	reconnects    prometheus.Counter
	checks        *prometheus.CounterVec // trigger: notify, poll; result
}

// Start starts the watcher.
func Start(o Options) *Watcher {
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{o: o, log: o.Logger, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	w.m = metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyhole_config_listener_up",
			Help: "1 while this node's LISTEN connection for configuration changes is open (0: changes arrive by the version poll only)."}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyhole_config_notifications_total",
			Help: "Configuration change notifications received."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyhole_config_listener_reconnects_total",
			Help: "Times the LISTEN connection was lost and reopened."}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyhole_config_checks_total",
			Help: "Configuration version checks by what triggered them (notify, poll) and result (ok, error)."}, []string{"trigger", "result"}),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{w.m.up, w.m.notifications, w.m.reconnects, w.m.checks} {
			o.Registerer.Register(c)
		}
	}
	w.wg.Add(1)
	go w.rebuilder()
	if o.Connect != nil {
		w.wg.Add(1)
		go w.listener()
	}
	return w
}

// Close stops the watcher and waits for it.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
}

// Listening reports whether the LISTEN connection is open.
func (w *Watcher) Listening() bool { return w.listening.Load() }

func (w *Watcher) wake() {
	select {
	case w.kick <- struct{}{}:
	default: // a check is already due
	}
}

// rebuilder runs every check: when woken by the listener, and on the poll.
func (w *Watcher) rebuilder() {
	defer w.wg.Done()
	tick := time.NewTicker(w.o.Poll)
	defer tick.Stop()
	failing := false
	for {
		trigger := "poll"
		select {
		case <-w.ctx.Done():
			return
		case <-w.kick:
			trigger = "notify"
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
		err := w.o.Reload(ctx)
		cancel()
		if w.ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			w.m.checks.WithLabelValues(trigger, "error").Inc()
			if !failing {
				w.log.Error("cannot check the configuration version; this node keeps serving its current snapshot and retries on every poll",
					"err", err, "version", w.o.Current())
			}
			failing = true
		default:
			w.m.checks.WithLabelValues(trigger, "ok").Inc()
			if failing {
				w.log.Info("configuration checks work again", "version", w.o.Current())
			}
			failing = false
		}
	}
}

// listener keeps a LISTEN connection open and wakes the rebuilder for
// every notification of a version newer than the node's.
func (w *Watcher) listener() {
	defer w.wg.Done()
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	first := true
	for w.ctx.Err() == nil {
		conn, err := w.listen()
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			if first || backoff == minBackoff {
				w.log.Warn("cannot open the configuration change listener; changes made on other nodes arrive by the version poll meanwhile",
					"err", err, "poll", w.o.Poll)
			}
			first = false
			sleep := backoff/2 + rand.N(backoff/2+1) // jitter: nodes do not reconnect in step
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(sleep):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		if !first {
			w.m.reconnects.Inc()
			w.log.Info("configuration change listener connected again")
		}
		first, backoff = false, minBackoff
		w.listening.Store(true)
		w.m.up.Set(1)
		w.wake() // notifications sent while no one listened are lost: check now
		err = w.receive(conn)
		w.listening.Store(false)
		w.m.up.Set(0)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		cancel()
		if w.ctx.Err() != nil {
			return
		}
		w.log.Warn("lost the configuration change listener; reconnecting (changes arrive by the version poll meanwhile)", "err", err, "poll", w.o.Poll)
	}
}

func (w *Watcher) listen() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	conn, err := w.o.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{w.o.Channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

func (w *Watcher) receive(conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(w.ctx)
		if err != nil {
			return err
		}
		if n.Channel != w.o.Channel {
			continue
		}
		w.m.notifications.Inc()
		v, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			w.log.Warn("a configuration change notification without a version; checking", "payload_len", len(n.Payload))
			w.wake()
			continue
		}
		if v > w.o.Current() {
			w.wake()
		}
	}
}
