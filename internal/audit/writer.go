package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/keyhole-gw/keyhole/internal/metrics"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// ErrUnavailable means the record could not be committed: with
// --audit-failure=closed the request is refused with 503 audit_unavailable.
var ErrUnavailable = errors.New("audit log unavailable")

// ErrClosed means the writer has shut down.
var ErrClosed = errors.New("audit writer closed")

// Options configure a Writer.
type Options struct {
	// Node names this node's chain.
	Node string
	// Async: callers do not wait for the commit (--audit-durability=async).
	// A crash can then lose the events still queued.
	Async bool
	// FailOpen: when the store cannot take records, requests proceed and
	// their events wait in a bounded buffer for the store to come back
	// (--audit-failure=open).
	FailOpen bool
	// QueueSize bounds the events waiting for the writer (default 8192).
	// A full queue blocks callers (back-pressure): nothing is dropped.
	QueueSize int
	// MaxBatch bounds one transaction (default 512 events).
	MaxBatch int
	// RetryBuffer bounds the events kept for retry while the store is
	// failing, in open mode (default 100000).
	RetryBuffer int
	// CheckpointKey authenticates the chain head recorded with every
	// batch (store heads table) and in CheckpointFile:
	// master.DeriveKey(CheckpointPurpose). Without it no head is recorded,
	// and a truncated tail cannot be detected (tests only).
	CheckpointKey []byte
	// CheckpointFile is this node's checkpoint file
	// (<data dir>/audit-checkpoint): its last committed link, rewritten at
	// most once a second and on Close. Empty: no file (the heads table
	// alone). Needs CheckpointKey.
	CheckpointFile string
	Logger         *slog.Logger
	Metrics        *metrics.Metrics
}

// Writer is the node's single audit writer. Callers hand it events; one
// goroutine commits whatever is pending as soon as the previous commit has
// ended (group commit, no fixed delay) and releases the waiters of each
// batch when it commits.
type Writer struct {
	st   store.Audit
	opt  Options
	log  *slog.Logger
	m    *metrics.Metrics
	q    chan *pending
	stop chan struct{}
	done chan struct{}

	gate   sync.RWMutex // submissions (read) against Close (write)
	closed bool

	mu      sync.Mutex
	healthy bool
	lastErr time.Time
	// the last committed link (for the checkpoint file)
	cseq  int64
	chash []byte

	// chain head, owned by the loop goroutine
	seq  int64
	head []byte
	// failedBytes: the size of the largest batch that failed since the
	// last success, which the idle probe writes (owned by the loop).
	failedBytes int
	lastProbe   time.Time
	// sized: the store can be probed with a write of a given size; only
	// then is a small commit after a failure not taken as recovery.
	sized bool
	// initial: events to commit before any other (gap events found at
	// start), handed to the loop.
	initial []*pending

	// the checkpoint file's writer goroutine
	ckStop    chan struct{}
	ckDone    chan struct{}
	ckWritten int64 // the seq in the file; owned by the checkpoint goroutine, then Close
	ckFailing bool
}

type pending struct {
	ev        store.AuditEvent
	queued    time.Time
	done      chan error // nil when nobody waits
	droppable bool       // a start or refusal: may be failed fast while the store is down
	must      bool       // the caller must know whether it was committed (a cut): never kept for retry once answered
}

// NewWriter reads the node's chain head and starts the writer.
func NewWriter(ctx context.Context, st store.Audit, opt Options) (*Writer, error) {
	if opt.QueueSize <= 0 {
		opt.QueueSize = 8192
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 512
	}
	if opt.RetryBuffer <= 0 {
		opt.RetryBuffer = 100000
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Metrics == nil {
		opt.Metrics = metrics.New()
	}
	h, err := st.ChainHead(ctx, opt.Node)
	if err != nil {
		return nil, fmt.Errorf("cannot read the audit chain head: %w", err)
	}
	w := &Writer{st: st, opt: opt, log: opt.Logger, m: opt.Metrics, q: make(chan *pending, opt.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{}), healthy: true, seq: h.Seq, head: h.Hash,
		cseq: h.Seq, chash: h.Hash, ckWritten: -1}
	_, w.sized = st.(sizedPinger)
	if w.head == nil {
		w.head = Genesis
	}
	if opt.CheckpointKey != nil {
		// A checkpoint ahead of (or different from) the chain means links
		// were lost while the node was down. Refusing to start would trade
		// availability for nothing: the links are gone either way. The
		// node continues the chain from what is there, and its first new
		// link is a "gap" event that names what it expected and what it
		// found, so verify reports the loss for as long as that link is
		// kept.
		gaps, err := w.startupGaps(ctx, h)
		if err != nil {
			return nil, err
		}
		for _, g := range gaps {
			w.initial = append(w.initial, &pending{ev: g, queued: time.Now()})
		}
		if len(gaps) > 0 {
			// Leave the file as it is until the gap is committed: it is
			// the evidence.
			w.ckWritten = h.Seq
		}
	}
	go w.loop()
	if opt.CheckpointKey != nil && opt.CheckpointFile != "" {
		removeStaleTemps(opt.CheckpointFile)
		w.ckStop, w.ckDone = make(chan struct{}), make(chan struct{})
		go w.checkpointLoop()
	}
	return w, nil
}

// checkpointLoop rewrites the checkpoint file when the chain has moved,
// at most once per checkpointEvery, off the commit path.
func (w *Writer) checkpointLoop() {
	defer close(w.ckDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.checkpoint()
		case <-w.ckStop:
			return
		}
	}
}

