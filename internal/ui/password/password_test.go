package password

import (
	"strings"
	"testing"
)

func TestHashAndCheck(t *testing.T) {
	h, err := Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "pbkdf2-sha256$600000$") {
		t.Errorf("hash %q: want the pbkdf2-sha256 scheme at 600000 iterations", h)
	}
	if strings.Contains(h, "horse") {
		t.Errorf("the hash holds the password")
	}
	h2, _ := Hash("correct horse battery staple")
	if h == h2 {
		t.Errorf("two hashes of one password are equal: the salt is not random")
	}
	tests := []struct {
		name string
		hash string
		pw   string
		want bool
	}{
		{"right password", h, "correct horse battery staple", true},
		{"wrong password", h, "correct horse battery stapler", false},
		{"empty password", h, "", false},
		{"another scheme", strings.Replace(h, "pbkdf2-sha256", "pbkdf2-sha1", 1), "correct horse battery staple", false},
		{"absurd iteration count", strings.Replace(h, "$600000$", "$999999999$", 1), "correct horse battery staple", false},
		{"malformed", "pbkdf2-sha256$600000$", "correct horse battery staple", false},
		{"empty hash", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Check(tc.hash, tc.pw); got != tc.want {
				t.Errorf("Check = %v, want %v", got, tc.want)
			}
		})
	}
	if CheckNone("x") {
		t.Errorf("CheckNone returned true")
	}
}

func TestValidate(t *testing.T) {
	for _, pw := range []string{"", "short", strings.Repeat("a", MaxLength+1), "\xff\xfe invalid utf-8"} {
		if Validate(pw) == nil {
			t.Errorf("Validate(%q) = nil, want an error", pw)
		}
	}
	if err := Validate("twelve chars"); err != nil {
		t.Errorf("Validate(12 characters) = %v", err)
	}
}
