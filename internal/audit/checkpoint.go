package audit

// Chain checkpoints: the last link each node wrote, kept outside the chain
// where a truncation of the chain cannot silently reset it (issue 4).
//
//   - The heads table (store: audit_heads) holds each node's last link,
//     written in the same transaction as every batch of its events, with a
//     MAC keyed by the master key: a head cannot be forged, or moved to
//     match a rewritten chain, without the master key.
//   - The checkpoint file (<data dir>/audit-checkpoint) holds this node's
//     last committed link, with the same MAC, rewritten at most once a
//     second and on Close. It lives outside the database, so rolling the
//     heads table back to an older genuine row does not hide a truncation
//     either, except for the links committed within the last second before
//     the node stopped uncleanly (see checkpointEvery).
//
// MAC input (HeadMAC): HMAC-SHA256(key, "keyhole audit head v1\n" ‖
// be32(len(node)) ‖ node ‖ be64(seq) ‖ be32(len(hash)) ‖ hash), with key =
// master.DeriveKey(CheckpointPurpose). The lengths make the encoding
// unambiguous; the label keeps it apart from any other MAC under that key.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// CheckpointPurpose is the vault.MasterKey.DeriveKey purpose of the key
// that authenticates chain heads and checkpoint files.
const CheckpointPurpose = "audit-checkpoint-mac/v1"

// CheckpointFileName is the checkpoint file's name in the data folder.
const CheckpointFileName = "audit-checkpoint"

// checkpointEvery bounds how often the checkpoint file is rewritten. It is
// also the window a truncation can hide in: the links committed in the
// last checkpointEvery before a node stops uncleanly (kill -9, power loss)
// are not in its file yet, so deleting them and rolling the heads table
// back to an older genuine row goes unnoticed.
const checkpointEvery = time.Second

// Sources of a checkpoint, as Verify names them.
const (
	SourceHeads = "audit_heads"
	SourceFile  = "checkpoint file"
)

// HeadMAC authenticates node's head (seq, hash) under key.
func HeadMAC(key []byte, node string, seq int64, hash []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("keyhole audit head v1\n"))
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], uint32(len(node)))
	m.Write(b[:4])
	m.Write([]byte(node))
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	m.Write(b[:])
	binary.BigEndian.PutUint32(b[:4], uint32(len(hash)))
	m.Write(b[:4])
	m.Write(hash)
	return m.Sum(nil)
}

func validHead(key []byte, node string, h store.ChainHead) bool {
	return hmac.Equal(h.MAC, HeadMAC(key, node, h.Seq, h.Hash))
}

// checkpointFile is the checkpoint file's JSON (one line). Time is
// informative only: it is not authenticated.
type checkpointFile struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	Seq     int64  `json:"seq"`
	Hash    string `json:"hash"`
	MAC     string `json:"mac"`
	Time    string `json:"time"`
}

// readCheckpoint reads a checkpoint file: ok false when there is none.
// A file that exists but cannot be read or parsed is an error.
func readCheckpoint(path string) (node string, h store.ChainHead, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", store.ChainHead{}, false, nil
	}
	if err != nil {
		return "", store.ChainHead{}, false, err
	}
	var f checkpointFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 || f.Node == "" {
		return "", store.ChainHead{}, false, errors.New("the checkpoint file is malformed")
	}
	h.Seq = f.Seq
	if h.Hash, err = hex.DecodeString(f.Hash); err != nil {
		return "", store.ChainHead{}, false, errors.New("the checkpoint file is malformed")
	}
	if h.MAC, err = hex.DecodeString(f.MAC); err != nil {
		return "", store.ChainHead{}, false, errors.New("the checkpoint file is malformed")
	}
	h.UpdatedAt, _ = time.Parse(time.RFC3339Nano, f.Time)
	return f.Node, h, true, nil
}

// writeCheckpoint replaces the file atomically: a temporary file in the
// same folder, fsynced, renamed over the old one, then the folder fsynced
// so that the rename itself survives a power loss. A crash at any point
// leaves the old file or the new one, never a torn one.
func writeCheckpoint(path string, key []byte, node string, seq int64, hash []byte, at time.Time) error {
	b, err := json.Marshal(checkpointFile{Version: 1, Node: node, Seq: seq, Hash: hex.EncodeToString(hash),
		MAC: hex.EncodeToString(HeadMAC(key, node, seq, hash)), Time: at.UTC().Format(TimeFormat)})
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if e := d.Close(); err == nil {
		err = e
	}
	return err
}

// removeStaleTemps removes the temporary files that a crash in the middle
// of writeCheckpoint left.
func removeStaleTemps(path string) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+"."
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ".tmp") && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// Checkpoints returns the checkpoints that Verify needs to find a truncated
// or rewritten tail (admin.Options.ChainHeads): every node's head from the
// heads table, and this node's checkpoint file, each MAC-checked. Where a
// node has both, the one further along is kept (a rewrite or truncation
// that the lower one would reveal, the higher one reveals too, since a
// chain rewritten at a link differs at every later link). A checkpoint
// whose MAC does not verify is returned with Invalid set, and Verify
// reports it as forged. Without a CheckpointKey it returns nil: Verify then
// checks the chain alone.
func (w *Writer) Checkpoints(ctx context.Context) (map[string]store.ChainHead, error) {
	return Checkpoints(ctx, w.st, w.opt.CheckpointKey, w.opt.Node, w.opt.CheckpointFile)
}

