package vault

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Format constants.
const (
	formatV1  = 0x01
	nonceLen  = 12
	tagLen    = 16
	headerLen = 1 + 4 // version ‖ key id

	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = headerLen + nonceLen + tagLen

	wrappedLen = 1 + nonceLen + KeySize + tagLen
)

// WrappedKey is a data key as stored: encrypted under the master key.
type WrappedKey struct {
	ID      uint32
	Wrapped []byte
	// Created is informational (shown to operators, used to decide when to
	// rotate); it is not authenticated.
	Created time.Time
}

// keyringAAD binds a wrapped data key to its id, so that a wrapped key
// copied onto another id's row does not unwrap.
func keyringAAD(id uint32) []byte {
	return strconv.AppendUint([]byte("keyhole/keyring/v1/"), uint64(id), 10)
}

// NewDataKey generates a random data key with the given id and returns it
// wrapped under m.
func (m *MasterKey) NewDataKey(id uint32) (WrappedKey, error) {
	var raw [KeySize]byte
	defer clear(raw[:])
	if _, err := rand.Read(raw[:]); err != nil {
		return WrappedKey{}, fmt.Errorf("vault: reading random bytes: %w", err)
	}
	w, err := m.wrapKey(id, raw[:])
	if err != nil {
		return WrappedKey{}, err
	}
	return WrappedKey{ID: id, Wrapped: w, Created: time.Now().UTC()}, nil
}

func (m *MasterKey) wrapKey(id uint32, raw []byte) ([]byte, error) {
	out := make([]byte, 1+nonceLen, wrappedLen)
	out[0] = formatV1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("vault: reading random bytes: %w", err)
	}
	return m.wrap.seal(out, out[1:], raw, keyringAAD(id)), nil
}

// errUnwrap reports a wrapped key that does not authenticate under this
// master key; callers decide whether that means a wrong master key or a
// damaged row. It never leaves the package.
var errUnwrap = errors.New("vault: data key does not unwrap")

// unwrapKey returns the raw data key; the caller clears it.
func (m *MasterKey) unwrapKey(w WrappedKey) ([]byte, error) {
	if len(w.Wrapped) != wrappedLen || w.Wrapped[0] != formatV1 {
		return nil, fmt.Errorf("%w (data key %d is not a wrapped key of a known format)", ErrCorrupt, w.ID)
	}
	raw, err := m.wrap.open(nil, w.Wrapped[1:1+nonceLen], w.Wrapped[1+nonceLen:], keyringAAD(w.ID))
	if err != nil {
		return nil, errUnwrap
	}
	return raw, nil
}

// unwrapAll unwraps every key, mapping failures the same way for
// OpenKeyring and Rewrap: if not one key unwraps, the master key is wrong;
// if only some do, the store holds keys wrapped by different master keys
// (or a damaged row), which retrying with another key will not fix.
func (m *MasterKey) unwrapAll(keys []WrappedKey, each func(w WrappedKey, raw []byte) error) error {
	opened := 0
	var firstBad error
	for _, w := range keys {
		raw, err := m.unwrapKey(w)
		if errors.Is(err, ErrCorrupt) {
			return err
		}
		if err != nil {
			if firstBad == nil {
				firstBad = fmt.Errorf("%w (data key %d does not open under the master key that opens the others)", ErrCorrupt, w.ID)
			}
			continue
		}
		opened++
		err = each(w, raw)
		clear(raw)
		if err != nil {
			return err
		}
	}
	switch {
	case firstBad != nil && opened == 0:
		return ErrWrongMasterKey
	case firstBad != nil:
		return firstBad
	}
	return nil
}

// Keyring holds the unwrapped data keys and which one is active. It is safe
// for concurrent use; Seal and Open take no lock. The zero Keyring holds no
// keys: Seal fails with ErrNoActiveKey and Open with ErrUnknownKey.
type Keyring struct {
	state atomic.Pointer[ringState]

	mu     sync.Mutex // serialises AddKey and SetActive
	master *MasterKey // the master key that opened it, for AddKey
}

// ringState is immutable once published; writers publish a modified copy.
type ringState struct {
	keys   map[uint32]sealer
	active uint32
}

