package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawDataKey is a fixed data key for id, so that test keyrings (and the fuzz
// corpus sealed under them) are the same in every run.
func rawDataKey(id uint32) []byte {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = byte(id)*31 + byte(i)*7 + 1
	}
	return b
}

func wrapFixed(t testing.TB, m *MasterKey, id uint32) WrappedKey {
	t.Helper()
	w, err := m.wrapKey(id, rawDataKey(id))
	if err != nil {
		t.Fatal(err)
	}
	return WrappedKey{ID: id, Wrapped: w, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// newTestRing opens a keyring of the fixed data keys ids; the last is active.
func newTestRing(t testing.TB, m *MasterKey, ids ...uint32) *Keyring {
	t.Helper()
	var keys []WrappedKey
	for _, id := range ids {
		keys = append(keys, wrapFixed(t, m, id))
	}
	k, err := m.OpenKeyring(keys, ids[len(ids)-1])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSeal(t testing.TB, k *Keyring, aad, pt []byte) []byte {
	t.Helper()
	s, err := k.Seal(aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	m := randomMaster(t)
	w, err := m.NewDataKey(7)
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.OpenKeyring([]WrappedKey{w}, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 100, 1 << 20} {
		pt := bytes.Repeat([]byte{'x'}, n)
		aad := SecretAAD("stripe", 3)
		s := mustSeal(t, k, aad, pt)
		if len(s) != len(pt)+Overhead {
			t.Errorf("len(Seal(%d bytes)) = %d, want %d", n, len(s), n+Overhead)
		}
		if s[0] != 0x01 || binary.BigEndian.Uint32(s[1:5]) != 7 {
			t.Errorf("sealed header = % x, want 01 00 00 00 07", s[:5])
		}
		if n >= 16 && bytes.Contains(s, pt[:16]) {
			t.Error("sealed value contains the plaintext")
		}
		got, err := k.Open(aad, s)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open(Seal(%d bytes)) = %d bytes, %v", n, len(got), err)
		}
		if id, err := SealedKeyID(s); id != 7 || err != nil {
			t.Errorf("SealedKeyID = %d, %v; want 7", id, err)
		}
	}
	a, b := mustSeal(t, k, nil, []byte("same")), mustSeal(t, k, nil, []byte("same"))
	if bytes.Equal(a, b) {
		t.Error("two seals of one plaintext are equal: nonce reused")
	}
}

// TestSealFormat pins the byte layout against the standard library's GCM:
// 0x01 ‖ id ‖ nonce ‖ ciphertext‖tag, with the header in the AAD.
func TestSealFormat(t *testing.T) {
	m := mustMaster(t, testRaw)
	k := newTestRing(t, m, 0x01020304)
	nonce := [nonceLen]byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}
	aead := k.load().keys[0x01020304]
	got := seal(aead, 0x01020304, nonce, []byte("aad"), []byte("hello"))
	gcm, err := newGCM(rawDataKey(0x01020304))
	if err != nil {
		t.Fatal(err)
	}
	header := []byte{1, 1, 2, 3, 4}
	want := append(append(bytes.Clone(header), nonce[:]...), gcm.Seal(nil, nonce[:], []byte("hello"), append(bytes.Clone(header), "aad"...))...)
	if !bytes.Equal(got, want) {
		t.Errorf("seal = % x\nwant   % x", got, want)
	}
	if pt, err := k.Open([]byte("aad"), got); err != nil || string(pt) != "hello" {
		t.Errorf("Open = %q, %v", pt, err)
	}
}

func TestOpenWrongRecord(t *testing.T) {
	k := newTestRing(t, randomMaster(t), 1)
	s := mustSeal(t, k, SecretAAD("stripe", 3), []byte("sk_live_123"))
	for _, tt := range []struct {
		name string
		aad  []byte
	}{
		{"another secret", SecretAAD("github", 3)},
		{"another version", SecretAAD("stripe", 2)},
		{"next version", SecretAAD("stripe", 4)},
		{"no AAD", nil},
		{"name with the version glued on", SecretAAD("stripe/3", 0)},
		{"raw unprefixed AAD", []byte("secret/stripe/3")},
		{"case of the name", SecretAAD("Stripe", 3)},
	} {
		if pt, err := k.Open(tt.aad, s); !errors.Is(err, ErrAuth) || pt != nil {
			t.Errorf("%s: Open = %d bytes, %v; want ErrAuth", tt.name, len(pt), err)
		}
	}
}

func TestSecretAAD(t *testing.T) {
	if got := string(SecretAAD("stripe", 3)); got != "secret/6:stripe/3" {
		t.Errorf("SecretAAD(stripe, 3) = %q", got)
	}
	// Pairs that a naive "secret/" + name + "/" + version would confuse.
	seen := map[string]string{}
	for _, c := range []struct {
		name    string
		version int
	}{
		{"a", 12}, {"a/1", 2}, {"a/12", 0}, {"a", 1}, {"1:a", 1}, {"", 1}, {"", 11}, {"/", 1},
		{"a", -1}, {"a/-", 1}, {"6:stripe", 3}, {"stripe/3", 0}, {"x", 0}, {"x\x00", 0},
	} {
		aad := string(SecretAAD(c.name, c.version))
		key := fmt.Sprintf("%q@%d", c.name, c.version)
		if prev, dup := seen[aad]; dup {
			t.Errorf("SecretAAD(%s) = SecretAAD(%s) = %q", key, prev, aad)
		}
		seen[aad] = key
	}
}

// TestOpenEveryBitFlip: no single-bit change anywhere in a sealed value,
// header included, opens.
func TestOpenEveryBitFlip(t *testing.T) {
	k := newTestRing(t, randomMaster(t), 1, 2)
	aad := SecretAAD("stripe", 1)
	s := mustSeal(t, k, aad, []byte("a secret value"))
	for i := range s {
		for bit := range 8 {
			c := bytes.Clone(s)
			c[i] ^= 1 << bit
			if pt, err := k.Open(aad, c); err == nil || pt != nil {
				t.Fatalf("Open with bit %d of byte %d flipped succeeded", bit, i)
			}
		}
	}
	// Flipping the id to the other key in the ring is an authentication
	// failure, not a decryption under the wrong key.
	c := bytes.Clone(s)
	binary.BigEndian.PutUint32(c[1:5], 1)
	if _, err := k.Open(aad, c); !errors.Is(err, ErrAuth) {
		t.Errorf("Open with the key id swapped to another held key = %v, want ErrAuth", err)
	}
}

func TestOpenTruncatedAndExtended(t *testing.T) {
	k := newTestRing(t, randomMaster(t), 1)
	s := mustSeal(t, k, nil, []byte("a secret value"))
	for n := 0; n < len(s); n++ {
		pt, err := k.Open(nil, s[:n])
		if err == nil || pt != nil {
			t.Fatalf("Open of the first %d bytes succeeded", n)
		}
		if n < Overhead && !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open of %d bytes = %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := k.Open(nil, append(bytes.Clone(s), 0)); !errors.Is(err, ErrAuth) {
		t.Errorf("Open with a byte appended = %v, want ErrAuth", err)
	}
}

func TestOpenHeaderErrors(t *testing.T) {
	k := newTestRing(t, randomMaster(t), 1)
	s := mustSeal(t, k, nil, []byte("v"))
	for _, v := range []byte{0x00, 0x02, 0xff} {
		c := bytes.Clone(s)
		c[0] = v
		if _, err := k.Open(nil, c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("version %#x: Open = %v, want ErrCorrupt", v, err)
		}
	}
	c := bytes.Clone(s)
	binary.BigEndian.PutUint32(c[1:5], 99)
	if _, err := k.Open(nil, c); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "99") {
		t.Errorf("unknown key id: Open = %v, want ErrUnknownKey naming 99", err)
	}
	var zero Keyring
	if _, err := zero.Open(nil, s); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("zero Keyring: Open = %v, want ErrUnknownKey", err)
	}
	if _, err := zero.Seal(nil, []byte("x")); !errors.Is(err, ErrNoActiveKey) {
		t.Errorf("zero Keyring: Seal = %v, want ErrNoActiveKey", err)
	}
	if zero.ActiveID() != 0 || len(zero.IDs()) != 0 {
		t.Error("zero Keyring reports keys")
	}
}

func TestErrorsHoldNoSecrets(t *testing.T) {
	m := randomMaster(t)
	k := newTestRing(t, m, 1)
	secret := []byte("sk_live_SUPERSECRET")
	s := mustSeal(t, k, SecretAAD("stripe", 1), secret)
	var errs []error
	for i := range s {
		c := bytes.Clone(s)
		c[i] ^= 0x80
		_, err := k.Open(SecretAAD("stripe", 1), c)
		errs = append(errs, err)
	}
	_, err := randomMaster(t).OpenKeyring([]WrappedKey{wrapFixed(t, m, 1)}, 1)
	errs = append(errs, err)
	for _, err := range errs {
		msg := err.Error()
		if strings.Contains(msg, "SUPERSECRET") || strings.Contains(msg, "stripe") || strings.Contains(msg, fmt.Sprintf("%x", rawDataKey(1)[:6])) {
			t.Errorf("error %q leaks the record, plaintext or key", msg)
		}
	}
}

func TestOpenKeyring(t *testing.T) {
	m := randomMaster(t)
	w1, w2 := wrapFixed(t, m, 1), wrapFixed(t, m, 2)
	other := randomMaster(t)
	o3 := wrapFixed(t, other, 3)
	swapped := WrappedKey{ID: 2, Wrapped: w1.Wrapped} // key 1's wrapping on id 2's row
	tests := []struct {
		name   string
		m      *MasterKey
		keys   []WrappedKey
		active uint32
		want   error
	}{
		{"opens", m, []WrappedKey{w1, w2}, 2, nil},
		{"old key active", m, []WrappedKey{w1, w2}, 1, nil},
		{"wrong master key", other, []WrappedKey{w1, w2}, 2, ErrWrongMasterKey},
		{"wrong master key, one key", other, []WrappedKey{w1}, 1, ErrWrongMasterKey},
		{"keys wrapped by two master keys", m, []WrappedKey{w1, o3}, 1, ErrCorrupt},
		{"wrapped key moved to another id", m, []WrappedKey{w1, swapped}, 1, ErrCorrupt},
		{"wrapped key moved, alone", m, []WrappedKey{swapped}, 2, ErrWrongMasterKey},
		{"truncated wrapped key", m, []WrappedKey{w1, {ID: 2, Wrapped: w2.Wrapped[:40]}}, 1, ErrCorrupt},
		{"unknown wrap format", m, []WrappedKey{w1, {ID: 2, Wrapped: append([]byte{2}, w2.Wrapped[1:]...)}}, 1, ErrCorrupt},
		{"nil wrapped key", m, []WrappedKey{{ID: 1}}, 1, ErrCorrupt},
		{"duplicate id", m, []WrappedKey{w1, w1}, 1, ErrDuplicateKey},
		{"active not among keys", m, []WrappedKey{w1, w2}, 3, ErrUnknownKey},
		{"no keys", m, nil, 1, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.m.OpenKeyring(tt.keys, tt.active)
			if !errors.Is(err, tt.want) || (err == nil) != (k != nil) {
				t.Fatalf("OpenKeyring = %v, %v; want %v", k, err, tt.want)
			}
			if err == nil && k.ActiveID() != tt.active {
				t.Errorf("ActiveID = %d, want %d", k.ActiveID(), tt.active)
			}
		})
	}
	// A flipped bit anywhere in a wrapped key (or a flipped id) is refused.
	for i := range w1.Wrapped {
		c := WrappedKey{ID: 1, Wrapped: bytes.Clone(w1.Wrapped)}
		c.Wrapped[i] ^= 0x10
		if _, err := m.OpenKeyring([]WrappedKey{c, w2}, 2); err == nil {
			t.Fatalf("wrapped key with byte %d altered opened", i)
		}
	}
}

