package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// VerifyResult is the answer of POST /api/v1/audit/verify (SPEC §7).
type VerifyResult struct {
	OK       bool   `json:"ok"`
	Records  int64  `json:"records"`
	Events   int64  `json:"events"`
	Nodes    int    `json:"nodes"`
	FirstBad string `json:"first_bad,omitempty"`
	Node     string `json:"node,omitempty"`
	Seq      int64  `json:"seq,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Verify walks every node's chain and reports the first broken link: an
// event whose hash is not SHA-256(prev_hash ‖ data) (edited), whose
// prev_hash is not the previous event's hash (reordered, inserted), whose
// seq skips (deleted), or whose data does not name the record it is stored
// under; a "gap" event (the node found its chain truncated or rewritten
// when it started); a chain that does not start at link 1 from the genesis
// hash, unless its latest "cut" event (audit retention) vouches for where
// it starts. Then it compares the index of records with the chain.
//
// heads, when given, are checkpoints kept outside the chain (Checkpoints:
// the heads table and the checkpoint file): a chain that ends before its
// checkpoint was truncated, a chain whose link at the checkpoint's seq has
// another hash was rewritten, a node with a checkpoint and no chain was
// deleted, and a checkpoint whose MAC does not verify (Invalid) was forged.
// A chain that goes on past its checkpoint is accepted: links are committed
// while verify runs.
func Verify(ctx context.Context, st store.Audit, heads map[string]store.ChainHead) (VerifyResult, error) {
	nodes, err := st.ChainNodes(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{OK: true, Nodes: len(nodes)}
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n] = true
		before := res.Records
		h, hasHead := heads[n]
		from := ""
		if h.Source != "" {
			from = " (per " + h.Source + ")"
		}
		var prev []byte
		var last int64
		var firstEv store.AuditEvent
		var cut *parsedCut
		bad := func(e store.AuditEvent, why string) error {
			res.OK, res.FirstBad, res.Node, res.Seq, res.Reason = false, e.RecordID, n, e.Seq, why
			return errStop
		}
		err := st.Chain(ctx, n, func(e store.AuditEvent) error {
			res.Events++
			switch {
			case prev == nil && e.Seq == 1 && !bytes.Equal(e.PrevHash, Genesis):
				return bad(e, "the first link does not start from the genesis hash")
			case prev != nil && e.Seq != last+1:
				return bad(e, fmt.Sprintf("link %d follows link %d: links between them were deleted", e.Seq, last))
			case prev != nil && !bytes.Equal(e.PrevHash, prev):
				return bad(e, fmt.Sprintf("link %d does not continue link %d: a record was inserted, removed or reordered", e.Seq, last))
			case !bytes.Equal(Link(e.PrevHash, e.Data), e.Hash):
				return bad(e, fmt.Sprintf("link %d's hash does not match its data: the record was altered", e.Seq))
			}
			var named struct {
				Event string `json:"event"`
				ID    string `json:"id"`
			}
			if json.Unmarshal(e.Data, &named) != nil || named.Event != e.Kind {
				return bad(e, fmt.Sprintf("link %d is stored as a %q event but its data says %q: it was relabelled", e.Seq, e.Kind, named.Event))
			}
			if named.ID != e.RecordID {
				return bad(e, fmt.Sprintf("link %d's data names another record: it was moved", e.Seq))
			}
			switch e.Kind {
			case "record", "start":
				res.Records++
			case "cut":
				c, err := parseCut(e)
				if err != nil {
					return bad(e, fmt.Sprintf("link %d is a cut whose data does not name the link it keeps from: it was forged", e.Seq))
				}
				cut = &c
			case "gap":
				return bad(e, gapReason(e))
			}
			if hasHead && h.Invalid == "" && e.Seq == h.Seq && !bytes.Equal(e.Hash, h.Hash) {
				return bad(e, fmt.Sprintf("link %d of node %s is not the one written%s: the chain was rewritten from there on", e.Seq, n, from))
			}
			if prev == nil {
				firstEv = e
			}
			prev, last = e.Hash, e.Seq
			return nil
		})
		if err != nil && err != errStop {
			return res, err
		}
		if !res.OK {
			return res, nil
		}
		// Where the chain starts: at link 1, or where its latest cut says.
		switch {
		case firstEv.Seq <= 1:
		case cut == nil:
			bad(firstEv, fmt.Sprintf("the chain of node %s starts at link %d, not 1: its beginning was deleted", n, firstEv.Seq))
		case firstEv.Seq > cut.FirstSeq:
			bad(firstEv, fmt.Sprintf("the chain of node %s starts at link %d, but its latest cut (link %d) removed only the links before %d: links were deleted beyond the cut", n, firstEv.Seq, cut.Seq, cut.FirstSeq))
		case firstEv.Seq == cut.FirstSeq && !bytes.Equal(firstEv.PrevHash, cut.prev):
			bad(firstEv, fmt.Sprintf("link %d, where the chain of node %s starts, does not carry the prev_hash its cut (link %d) names: its beginning was replaced", firstEv.Seq, n, cut.Seq))
		}
		// firstEv.Seq < cut.FirstSeq: a retention pass is deleting (or was
		// stopped while deleting) the links the cut allows it to.
		if !res.OK {
			return res, nil
		}
		if hasHead {
			switch {
			case h.Invalid != "":
				res.OK, res.Node, res.Seq = false, n, 0
				res.Reason = fmt.Sprintf("the checkpoint of node %s cannot be trusted: %s", n, h.Invalid)
				return res, nil
			case h.Seq > last:
				res.OK, res.Node, res.Seq = false, n, last
				res.Reason = fmt.Sprintf("the chain of node %s ends at link %d but link %d was written%s: its tail was truncated", n, last, h.Seq, from)
				return res, nil
			}
		}
		if err := verifyIndex(ctx, st, n, res.Records-before, &res); err != nil {
			return res, err
		}
		if !res.OK {
			return res, nil
		}
	}
	for _, n := range slices.Sorted(maps.Keys(heads)) {
		h := heads[n]
		if seen[n] {
			continue
		}
		switch {
		case h.Invalid != "":
			res.OK, res.Node = false, n
			res.Reason = fmt.Sprintf("the checkpoint of node %s cannot be trusted: %s", n, h.Invalid)
			return res, nil
		case h.Seq > 0:
			res.OK, res.Node = false, n
			from := ""
			if h.Source != "" {
				from = " (per " + h.Source + ")"
			}
			res.Reason = fmt.Sprintf("node %s wrote %d links%s but none is left: its chain was deleted", n, h.Seq, from)
			return res, nil
		}
	}
	return res, nil
}

// gapReason says what a gap event records.
func gapReason(e store.AuditEvent) string {
	var g gapData
	if json.Unmarshal(e.Data, &g) != nil {
		return fmt.Sprintf("link %d records a break in the chain", e.Seq)
	}
	pre := fmt.Sprintf("link %d records that when node %s started, ", e.Seq, g.Node)
	switch g.Why {
	case "truncated":
		return pre + fmt.Sprintf("its chain ended at link %d but its %s said link %d had been written: the tail was truncated while the node was down", g.FoundSeq, g.Source, g.ExpectedSeq)
	case "rewritten":
		return pre + fmt.Sprintf("its link %d was not the one its %s names: the chain was rewritten while the node was down", g.ExpectedSeq, g.Source)
	case "appended":
		return pre + fmt.Sprintf("its chain went on to link %d past its head in %s (link %d): links were appended while the node was down", g.FoundSeq, g.Source, g.ExpectedSeq)
	case "forged":
		return pre + fmt.Sprintf("its head in %s did not verify with the master key: it was forged", g.Source)
	case "unreadable":
		return pre + fmt.Sprintf("its %s could not be read: it was damaged or replaced", g.Source)
	}
	return pre + fmt.Sprintf("its %s could not be read (%s)", g.Source, g.Why)
}

type stopErr struct{}

func (stopErr) Error() string { return "stop" }

var errStop error = stopErr{}

// verifyIndex compares the queryable index (what GET /logs lists and
// filters) with the chain: every index row must be the record its events
// say, and every record of the chain must have its row. An index edited to
// hide a record or turn a denial into an allowed call is reported.
func verifyIndex(ctx context.Context, st store.Audit, node string, records int64, res *VerifyResult) error {
	var rows int64
	err := st.Records(ctx, node, func(row store.LogRow) error {
		rows++
		if why := checkIndex(row); why != "" {
			res.OK, res.FirstBad, res.Node, res.Reason = false, row.Index.ID, node, why
			if len(row.Events) > 0 {
				res.Seq = row.Events[0].Seq
			}
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return err
	}
	if !res.OK || rows == records {
		return nil
	}
	// Counts differ: find the first record of the chain without its row.
	res.OK, res.Node = false, node
	res.Reason = fmt.Sprintf("the index lists %d records of node %s but its chain holds %d: records were hidden from or added to listings", rows, node, records)
	err = st.Chain(ctx, node, func(e store.AuditEvent) error {
		if e.Kind != "record" && e.Kind != "start" {
			return nil
		}
		if _, err := st.GetLog(ctx, e.RecordID); errors.Is(err, store.ErrNotFound) {
			res.FirstBad, res.Seq = e.RecordID, e.Seq
			res.Reason = fmt.Sprintf("record %s (link %d) is missing from the index: it was hidden from listings", e.RecordID, e.Seq)
			return errStop
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil && err != errStop {
		return err
	}
	return nil
}

// checkIndex says how an index row differs from its events ("" if it
// does not).
func checkIndex(row store.LogRow) string {
	if len(row.Events) == 0 || row.Events[0].Kind != "record" && row.Events[0].Kind != "start" {
		return fmt.Sprintf("index row %s has no record in the chain: it was forged", row.Index.ID)
	}
	rec := Merge(store.LogRow{Index: row.Index, Events: row.Events})
	x := row.Index
	str := func(k string) string { v, _ := rec[k].(string); return v }
	num := func(k string) float64 { v, _ := rec[k].(float64); return v }
	complete := rec["incomplete"] != true
	switch {
	case str("proxy") != x.Proxy || str("agent") != x.Agent || str("token_id") != x.TokenID || str("method") != x.Method || str("path") != x.Path:
		return fmt.Sprintf("index row %s names another proxy, agent, token, method or path than its record: the index was edited", x.ID)
	case str("decision") != x.Decision || str("reason") != x.Reason || str("rule") != x.Rule:
		return fmt.Sprintf("index row %s shows another decision than its record: the index was edited", x.ID)
	case complete != x.Complete || complete && int(num("status")) != x.Status:
		return fmt.Sprintf("index row %s shows another status than its record: the index was edited", x.ID)
	case str("time") != x.Time.UTC().Format(TimeFormat):
		return fmt.Sprintf("index row %s shows another time than its record: the index was edited", x.ID)
	}
	return ""
}
