package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// testRaw is a fixed master key: 0x01 0x02 … 0x20.
var testRaw = func() []byte {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}()

func mustMaster(t testing.TB, raw []byte) *MasterKey {
	t.Helper()
	m, err := NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randomMaster(t testing.TB) *MasterKey {
	t.Helper()
	m, _, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// isKey reports whether m holds raw, which the package never exposes, by
// recomputing one of its HMACs independently.
func isKey(m *MasterKey, raw []byte) bool {
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte("keyhole/derive/test"))
	return hmac.Equal(mac.Sum(nil), m.DeriveKey("test"))
}

func TestParseMasterKey(t *testing.T) {
	std := base64.StdEncoding.EncodeToString(testRaw)
	// A key whose base64 uses '+' and '/' (0xfb 0xff …), to tell the
	// standard and URL-safe alphabets apart.
	special := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:KeySize]
	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the error; "" means the key parses to testRaw or special
		want    []byte
	}{
		{"standard, padded", std, "", testRaw},
		{"standard, unpadded", strings.TrimRight(std, "="), "", testRaw},
		{"trailing newline (a file)", std + "\n", "", testRaw},
		{"CRLF and spaces", "  " + std + "\r\n", "", testRaw},
		{"standard alphabet with + and /", base64.StdEncoding.EncodeToString(special), "", special},
		{"URL-safe, padded", base64.URLEncoding.EncodeToString(special), "", special},
		{"URL-safe, unpadded", base64.RawURLEncoding.EncodeToString(special), "", special},
		{"empty", "", "it is empty", nil},
		{"only whitespace", " \n\t", "it is empty", nil},
		{"31 bytes", base64.StdEncoding.EncodeToString(testRaw[:31]), "it decodes to 31 bytes", nil},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(bytes.Clone(testRaw), 0x21)), "it decodes to 33 bytes", nil},
		{"16 bytes", base64.StdEncoding.EncodeToString(testRaw[:16]), "it decodes to 16 bytes", nil},
		{"not base64", "this is not base64 at all!", "not valid base64", nil},
		{"mixed alphabets", "+_" + std[2:], "not valid base64", nil},
		{"inner space", std[:10] + " " + std[10:], "not valid base64", nil},
		{"hex of 32 bytes", hex.EncodeToString(testRaw), "looks like the hex of 32 bytes", nil},
		{"odd hex", hex.EncodeToString(testRaw)[:61], "looks like hex", nil},
		{"all zero bytes", base64.StdEncoding.EncodeToString(make([]byte, KeySize)), "32 zero bytes", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMasterKey(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidMasterKey) {
					t.Fatalf("ParseMasterKey = %v, %v; want ErrInvalidMasterKey containing %q", m, err, tt.wantErr)
				}
				msg := err.Error()
				if !strings.Contains(msg, "openssl rand -base64 32") || !strings.Contains(msg, "base64 of 32 random bytes") {
					t.Errorf("error %q does not say what is expected", msg)
				}
				if s := strings.TrimSpace(tt.in); len(s) >= 8 && strings.Contains(msg, s[:8]) {
					t.Errorf("error %q echoes the input", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMasterKey: %v", err)
			}
			if !isKey(m, tt.want) {
				t.Errorf("ParseMasterKey decoded other bytes")
			}
		})
	}
}

func TestGenerateMasterKey(t *testing.T) {
	m, s, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseMasterKey(s)
	if err != nil {
		t.Fatalf("ParseMasterKey(GenerateMasterKey's string): %v", err)
	}
	if back.Fingerprint() != m.Fingerprint() {
		t.Error("the generated key's base64 parses to another key")
	}
	m2, _, _ := GenerateMasterKey()
	if m2.Fingerprint() == m.Fingerprint() {
		t.Error("two generated keys have one fingerprint")
	}
}

func TestNewMasterKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewMasterKey(make([]byte, n)); !errors.Is(err, ErrInvalidMasterKey) {
			t.Errorf("NewMasterKey(%d bytes) = %v, want ErrInvalidMasterKey", n, err)
		}
	}
	raw := bytes.Clone(testRaw)
	m := mustMaster(t, raw)
	raw[0] ^= 0xff
	if !isKey(m, testRaw) {
		t.Error("NewMasterKey keeps the caller's slice instead of a copy")
	}
}

func TestFingerprint(t *testing.T) {
	mac := hmac.New(sha256.New, testRaw)
	mac.Write([]byte("keyhole master key fingerprint"))
	want := hex.EncodeToString(mac.Sum(nil))[:12]
	m := mustMaster(t, testRaw)
	if got := m.Fingerprint(); got != want || len(got) != 12 {
		t.Errorf("Fingerprint = %q, want %q", got, want)
	}
	if m.Fingerprint() != mustMaster(t, testRaw).Fingerprint() {
		t.Error("Fingerprint is not deterministic")
	}
	if randomMaster(t).Fingerprint() == m.Fingerprint() {
		t.Error("two keys share a fingerprint")
	}
}