func TestRotate(t *testing.T) {
	m := mustMaster(t, testRaw)
	w1, err := m.NewDataKey(1)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := m.OpenKeyring([]WrappedKey{w1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	old := mustSeal(t, k1, SecretAAD("s", 1), []byte("old"))

	w2, k2, err := m.Rotate(k1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if w2.ID != 2 || w2.Created.IsZero() || k2.ActiveID() != 2 || !slices.Equal(k2.IDs(), []uint32{1, 2}) {
		t.Fatalf("Rotate = key %d (created %v), keyring %v", w2.ID, w2.Created, k2)
	}
	if k1.ActiveID() != 1 || !slices.Equal(k1.IDs(), []uint32{1}) {
		t.Errorf("Rotate changed the old keyring: %v", k1)
	}
	if pt, err := k2.Open(SecretAAD("s", 1), old); err != nil || string(pt) != "old" {
		t.Errorf("rotated keyring opens the old value: %q, %v", pt, err)
	}
	fresh := mustSeal(t, k2, SecretAAD("s", 2), []byte("new"))
	if id, _ := SealedKeyID(fresh); id != 2 {
		t.Errorf("new value sealed with key %d, want 2", id)
	}
	if _, err := k1.Open(SecretAAD("s", 2), fresh); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old keyring opening a new value = %v, want ErrUnknownKey", err)
	}
	// What the store now holds opens from scratch, as on a restart.
	k3, err := m.OpenKeyring([]WrappedKey{w1, w2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		aad  []byte
		s    []byte
		want string
	}{{SecretAAD("s", 1), old, "old"}, {SecretAAD("s", 2), fresh, "new"}} {
		if pt, err := k3.Open(c.aad, c.s); err != nil || string(pt) != c.want {
			t.Errorf("reopened keyring: Open = %q, %v; want %q", pt, err, c.want)
		}
	}

	if _, _, err := m.Rotate(k2, 2); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("Rotate to an existing id = %v, want ErrDuplicateKey", err)
	}
	if _, _, err := randomMaster(t).Rotate(k2, 3); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Rotate with another master key = %v, want ErrWrongMasterKey", err)
	}
	if _, _, err := mustMaster(t, testRaw).Rotate(k2, 3); err != nil {
		t.Errorf("Rotate with an equal master key (another instance) = %v", err)
	}
	if _, _, err := m.Rotate(&Keyring{}, 3); err == nil {
		t.Error("Rotate of the zero Keyring succeeded")
	}
}

func TestRewrap(t *testing.T) {
	oldM, newM := randomMaster(t), randomMaster(t)
	w1, w2 := wrapFixed(t, oldM, 1), wrapFixed(t, oldM, 2)
	k, err := oldM.OpenKeyring([]WrappedKey{w1, w2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	a := mustSeal(t, k, SecretAAD("a", 1), []byte("value a"))

	rewrapped, err := oldM.Rewrap([]WrappedKey{w1, w2}, newM)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range rewrapped {
		orig := []WrappedKey{w1, w2}[i]
		if w.ID != orig.ID || !w.Created.Equal(orig.Created) || bytes.Equal(w.Wrapped, orig.Wrapped) {
			t.Errorf("rewrapped key %d: id %d, created %v, changed %v", i, w.ID, w.Created, !bytes.Equal(w.Wrapped, orig.Wrapped))
		}
	}
	k2, err := newM.OpenKeyring(rewrapped, 2)
	if err != nil {
		t.Fatalf("new master key opening the rewrapped keys: %v", err)
	}
	if pt, err := k2.Open(SecretAAD("a", 1), a); err != nil || string(pt) != "value a" {
		t.Errorf("value sealed before the master key rotation: Open = %q, %v", pt, err)
	}
	if _, err := oldM.OpenKeyring(rewrapped, 2); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("old master key opening the rewrapped keys = %v, want ErrWrongMasterKey", err)
	}
	if _, err := newM.Rewrap([]WrappedKey{w1, w2}, oldM); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Rewrap by a master key that does not open the keys = %v, want ErrWrongMasterKey", err)
	}
	if _, err := oldM.Rewrap([]WrappedKey{w1}, nil); err == nil {
		t.Error("Rewrap to a nil master key succeeded")
	}
}

// TestAddKeyOtherNode: node A rotates; node B, which opened the same store
// earlier, learns the new key through the store and opens A's new values.
func TestAddKeyOtherNode(t *testing.T) {
	m := randomMaster(t)
	w1 := wrapFixed(t, m, 1)
	nodeA, _ := m.OpenKeyring([]WrappedKey{w1}, 1)
	nodeB, _ := m.OpenKeyring([]WrappedKey{w1}, 1)
	w2, nodeA2, err := m.Rotate(nodeA, 2)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, nodeA2, nil, []byte("from A"))
	if err := nodeB.AddKey(w2); err != nil {
		t.Fatal(err)
	}
	if nodeB.ActiveID() != 1 {
		t.Error("AddKey changed the active key")
	}
	if pt, err := nodeB.Open(nil, s); err != nil || string(pt) != "from A" {
		t.Errorf("node B: Open = %q, %v", pt, err)
	}
	if err := nodeB.SetActive(2); err != nil || nodeB.ActiveID() != 2 {
		t.Fatalf("SetActive(2) = %v, active %d", err, nodeB.ActiveID())
	}
	if id, _ := SealedKeyID(mustSeal(t, nodeB, nil, []byte("x"))); id != 2 {
		t.Errorf("after SetActive(2), sealed with key %d", id)
	}
	if err := nodeB.AddKey(w2); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("AddKey twice = %v, want ErrDuplicateKey", err)
	}
	if err := nodeB.SetActive(9); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("SetActive(missing) = %v, want ErrUnknownKey", err)
	}
	if err := nodeB.AddKey(wrapFixed(t, randomMaster(t), 3)); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("AddKey of a key wrapped by another master = %v, want ErrWrongMasterKey", err)
	}
	if err := nodeB.AddKey(WrappedKey{ID: 4, Wrapped: []byte{1, 2}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("AddKey of a truncated key = %v, want ErrCorrupt", err)
	}
	var zero Keyring
	if err := zero.AddKey(w2); err == nil {
		t.Error("AddKey on the zero Keyring succeeded")
	}
}

