package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

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
// under. heads, when given, are the last links each node is known to have
// written (checkpoints kept outside the table): a chain that ends before
// its checkpoint was truncated.
func Verify(ctx context.Context, st store.Audit, heads map[string]store.ChainHead) (VerifyResult, error) {
	nodes, err := st.ChainNodes(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{OK: true, Nodes: len(nodes)}
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n] = true
		var prev []byte
		var last int64
		bad := func(e store.AuditEvent, why string) error {
			res.OK, res.FirstBad, res.Node, res.Seq, res.Reason = false, e.RecordID, n, e.Seq, why
			return errStop
		}
		err := st.Chain(ctx, n, func(e store.AuditEvent) error {
			res.Events++
			switch {
			case prev == nil && e.Kind != "cut" && e.Seq != 1:
				return bad(e, fmt.Sprintf("the chain of node %s starts at link %d, not 1: its beginning was deleted", n, e.Seq))
			case prev == nil && e.Kind != "cut" && !bytes.Equal(e.PrevHash, Genesis):
				return bad(e, "the first link does not start from the genesis hash")
			case prev != nil && e.Seq != last+1:
				return bad(e, fmt.Sprintf("link %d follows link %d: links between them were deleted", e.Seq, last))
			case prev != nil && !bytes.Equal(e.PrevHash, prev):
				return bad(e, fmt.Sprintf("link %d does not continue link %d: a record was inserted, removed or reordered", e.Seq, last))
			case !bytes.Equal(Link(e.PrevHash, e.Data), e.Hash):
				return bad(e, fmt.Sprintf("link %d's hash does not match its data: the record was altered", e.Seq))
			}
			if e.Kind != "cut" {
				var id struct {
					ID string `json:"id"`
				}
				if e.Kind != "end" {
					if json.Unmarshal(e.Data, &id) != nil || id.ID != e.RecordID {
						return bad(e, fmt.Sprintf("link %d's data names another record: it was moved", e.Seq))
					}
				}
				if e.Kind != "end" {
					res.Records++
				}
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
		if h, ok := heads[n]; ok && h.Seq > last {
			res.OK, res.Node, res.Seq = false, n, last
			res.Reason = fmt.Sprintf("the chain of node %s ends at link %d but link %d was written: its tail was truncated", n, last, h.Seq)
			return res, nil
		} else if ok && h.Seq == last && h.Seq > 0 && !bytes.Equal(h.Hash, prev) {
			res.OK, res.Node, res.Seq = false, n, last
			res.Reason = fmt.Sprintf("the last link of node %s is not the one written: the tail was rewritten", n)
			return res, nil
		}
	}
	for n, h := range heads {
		if !seen[n] && h.Seq > 0 {
			res.OK, res.Node = false, n
			res.Reason = fmt.Sprintf("node %s wrote %d links but none is left: its chain was deleted", n, h.Seq)
			return res, nil
		}
	}
	return res, nil
}

type stopErr struct{}

func (stopErr) Error() string { return "stop" }

var errStop error = stopErr{}