// OpenKeyring unwraps the data keys of a store and makes activeID the key
// that Seal uses. It fails with ErrWrongMasterKey if m opens none of them,
// ErrCorrupt if it opens only some, ErrDuplicateKey if an id repeats, and
// ErrUnknownKey if activeID is not among them.
func (m *MasterKey) OpenKeyring(keys []WrappedKey, activeID uint32) (*Keyring, error) {
	st := &ringState{keys: make(map[uint32]sealer, len(keys)), active: activeID}
	err := m.unwrapAll(keys, func(w WrappedKey, raw []byte) error {
		if _, dup := st.keys[w.ID]; dup {
			return fmt.Errorf("%w (data key %d appears twice)", ErrDuplicateKey, w.ID)
		}
		dk, err := newSealer(raw)
		if err != nil {
			return err
		}
		st.keys[w.ID] = dk
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := st.keys[activeID]; !ok {
		return nil, fmt.Errorf("%w (the active data key %d is not among the store's keys)", ErrUnknownKey, activeID)
	}
	k := &Keyring{master: m}
	k.state.Store(st)
	return k, nil
}

// Rewrap re-wraps the data keys under newMaster, for master key rotation:
// store the result in place of keys (in one transaction) and every sealed
// value opens as before, with nothing re-encrypted. Ids and creation times
// are kept. Errors are those of OpenKeyring.
func (m *MasterKey) Rewrap(keys []WrappedKey, newMaster *MasterKey) ([]WrappedKey, error) {
	if newMaster == nil {
		return nil, errors.New("vault: Rewrap needs a new master key")
	}
	out := make([]WrappedKey, 0, len(keys))
	err := m.unwrapAll(keys, func(w WrappedKey, raw []byte) error {
		wrapped, err := newMaster.wrapKey(w.ID, raw)
		if err != nil {
			return err
		}
		out = append(out, WrappedKey{ID: w.ID, Wrapped: wrapped, Created: w.Created})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Rotate makes a new data key with id newID and returns it wrapped (for the
// caller to store) together with a new keyring: k's keys plus the new one,
// which is active. k itself is unchanged, so that if storing the new key
// fails the caller simply keeps using k; once it is stored, swap keyrings.
// Values sealed under k's keys keep opening with the new keyring.
func (m *MasterKey) Rotate(k *Keyring, newID uint32) (WrappedKey, *Keyring, error) {
	if k.master == nil {
		return WrappedKey{}, nil, errors.New("vault: Rotate needs a keyring made by OpenKeyring or Rotate")
	}
	if !k.master.same(m) {
		// A key wrapped by m next to keys wrapped by another master key
		// would leave a store that no single master key opens.
		return WrappedKey{}, nil, fmt.Errorf("%w (the keyring was opened with another master key)", ErrWrongMasterKey)
	}
	cur := k.load()
	if _, dup := cur.keys[newID]; dup {
		return WrappedKey{}, nil, fmt.Errorf("%w (data key %d)", ErrDuplicateKey, newID)
	}
	w, err := m.NewDataKey(newID)
	if err != nil {
		return WrappedKey{}, nil, err
	}
	dk, err := m.openDataKey(w)
	if err != nil {
		return WrappedKey{}, nil, err
	}
	st := &ringState{keys: maps.Clone(cur.keys), active: newID}
	st.keys[newID] = dk
	nk := &Keyring{master: m}
	nk.state.Store(st)
	return w, nk, nil
}

func (m *MasterKey) openDataKey(w WrappedKey) (sealer, error) {
	raw, err := m.unwrapKey(w)
	if errors.Is(err, errUnwrap) {
		return sealer{}, fmt.Errorf("%w (data key %d)", ErrWrongMasterKey, w.ID)
	}
	if err != nil {
		return sealer{}, err
	}
	defer clear(raw)
	return newSealer(raw)
}

// AddKey adds a data key that another node created (a rotation seen through
// the store) without making it active; SetActive does that. The key must be
// wrapped by the master key that opened k.
func (k *Keyring) AddKey(w WrappedKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.master == nil {
		return errors.New("vault: AddKey on a keyring not made by OpenKeyring or Rotate")
	}
	cur := k.load()
	if _, dup := cur.keys[w.ID]; dup {
		return fmt.Errorf("%w (data key %d)", ErrDuplicateKey, w.ID)
	}
	dk, err := k.master.openDataKey(w)
	if err != nil {
		return err
	}
	st := &ringState{keys: maps.Clone(cur.keys), active: cur.active}
	st.keys[w.ID] = dk
	k.state.Store(st)
	return nil
}

// SetActive makes the data key id, which must be in the keyring, the one
// that Seal uses from now on.
func (k *Keyring) SetActive(id uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cur := k.load()
	if _, ok := cur.keys[id]; !ok {
		return fmt.Errorf("%w (data key %d)", ErrUnknownKey, id)
	}
	k.state.Store(&ringState{keys: cur.keys, active: id})
	return nil
}

// ActiveID returns the id of the data key that Seal uses (0 for the zero
// Keyring, which has none).
func (k *Keyring) ActiveID() uint32 { return k.load().active }

// IDs returns the ids of the data keys in the keyring, in increasing order.
func (k *Keyring) IDs() []uint32 { return slices.Sorted(maps.Keys(k.load().keys)) }

// String describes the keyring without key material: its key ids and the
// active one.
func (k *Keyring) String() string {
	if k == nil {
		return "Keyring(nil)"
	}
	st := k.load()
	if len(st.keys) == 0 {
		return "Keyring(empty)"
	}
	return fmt.Sprintf("Keyring(keys=%v active=%d)", k.IDs(), st.active)
}

// GoString is String.
func (k *Keyring) GoString() string { return k.String() }

// Format makes every fmt verb print String, never the keys.
func (k *Keyring) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(k.String())) }

var emptyState = &ringState{}

func (k *Keyring) load() *ringState {
	if st := k.state.Load(); st != nil {
		return st
	}
	return emptyState
}

// Seal encrypts plaintext with the active data key, bound to aad: Open
// succeeds only with the same aad. The result is Overhead bytes longer than
// plaintext.
func (k *Keyring) Seal(aad, plaintext []byte) ([]byte, error) {
	st := k.load()
	dk, ok := st.keys[st.active]
	if !ok {
		return nil, ErrNoActiveKey
	}
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("vault: reading random bytes: %w", err)
	}
	return seal(dk, st.active, nonce, aad, plaintext), nil
}

func seal(dk sealer, id uint32, nonce [nonceLen]byte, aad, plaintext []byte) []byte {
	out := make([]byte, headerLen+nonceLen, Overhead+len(plaintext))
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:headerLen], id)
	copy(out[headerLen:], nonce[:])
	return dk.seal(out, nonce[:], plaintext, fullAAD(out[:headerLen], aad))
}

// fullAAD authenticates the header too. A changed key id or version would
// fail anyway (another key, another parse), but binding them makes that a
// property of the construction rather than of the key lookup.
func fullAAD(header, aad []byte) []byte {
	full := make([]byte, 0, len(header)+len(aad))
	return append(append(full, header...), aad...)
}

// Open decrypts a value from Seal with the data key it names, so values
// sealed before a rotation still open. It fails with ErrCorrupt (truncated,
// unknown format), ErrUnknownKey (a data key not in the keyring) or ErrAuth
// (altered, or aad differs from the one it was sealed with).
func (k *Keyring) Open(aad, sealed []byte) ([]byte, error) {
	id, err := SealedKeyID(sealed)
	if err != nil {
		return nil, err
	}
	dk, ok := k.load().keys[id]
	if !ok {
		return nil, fmt.Errorf("%w (data key %d)", ErrUnknownKey, id)
	}
	nonce := sealed[headerLen : headerLen+nonceLen]
	pt, err := dk.open(nil, nonce, sealed[headerLen+nonceLen:], fullAAD(sealed[:headerLen], aad))
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// SealedKeyID returns the id of the data key that sealed a value, without
// opening it: what a job that retires an old data key (by re-sealing what
// it sealed) needs to find its values.
func SealedKeyID(sealed []byte) (uint32, error) {
	if len(sealed) < Overhead || sealed[0] != formatV1 {
		return 0, ErrCorrupt
	}
	return binary.BigEndian.Uint32(sealed[1:headerLen]), nil
}

// SecretAAD is the AAD that binds a secret's sealed value to its record:
// "secret/" + len(name) + ":" + name + "/" + version, e.g. "secret/6:stripe/3".
// The length prefix makes the encoding unambiguous whatever the name holds
// (a name containing "/" cannot pose as another name and version), and
// the version makes a value copied onto another version fail to open.
func SecretAAD(name string, version int) []byte {
	b := make([]byte, 0, len("secret/")+len(name)+24)
	b = append(b, "secret/"...)
	b = strconv.AppendInt(b, int64(len(name)), 10)
	b = append(b, ':')
	b = append(b, name...)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(version), 10)
}