// TestConcurrentUse runs Seal and Open against AddKey and SetActive; run
// with -race.
func TestConcurrentUse(t *testing.T) {
	m := randomMaster(t)
	k := newTestRing(t, m, 1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				aad := SecretAAD("s", g*1000+i)
				s := mustSeal(t, k, aad, []byte("v"))
				if pt, err := k.Open(aad, s); err != nil || string(pt) != "v" {
					t.Errorf("Open = %q, %v", pt, err)
					return
				}
			}
		})
	}
	for id := uint32(2); id < 20; id++ {
		if err := k.AddKey(wrapFixed(t, m, id)); err != nil {
			t.Fatal(err)
		}
		if err := k.SetActive(id); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// FuzzOpen: Open never panics on arbitrary input, and it succeeds only on a
// genuine seal, with the AAD and plaintext it was sealed with. The keyring
// and the seed seals are fixed (fixed keys and nonces), so the corpus means
// the same thing in every run.
func FuzzOpen(f *testing.F) {
	m := mustMaster(f, testRaw)
	k := newTestRing(f, m, 1, 0xfffffffe)
	type genuine struct{ aad, pt []byte }
	seals := map[string]genuine{}
	for i, c := range []genuine{
		{SecretAAD("stripe", 1), []byte("sk_live_abc")},
		{SecretAAD("stripe", 2), []byte("")},
		{nil, []byte(`{"client_id":"x","client_secret":"y"}`)},
		{[]byte("other/record"), bytes.Repeat([]byte{0}, 64)},
	} {
		id := []uint32{1, 0xfffffffe}[i%2]
		var nonce [nonceLen]byte
		nonce[0] = byte(i + 1)
		s := seal(k.load().keys[id], id, nonce, c.aad, c.pt)
		seals[string(s)] = c
		f.Add(c.aad, s)
		f.Add(SecretAAD("github", 1), s)
	}
	f.Add([]byte(nil), []byte{})
	f.Add([]byte(nil), []byte{1, 0, 0, 0, 1})
	f.Add([]byte(nil), make([]byte, Overhead))
	f.Fuzz(func(t *testing.T, aad, sealed []byte) {
		pt, err := k.Open(aad, sealed)
		if err != nil {
			if pt != nil {
				t.Fatal("Open returned plaintext with an error")
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrAuth) {
				t.Fatalf("Open error %v is none of ErrCorrupt, ErrUnknownKey, ErrAuth", err)
			}
			return
		}
		g, ok := seals[string(sealed)]
		if !ok || !bytes.Equal(g.aad, aad) || !bytes.Equal(g.pt, pt) {
			t.Fatalf("Open accepted a value that is not a genuine seal with this AAD: aad %q, sealed % x", aad, sealed)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	k := newTestRing(b, mustMaster(b, testRaw), 1)
	pt := bytes.Repeat([]byte("x"), 64)
	aad := SecretAAD("stripe", 1)
	for b.Loop() {
		_, _ = k.Seal(aad, pt)
	}
}

func BenchmarkOpen(b *testing.B) {
	k := newTestRing(b, mustMaster(b, testRaw), 1)
	aad := SecretAAD("stripe", 1)
	s := mustSeal(b, k, aad, bytes.Repeat([]byte("x"), 64))
	for b.Loop() {
		if _, err := k.Open(aad, s); err != nil {
			b.Fatal(err)
		}
	}
}
