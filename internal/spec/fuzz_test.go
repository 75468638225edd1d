package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeProxy: DecodeProxy never panics; what it refuses it refuses
// with a short *Error; what it accepts is already normalised, so its JSON
// decodes to an equal proxy and re-encodes to the same bytes.
func FuzzDecodeProxy(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := DecodeProxy(bytes.NewReader(in))
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T (%v) is not a *spec.Error", err, err)
			}
			if len(err.Error()) > 512 {
				t.Fatalf("error message is %d bytes: %.200q…", len(err.Error()), err.Error())
			}
			return
		}
		b1, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("Marshal of an accepted proxy: %v", err)
		}
		p2, err := DecodeProxy(bytes.NewReader(b1))
		if err != nil {
			t.Fatalf("the accepted proxy's JSON is refused: %v\n%s", err, b1)
		}
		if diff := cmp.Diff(p, p2); diff != "" {
			t.Fatalf("decode(encode(p)) != p (-p +p2):\n%s", diff)
		}
		b2, err := json.Marshal(p2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("normalisation is not idempotent:\n%s\n%s", b1, b2)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("an accepted proxy does not validate: %v", err)
		}
	})
}

// FuzzParseTemplate: never panics; an accepted template has no control
// characters, valid fields and no "{{" in its text, and writing it back in
// canonical form parses to the same parts; a refused one says so briefly.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"", "x", "{{secret}}", "Bearer {{secret}}", "{{secret.api_key}}", "{{ secret.a }}-{{secret.b}}",
		"{{secret.}}", "{{nope}}", "{{", "}}", "{{{secret}}}", "a{{secret}}}", "{{secret}}\r\n", "{{secret.é}}",
		"{{secret.a.b}}", "{{}}", "{{ secret }}{{secret}}", "{", "{{secret}}{{",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTemplate(s)
		if err != nil {
			if len(err.Error()) > 512 {
				t.Fatalf("error message is %d bytes", len(err.Error()))
			}
			if tp.Parts != nil {
				t.Fatalf("parts %v with an error", tp.Parts)
			}
			return
		}
		if !validHeaderValue(s) {
			t.Fatalf("accepted %q, which holds a control character", s)
		}
		var canon strings.Builder
		fields := map[string]string{"": "<S>"}
		var want strings.Builder
		for i, p := range tp.Parts {
			if !p.Ref {
				if p.Text == "" {
					t.Fatalf("part %d is empty text", i)
				}
				if strings.Contains(p.Text, "{{") {
					t.Fatalf("text part %q holds {{", p.Text)
				}
				if p.Field != "" {
					t.Fatalf("text part %d has a field", i)
				}
				canon.WriteString(p.Text)
				want.WriteString(p.Text)
				continue
			}
			if p.Text != "" {
				t.Fatalf("ref part %d has text %q", i, p.Text)
			}
			if p.Field == "" {
				canon.WriteString("{{secret}}")
				want.WriteString("<S>")
			} else {
				if !ValidSecretField(p.Field) {
					t.Fatalf("ref to invalid field %q", p.Field)
				}
				canon.WriteString("{{secret." + p.Field + "}}")
				fields[p.Field] = "<" + p.Field + ">"
				want.WriteString("<" + p.Field + ">")
			}
		}
		tp2, err := ParseTemplate(canon.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q is refused: %v", canon.String(), s, err)
		}
		if diff := cmp.Diff(tp, tp2); diff != "" {
			t.Fatalf("canonical form %q parses differently (-orig +canon):\n%s", canon.String(), diff)
		}
		got, err := tp.Render(fields)
		if err != nil {
			t.Fatalf("Render with every field: %v", err)
		}
		if got != want.String() {
			t.Fatalf("Render = %q, want %q", got, want.String())
		}
	})
}
