// Package vault is keyhole's envelope encryption: upstream secrets are sealed
// with AES-256-GCM under data keys, and the data keys are stored wrapped
// (encrypted) by the master key, which never touches the store.
//
// The design follows Vault's barrier (vault/barrier_aes_gcm.go):
//
//   - Every sealed value is bound to the record it belongs to by additional
//     authenticated data (AAD) that the caller supplies; for secrets that is
//     SecretAAD(name, version). A ciphertext copied onto another secret, or
//     onto another version of the same secret, does not open.
//   - Data keys form a keyring of "terms": each sealed value names the id of
//     the data key that sealed it, new values are sealed with the active key,
//     and old keys stay in the keyring to open old values. Rotating the data
//     key (Rotate) therefore re-encrypts nothing, and neither does rotating
//     the master key (Rewrap), which re-wraps only the data keys.
//
// The master key is used only through HMAC-SHA256 with distinct labels: one
// derives the key that wraps data keys ("keyhole/keyring/wrap/v1"), one the
// public fingerprint, and DeriveKey the keys of other packages
// ("keyhole/derive/"+purpose). So no two uses share a key, and the
// fingerprint reveals nothing about any key that encrypts.
//
// Formats (all integers big-endian):
//
//	sealed value:     0x01 ‖ data key id (4) ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag (16))
//	                  AAD = the first 5 bytes ‖ the caller's AAD
//	wrapped data key: 0x01 ‖ nonce (12) ‖ AES-256-GCM(32-byte key ‖ tag (16))
//	                  AAD = "keyhole/keyring/v1/" + decimal id
//
// Nonces are random (96 bits). Under one data key that is safe for about 2^32
// seals; keyhole seals once per secret version, and Rotate starts a new key.
//
// No error, String, GoString or fmt output of this package contains key
// material or plaintext.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size in bytes of the master key and of every data key.
const KeySize = 32

// Errors. Callers tell them apart with errors.Is; the returned error may wrap
// one of them with a non-secret detail (a data key id, a byte count).
var (
	// ErrInvalidMasterKey: the configured master key is not the base64 of
	// 32 bytes. Its message says what is expected.
	ErrInvalidMasterKey = errors.New("the master key (KEYHOLE_MASTER_KEY or --master-key-file) must be the base64 of 32 random bytes, e.g. the output of `openssl rand -base64 32`")
	// ErrWrongMasterKey: no data key of the store opens with the given
	// master key, so it is not the key the store was sealed with.
	ErrWrongMasterKey = errors.New("vault: the master key does not open this store")
	// ErrCorrupt: the value is truncated, of an unknown format version, or
	// (for a keyring) inconsistent.
	ErrCorrupt = errors.New("vault: sealed value is corrupt or of an unknown format")
	// ErrUnknownKey: the value was sealed with a data key the keyring does
	// not hold.
	ErrUnknownKey = errors.New("vault: sealed with a data key this keyring does not hold")
	// ErrAuth: authentication failed: the value was altered, or it is bound
	// (by its AAD) to another record.
	ErrAuth = errors.New("vault: sealed value does not authenticate (altered, or bound to another record)")
	// ErrDuplicateKey: a data key with that id is already in the keyring.
	ErrDuplicateKey = errors.New("vault: a data key with this id already exists")
	// ErrNoActiveKey: Seal on a keyring without keys (the zero Keyring).
	ErrNoActiveKey = errors.New("vault: keyring has no active data key")
)

// Labels of the master key's HMAC uses. They are distinct and none begins
// with derivePrefix, so DeriveKey can never return the wrapping key.
const (
	labelWrap        = "keyhole/keyring/wrap/v1"
	labelFingerprint = "keyhole master key fingerprint"
	derivePrefix     = "keyhole/derive/"
)

// MasterKey is the root key. It is held in memory only, and formats as
// "MasterKey(<fingerprint>)" however it is printed.
type MasterKey struct {
	// The key, and the AEAD that wraps data keys (whose expanded key
	// schedule is as secret as the key), are reachable only through func
	// values. fmt prints a func as an address whatever the verb and depth,
	// whereas a byte array or a pointer to one is printed in full by
	// something as innocent as %s on a struct that holds a MasterKey
	// (fmt's bad-verb path dereferences pointers at any depth).
	mac  func(label string) []byte // HMAC-SHA256(key, label)
	wrap sealer                    // AES-256-GCM under mac(labelWrap)
	fp   string
}

// sealer is a cipher.AEAD behind func values, for the reason above.
type sealer struct {
	seal func(dst, nonce, plaintext, aad []byte) []byte
	open func(dst, nonce, ciphertext, aad []byte) ([]byte, error)
}

func newSealer(key []byte) (sealer, error) {
	aead, err := newGCM(key)
	if err != nil {
		return sealer{}, err
	}
	return sealer{seal: aead.Seal, open: aead.Open}, nil
}