// checkpoint writes the last committed link to the checkpoint file if it
// changed since the last write.
func (w *Writer) checkpoint() {
	w.mu.Lock()
	seq, hash := w.cseq, w.chash
	w.mu.Unlock()
	if seq == 0 || seq == w.ckWritten {
		return
	}
	if err := writeCheckpoint(w.opt.CheckpointFile, w.opt.CheckpointKey, w.opt.Node, seq, hash, time.Now()); err != nil {
		if !w.ckFailing {
			w.log.Error("cannot write the audit checkpoint file; a truncation of the chain while the node is down may go unnoticed", "file", w.opt.CheckpointFile, "err", err)
		}
		w.ckFailing = true
		return
	}
	if w.ckFailing {
		w.log.Info("the audit checkpoint file is written again", "file", w.opt.CheckpointFile)
	}
	w.ckFailing = false
	w.ckWritten = seq
}

// Node is the chain this writer appends to.
func (w *Writer) Node() string { return w.opt.Node }

// Async reports whether callers do not wait for commits.
func (w *Writer) Async() bool { return w.opt.Async }

// Healthy reports whether the last commit succeeded.
func (w *Writer) Healthy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.healthy
}

// Record writes a whole record (a refused request, an admin change). In
// sync mode it returns once the record is committed; ErrUnavailable when
// it could not be (the caller answers 503 instead, unless fail-open).
func (w *Writer) Record(ctx context.Context, s *Start, e *End) error {
	data, err := wholeJSON(s, e)
	if err != nil {
		return err
	}
	x := s.index()
	x.Status, x.LatencyMS, x.Complete = e.Status, round3(e.LatencyMS), true
	return w.submit(ctx, store.AuditEvent{Node: w.opt.Node, RecordID: s.ID, Kind: "record", Data: data, Index: x}, true, false)
}

// Begin writes the start of a forwarded request's record; in sync mode the
// request must not be forwarded before it returns nil.
func (w *Writer) Begin(ctx context.Context, s *Start) error {
	data, err := json.Marshal(s.data("start"))
	if err != nil {
		return err
	}
	return w.submit(ctx, store.AuditEvent{Node: w.opt.Node, RecordID: s.ID, Kind: "start", Data: data, Index: s.index()}, true, false)
}

// Finish writes the end of a forwarded request's record. In sync mode it
// waits for the commit (bounded by ctx); an end event that cannot be
// committed yet is kept and retried, never dropped: its request already
// reached the upstream.
func (w *Writer) Finish(ctx context.Context, id string, e *End) error {
	data, err := json.Marshal(e.data(id))
	if err != nil {
		return err
	}
	x := store.LogIndex{ID: id, Decision: e.Decision, Reason: e.Reason, Rule: e.Rule, Status: e.Status,
		LatencyMS: round3(e.LatencyMS), Complete: true}
	return w.submit(ctx, store.AuditEvent{Node: w.opt.Node, RecordID: id, Kind: "end", Data: data, Index: x}, false, false)
}

// appendMust appends an event of the writer's own (a cut) and returns once
// it is committed, or with the reason it was not, whatever the durability
// and failure modes: the caller acts on the commit.
func (w *Writer) appendMust(ctx context.Context, ev store.AuditEvent) error {
	ev.Node = w.opt.Node
	return w.submit(ctx, ev, true, true)
}