// Checkpoints is Writer.Checkpoints for node's checkpoint file (file may be
// empty) and the heads in st, under key (nil: none).
func Checkpoints(ctx context.Context, st store.Audit, key []byte, node, file string) (map[string]store.ChainHead, error) {
	if key == nil {
		return nil, nil
	}
	heads, err := st.Heads(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]store.ChainHead{}
	for node, h := range heads {
		h.Source = SourceHeads
		if !validHead(key, node, h) {
			h.Invalid = fmt.Sprintf("its head in %s does not verify with the master key: it was forged", SourceHeads)
		}
		out[node] = h
	}
	if file == "" {
		return out, nil
	}
	fnode, fh, ok, err := readCheckpoint(file)
	switch {
	case err != nil:
		h := out[node]
		h.Source, h.Invalid = SourceFile, "its checkpoint file cannot be read: "+err.Error()
		out[node] = h
	case !ok:
	default:
		fh.Source = SourceFile
		if !validHead(key, fnode, fh) {
			fh.Invalid = fmt.Sprintf("its %s does not verify with the master key: it was forged", SourceFile)
		}
		out[fnode] = mergeHeads(out[fnode], fh)
	}
	return out, nil
}

// mergeHeads keeps the checkpoint that says more: an invalid one (it is
// evidence), else the one further along (the table's on a tie).
func mergeHeads(a, b store.ChainHead) store.ChainHead {
	switch {
	case a.Source == "":
		return b
	case a.Invalid != "":
		return a
	case b.Invalid != "":
		return b
	case b.Seq > a.Seq:
		return b
	}
	return a
}

// gapData is a "gap" event: recorded as the first new link when a node
// starts and finds its chain behind (or different from) a checkpoint it
// had written, so that the chain itself says, for as long as the event is
// kept, that links were lost while the node was down.
type gapData struct {
	Event        string `json:"event"`
	ID           string `json:"id"`
	Time         string `json:"time"`
	Node         string `json:"node"`
	Why          string `json:"why"`    // truncated, rewritten, forged, appended, unreadable
	Source       string `json:"source"` // audit_heads, checkpoint file
	ExpectedSeq  int64  `json:"expected_seq"`
	ExpectedHash string `json:"expected_hash"`
	FoundSeq     int64  `json:"found_seq"`
	FoundHash    string `json:"found_hash"`
}

// startupGaps compares the chain's head with this node's checkpoints (the
// heads table and the checkpoint file) and returns a gap event for each
// that the chain no longer matches:
//
//   - the checkpoint is beyond the chain's last link: the tail was truncated
//     while the node was down (or a backup of the database was restored);
//   - the chain's link at the checkpoint's seq has another hash: it was
//     rewritten;
//   - the checkpoint's MAC does not verify: it was forged (the node will
//     overwrite it with its next commit, so the chain must keep the fact);
//   - the chain goes on past the head in the heads table (written in the
//     same transaction as the links, so it cannot lag): links were
//     appended by someone else.
//
// A checkpoint older than the chain's first link (cut by retention) cannot
// be compared and is accepted.
func (w *Writer) startupGaps(ctx context.Context, found store.ChainHead) ([]store.AuditEvent, error) {
	key, node := w.opt.CheckpointKey, w.opt.Node
	type source struct {
		name string
		h    store.ChainHead
	}
	var srcs []source
	heads, err := w.st.Heads(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot read the audit heads: %w", err)
	}
	if h, ok := heads[node]; ok {
		srcs = append(srcs, source{SourceHeads, h})
	}
	var gaps []store.AuditEvent
	now := time.Now()
	gap := func(src, why string, h store.ChainHead) {
		d := gapData{Event: "gap", ID: newEventID(), Time: now.UTC().Format(TimeFormat), Node: node, Why: why, Source: src,
			ExpectedSeq: h.Seq, ExpectedHash: hex.EncodeToString(h.Hash), FoundSeq: found.Seq, FoundHash: hex.EncodeToString(found.Hash)}
		data, _ := json.Marshal(d)
		w.log.Error("the audit chain does not match the checkpoint this node had written: continuing the chain, with a gap event that verify will report",
			"node", node, "checkpoint", src, "why", why, "checkpoint_seq", h.Seq, "chain_seq", found.Seq)
		gaps = append(gaps, store.AuditEvent{Node: node, RecordID: d.ID, Kind: "gap", Data: data})
	}
	if path := w.opt.CheckpointFile; path != "" {
		fnode, h, ok, err := readCheckpoint(path)
		switch {
		case err != nil:
			gap(SourceFile, "unreadable", store.ChainHead{})
		case ok && fnode != node:
			w.log.Warn("the audit checkpoint file belongs to another node id; replacing it", "file", path, "its_node", fnode, "node", node)
		case ok:
			srcs = append(srcs, source{SourceFile, h})
		}
	}
	for _, s := range srcs {
		h := s.h
		switch {
		case !validHead(key, node, h):
			gap(s.name, "forged", h)
		case h.Seq > found.Seq:
			gap(s.name, "truncated", h)
		case h.Seq == found.Seq:
			if !bytes.Equal(h.Hash, found.Hash) {
				gap(s.name, "rewritten", h)
			}
		case s.name == SourceHeads && h.Seq < found.Seq:
			// The head is written in the same transaction as the links,
			// so at start (no writer of this node running) the chain
			// cannot legitimately be longer: links were added behind the
			// node's back.
			gap(s.name, "appended", h)
		case h.Seq > 0:
			e, err := w.st.ChainLink(ctx, node, h.Seq)
			if errors.Is(err, store.ErrNotFound) {
				continue // before the chain's first link: cut by retention
			}
			if err != nil {
				return nil, fmt.Errorf("cannot read the audit chain: %w", err)
			}
			if !bytes.Equal(e.Hash, h.Hash) {
				gap(s.name, "rewritten", h)
			}
		}
	}
	return gaps, nil
}

func newEventID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