// NewMasterKey makes a master key from 32 raw bytes, which it copies.
func NewMasterKey(raw []byte) (*MasterKey, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w (got %d bytes)", ErrInvalidMasterKey, len(raw))
	}
	var zero [KeySize]byte
	if hmac.Equal(raw, zero[:]) {
		// An all-zero key is a failed generation (/dev/zero, an unfilled
		// buffer), never a random one.
		return nil, fmt.Errorf("%w (got 32 zero bytes)", ErrInvalidMasterKey)
	}
	key := new([KeySize]byte)
	copy(key[:], raw)
	m := &MasterKey{mac: func(label string) []byte {
		h := hmac.New(sha256.New, key[:])
		h.Write([]byte(label))
		return h.Sum(nil)
	}}
	wk := m.mac(labelWrap)
	defer clear(wk)
	wrap, err := newSealer(wk)
	if err != nil {
		return nil, err
	}
	m.wrap = wrap
	m.fp = hex.EncodeToString(m.mac(labelFingerprint))[:12]
	return m, nil
}

// ParseMasterKey reads a master key as configured: the base64 of 32 bytes,
// standard or URL-safe alphabet, padded or not, with surrounding whitespace
// (a file's trailing newline) ignored. Errors wrap ErrInvalidMasterKey, say
// what is wrong in terms that contain nothing of the input, and what to do.
func ParseMasterKey(s string) (*MasterKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w (it is empty)", ErrInvalidMasterKey)
	}
	var raw []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			raw = b
			break
		}
	}
	defer clear(raw)
	switch {
	case raw == nil && isHex(s):
		return nil, fmt.Errorf("%w (it looks like hex; base64 is expected)", ErrInvalidMasterKey)
	case raw == nil:
		return nil, fmt.Errorf("%w (it is not valid base64)", ErrInvalidMasterKey)
	case len(raw) != KeySize && len(raw) == 48 && isHex(s):
		// 64 hex digits are also valid base64, of 48 bytes.
		return nil, fmt.Errorf("%w (it looks like the hex of 32 bytes; base64 is expected)", ErrInvalidMasterKey)
	case len(raw) != KeySize:
		return nil, fmt.Errorf("%w (it decodes to %d bytes)", ErrInvalidMasterKey, len(raw))
	}
	return NewMasterKey(raw)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// GenerateMasterKey returns a new random master key and its base64 (standard
// alphabet, padded) for the operator to keep.
func GenerateMasterKey() (*MasterKey, string, error) {
	var raw [KeySize]byte
	defer clear(raw[:])
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, "", fmt.Errorf("vault: reading random bytes: %w", err)
	}
	m, err := NewMasterKey(raw[:])
	if err != nil {
		return nil, "", err
	}
	return m, base64.StdEncoding.EncodeToString(raw[:]), nil
}

// Fingerprint returns a short public id of the key: the first 12 hex digits
// of HMAC-SHA256(key, "keyhole master key fingerprint"). It can be stored
// beside the data and printed, so that a node given the wrong key can say
// which key the store expects and which it was given. 48 bits are plenty to
// tell an operator's few keys apart, and reveal nothing about the key.
func (m *MasterKey) Fingerprint() string { return m.fp }

// String returns "MasterKey(<fingerprint>)".
func (m *MasterKey) String() string {
	if m == nil {
		return "MasterKey(nil)"
	}
	return "MasterKey(" + m.fp + ")"
}

// GoString is String, so %#v shows no key bytes either.
func (m *MasterKey) GoString() string { return m.String() }

// Format makes every fmt verb (%d, %x, %+v…) print String: without it, verbs
// that do not consult String, such as %d, would print the struct's fields.
func (m *MasterKey) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(m.String())) }

// DeriveKey returns a 32-byte key for another keyed use of the master key:
// HMAC-SHA256(master, "keyhole/derive/" + purpose). It is deterministic, so
// every node sharing the master key derives the same key.
//
// Each use must pass its own constant purpose, named after the use and with
// a version (e.g. "audit-checkpoint-mac/v1", "redaction-hmac/v1"): two uses
// with the same purpose share a key, and a purpose must never be built from
// input. The derived keys are independent of the key that wraps data keys
// and of the fingerprint.
func (m *MasterKey) DeriveKey(purpose string) []byte {
	return m.mac(derivePrefix + purpose)
}

// same reports whether m and o are the same key (comparing a full 256-bit
// MAC, not the 48-bit fingerprint).
func (m *MasterKey) same(o *MasterKey) bool {
	return hmac.Equal(m.mac(labelFingerprint), o.mac(labelFingerprint))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		// Only a key of the wrong length fails, and ours are 32 bytes;
		// the error names the length, never the key.
		return nil, fmt.Errorf("vault: %w", err)
	}
	return cipher.NewGCM(block)
}
