// Package password hashes and checks dashboard users' passwords with
// PBKDF2-HMAC-SHA256 (crypto/pbkdf2, RFC 8018) at 600,000 iterations, the
// OWASP Password Storage Cheat Sheet's figure for PBKDF2-HMAC-SHA256
// (argon2id would be preferred, but it is not in Go's standard library and
// keyhole adds no module for it). A hash is stored as
//
//	pbkdf2-sha256$ITERATIONS$SALT$KEY
//
// with SALT (16 random bytes) and KEY (32 bytes) in unpadded base64, so
// the iteration count can be raised later without breaking old hashes.
package password

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Iterations is the PBKDF2 iteration count of new hashes.
const Iterations = 600_000

// MinLength and MaxLength bound a password, in bytes (the maximum keeps
// one hash cheap enough that sign-in cannot be made a CPU sink).
const (
	MinLength = 12
	MaxLength = 1024
)

const (
	scheme  = "pbkdf2-sha256"
	saltLen = 16
	keyLen  = 32
	// maxIterations bounds what Check accepts from a stored hash (a
	// tampered hash must not make every sign-in take minutes).
	maxIterations = 10_000_000
)

var b64 = base64.RawStdEncoding

// Validate says why a password is not acceptable, or nil.
func Validate(pw string) error {
	switch {
	case len(pw) < MinLength:
		return fmt.Errorf("the password is shorter than %d characters", MinLength)
	case len(pw) > MaxLength:
		return fmt.Errorf("the password is longer than %d bytes", MaxLength)
	case !utf8.ValidString(pw):
		return errors.New("the password is not valid UTF-8")
	}
	return nil
}

// Hash returns the stored form of pw.
func Hash(pw string) (string, error) {
	if err := Validate(pw); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, pw, salt, Iterations, keyLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s$%d$%s$%s", scheme, Iterations, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Check reports whether pw matches the stored hash, comparing in constant
// time. A malformed hash never matches.
func Check(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != scheme || len(pw) > MaxLength {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxIterations {
		return false
	}
	salt, err1 := b64.DecodeString(parts[2])
	want, err2 := b64.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is a valid hash of a random password, made once: checking a
// sign-in for an unknown user against it takes as long as for a known one,
// so timing does not tell which names exist.
var dummyHash = sync.OnceValue(func() string {
	b := make([]byte, 24)
	rand.Read(b)
	h, err := Hash(b64.EncodeToString(b))
	if err != nil {
		panic(err)
	}
	return h
})

// CheckNone spends the time of one Check and returns false: call it when
// there is no user of the given name.
func CheckNone(pw string) bool {
	Check(dummyHash(), pw)
	return false
}