func (w *Writer) submit(ctx context.Context, ev store.AuditEvent, droppable, must bool) error {
	p := &pending{ev: ev, queued: time.Now(), droppable: droppable, must: must}
	wait := !w.opt.Async || must
	// The loop sets p.done to nil once it has answered: keep our own copy
	// of the channel so that we never read the field after handing p over
	// (a data race, and a nil channel to wait on forever).
	var done chan error
	if wait {
		done = make(chan error, 1)
		p.done = done
	}
	// In async mode nobody waits for the commit, so fail-closed is decided
	// here: while the store is failing, no new request is let through.
	if (w.opt.Async && !w.opt.FailOpen || must) && droppable && !w.Healthy() {
		return ErrUnavailable
	}
	// The gate makes Close wait for submissions in flight: an event that
	// passed the closed check is in the queue before the loop drains it
	// for the last time.
	w.gate.RLock()
	if w.closed {
		w.gate.RUnlock()
		return ErrClosed
	}
	select {
	case w.q <- p:
	case <-ctx.Done():
		w.gate.RUnlock()
		return ctx.Err()
	}
	w.gate.RUnlock()
	w.m.AuditQueue.Set(float64(len(w.q)))
	if !wait {
		return nil
	}
	select {
	case err := <-done:
		if err != nil && w.opt.FailOpen && !must {
			return nil // kept for retry; open mode lets the request proceed
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, commits what is queued (within ctx) and
// stops the writer.
func (w *Writer) Close(ctx context.Context) error {
	w.gate.Lock()
	already := w.closed
	w.closed = true
	w.gate.Unlock()
	if !already {
		close(w.stop)
	}
	var err error
	select {
	case <-w.done:
	case <-ctx.Done():
		err = fmt.Errorf("audit events still queued at shutdown: %w", ctx.Err())
	}
	if w.ckStop != nil && !already {
		// The last committed link goes to the file now, not up to a
		// second later: a clean stop leaves no window.
		close(w.ckStop)
		<-w.ckDone
		w.checkpoint()
	}
	return err
}

// backoff bounds how often a failing store is retried.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// loop is the single writer. It commits whatever is pending as soon as the
// previous commit has ended. While the store fails it retries with
// backoff: waiting callers of droppable events are answered at once
// (ErrUnavailable: 503 in closed mode), events that must not be lost (ends
// of forwarded requests; every event in async or open mode) are kept and
// retried, and an idle writer probes the store so that service resumes by
// itself when it recovers.
func (w *Writer) loop() {
	defer close(w.done)
	retry := w.initial // events that must not be lost, oldest first
	w.initial = nil
	backoff := time.Duration(0)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if armed && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
		armed = true
	}
	fail := func() {
		backoff = min(max(backoff*2, minBackoff), maxBackoff)
		arm(backoff)
	}
	if len(retry) > 0 {
		arm(0) // commit the initial events without waiting for a caller's
	}
	stopping := false
	for {
		var batch []*pending
		if !stopping {
			select {
			case p := <-w.q:
				batch = append(batch, p)
			case <-timer.C:
				armed = false
			case <-w.stop:
				stopping = true
			}
		}
		// Let the goroutines that are ready to run hand in their events
		// first (on one core, the writer would otherwise take the first
		// event alone while the rest wait to be scheduled): a yield, not a
		// delay. Then drain whatever is pending: this is the group commit.
		if len(batch) > 0 {
			runtime.Gosched()
		}
	drain:
		for len(batch) < w.opt.MaxBatch*4 {
			select {
			case p := <-w.q:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		w.m.AuditQueue.Set(float64(len(w.q)))
		if stopping && len(batch) == 0 && len(retry) == 0 {
			return
		}
		if backoff > 0 && time.Since(w.lastFail()) < backoff {
			// The store failed a moment ago: answer the waiters now
			// instead of making them wait for the next attempt.
			retry = w.failFast(append(retry, batch...))
			if stopping {
				time.Sleep(backoff)
			}
			continue
		}
		all := append(retry, batch...)
		retry = nil
		if len(all) == 0 {
			if backoff > 0 || !w.Healthy() {
				w.probe(fail, &backoff)
			}
			continue
		}
		for len(all) > 0 {
			n := min(len(all), w.opt.MaxBatch)
			if err := w.commit(all[:n]); err != nil {
				retry = w.failFast(all)
				fail()
				break
			}
			backoff = 0
			all = all[n:]
		}
		if len(retry) == 0 && !w.Healthy() {
			// Committed, but smaller than what failed (commit): the
			// probe decides when the store is back, now if it has not
			// run for a while (a node under load is never idle), else
			// once the writer is idle.
			if time.Since(w.lastProbe) >= minBackoff {
				w.probe(fail, &backoff)
			} else {
				arm(minBackoff)
			}
		}
		if stopping && len(retry) > 0 {
			// Shutting down with a failing store: keep trying until
			// Close's deadline (then the process exits).
			time.Sleep(max(backoff, minBackoff))
		}
	}
}

// probe checks an idle, unhealthy store, so that /-/ready and async
// fail-closed recover without traffic.
//
// A store that can (sizedPinger: SQLite) is asked for room for as much as
// the batch that failed (4 MiB at least): on a full disk a tiny write may
// succeed where the records cannot, and calling the store recovered then
// would make /-/ready flap and let requests through to be refused one by
// one.
func (w *Writer) probe(fail func(), backoff *time.Duration) {
	w.lastProbe = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var err error
	if sp, ok := w.st.(sizedPinger); ok && w.failedBytes > 0 {
		err = sp.PingFree(ctx, w.failedBytes)
	} else {
		err = w.st.Ping(ctx)
	}
	cancel()
	if err != nil {
		w.mu.Lock()
		w.lastErr = time.Now()
		w.mu.Unlock()
		fail()
		return
	}
	w.mu.Lock()
	if !w.healthy {
		w.log.Info("audit store recovered")
	}
	w.healthy = true
	w.mu.Unlock()
	*backoff = 0
	w.failedBytes = 0
}

// probeHeadroom is the least a store that failed must take again to be
// called recovered (sizedPinger): a few seconds of records with bodies.
// A full disk whose WAL still has some reusable space takes small commits
// and refuses the next large one; without headroom the node would flap
// between ready and not ready.
const probeHeadroom = 4 << 20

// sizedPinger is a store that can check it has room for n more bytes.
type sizedPinger interface {
	PingFree(ctx context.Context, n int) error
}

func (w *Writer) lastFail() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// failFast answers every waiting caller with ErrUnavailable and returns
// the events to keep for retry: all of them, except droppable events whose
// caller was refused in sync, closed mode (their request got 503 and was
// never forwarded). Beyond RetryBuffer the oldest are given up, each logged
// and counted: never silently.
func (w *Writer) failFast(ps []*pending) []*pending {
	var keep []*pending
	for _, p := range ps {
		refused := false
		if p.done != nil {
			p.done <- ErrUnavailable
			p.done = nil
			refused = !w.opt.FailOpen || p.must
		}
		if p.droppable && refused {
			continue
		}
		keep = append(keep, p)
	}
	if over := len(keep) - w.opt.RetryBuffer; over > 0 {
		for _, p := range keep[:over] {
			w.log.Error("audit event dropped: the store has been failing and the retry buffer is full", "record", p.ev.RecordID, "kind", p.ev.Kind)
		}
		w.m.AuditDropped.Add(float64(over))
		keep = keep[over:]
	}
	return keep
}

// commit assigns chain links to the batch and writes it in one
// transaction; on success it advances the head and releases the waiters.
func (w *Writer) commit(batch []*pending) error {
	start := time.Now()
	seq, head := w.seq, w.head
	evs := make([]store.AuditEvent, len(batch))
	oldest := start
	for i, p := range batch {
		seq++
		e := p.ev
		e.Seq, e.PrevHash = seq, head
		e.Hash = Link(head, e.Data)
		head = e.Hash
		evs[i] = e
		if p.queued.Before(oldest) {
			oldest = p.queued
		}
	}
	if k := w.opt.CheckpointKey; k != nil {
		// The node's head, in the batch's own transaction.
		last := &evs[len(evs)-1]
		last.HeadMAC = HeadMAC(k, w.opt.Node, last.Seq, last.Hash)
	}
	w.m.AuditLag.Set(start.Sub(oldest).Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := w.st.AppendAudit(ctx, evs)
	cancel()
	w.m.AuditCommit.Observe(time.Since(start).Seconds())
	size := 0
	for i := range evs {
		size += len(evs[i].Data) + 256 // the row's other columns and index entries
	}
	w.mu.Lock()
	if err != nil {
		w.failedBytes = max(w.failedBytes, size, probeHeadroom)
		if w.healthy {
			w.log.Error("audit store cannot take records; refusing requests until it recovers", "err", err)
		}
		w.healthy = false
		w.lastErr = time.Now()
		w.mu.Unlock()
		w.m.AuditFailures.Inc()
		return err
	}
	switch {
	case w.healthy:
	case size < w.failedBytes && w.sized:
		// These records are committed, but a store on a full disk can
		// take small writes and not the records that failed: it is not
		// called recovered (/-/ready, async mode) until the probe has
		// written as much as failed.
	default:
		w.log.Info("audit store recovered")
		w.healthy = true
		w.failedBytes = 0
	}
	w.cseq, w.chash = seq, head
	w.mu.Unlock()
	w.seq, w.head = seq, head
	w.m.AuditRecords.Add(float64(len(batch)))
	for _, p := range batch {
		if p.done != nil {
			p.done <- nil
		}
	}
	return nil
}