// TestNoKeyMaterialInOutput: however a MasterKey or Keyring is printed or
// logged, directly or inside another struct (exported field or not, pointer
// or value), with any verb, neither the key bytes nor an AES key schedule
// appear. (A first version kept the key behind a pointer; %s on a struct
// holding it printed the bytes through fmt's bad-verb path.)
func TestNoKeyMaterialInOutput(t *testing.T) {
	m := mustMaster(t, testRaw)
	ring := newTestRing(t, m, 1, 2)
	dk := rawDataKey(1)
	forbidden := []string{
		hex.EncodeToString(testRaw[:8]), base64.StdEncoding.EncodeToString(testRaw[:9]), fmt.Sprint(testRaw[:8]),
		string(testRaw[:8]), hex.EncodeToString(dk[:8]), fmt.Sprint(dk[:8]), string(dk[:8]), "gcm", "aes",
	}
	// Byte arrays and key schedules print as runs of numbers (or hex).
	numberRun := regexp.MustCompile(`(\b[0-9a-fA-F]+\b[ ,]+){8,}|[0-9a-fA-F]{32,}`)
	type exported struct {
		Key  *MasterKey
		Ring *Keyring
	}
	type unexported struct {
		key   MasterKey
		pkey  *MasterKey
		ring  *Keyring
		rings []*Keyring
		keys  map[string]*MasterKey
	}
	values := []any{m, *m, ring, exported{m, ring}, &exported{m, ring},
		unexported{*m, m, ring, []*Keyring{ring}, map[string]*MasterKey{"a": m}},
		&unexported{*m, m, ring, []*Keyring{ring}, map[string]*MasterKey{"a": m}}}
	var outs []string
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%X", "%q", "%o", "%b", "%c", "%U", "%e", "%t", "%p"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, _ := json.Marshal(v)
		outs = append(outs, string(j))
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("msg", "v", v)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("msg", "v", v)
		outs = append(outs, buf.String())
	}
	for _, out := range outs {
		for _, f := range forbidden {
			if strings.Contains(out, f) {
				t.Errorf("output %q contains %q", out, f)
			}
		}
		for _, r := range numberRun.FindAllString(out, -1) {
			if strings.Trim(r, "01") != "" { // a pointer printed by %b is only 0s and 1s
				t.Errorf("output %q contains a run of numbers %q", out, r)
			}
		}
	}
	if got, want := m.String(), "MasterKey("+m.Fingerprint()+")"; got != want || fmt.Sprintf("%d", m) != want || fmt.Sprintf("%#v", m) != want {
		t.Errorf("MasterKey prints as %q / %d / %#v, want %q", got, m, m, want)
	}
	if got := ring.String(); got != "Keyring(keys=[1 2] active=2)" {
		t.Errorf("Keyring.String = %q", got)
	}
	var nilKey *MasterKey
	var nilRing *Keyring
	if nilKey.String() != "MasterKey(nil)" || nilRing.String() != "Keyring(nil)" || (&Keyring{}).String() != "Keyring(empty)" {
		t.Error("nil and zero values do not print cleanly")
	}
}

func TestDeriveKey(t *testing.T) {
	m := mustMaster(t, testRaw)
	a := m.DeriveKey("audit-checkpoint-mac/v1")
	b := m.DeriveKey("redaction-hmac/v1")
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("DeriveKey lengths %d, %d; want 32", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Error("two purposes derive one key")
	}
	if !bytes.Equal(a, mustMaster(t, testRaw).DeriveKey("audit-checkpoint-mac/v1")) {
		t.Error("DeriveKey is not deterministic (nodes sharing a master key must agree)")
	}
	if bytes.Equal(a, randomMaster(t).DeriveKey("audit-checkpoint-mac/v1")) {
		t.Error("two master keys derive one key")
	}
	mac := hmac.New(sha256.New, testRaw)
	mac.Write([]byte("keyhole/derive/audit-checkpoint-mac/v1"))
	if !bytes.Equal(a, mac.Sum(nil)) {
		t.Error("DeriveKey is not HMAC-SHA256(master, \"keyhole/derive/\" + purpose)")
	}
	// No purpose reaches the wrapping key or the fingerprint's input: their
	// labels are outside the "keyhole/derive/" namespace.
	for _, l := range []string{labelWrap, labelFingerprint} {
		if strings.HasPrefix(l, derivePrefix) {
			t.Errorf("label %q is inside the DeriveKey namespace", l)
		}
	}
	a[0] ^= 1
	if bytes.Equal(a, m.DeriveKey("audit-checkpoint-mac/v1")) {
		t.Error("DeriveKey returns shared storage")
	}
}
