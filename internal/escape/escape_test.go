package escape

import (
	"fmt"
	"strings"
	"testing"
)

func TestControl(t *testing.T) {
	for in, want := range map[string]string{
		"yes":              "yes",
		"y\n<0>PANIC":      `y\x0a<0>PANIC`,
		"a\tb\x1b[2J\x7f":  `a\x09b\x1b[2J\x7f`,
		"café":             "café",
		"bad\xffutf8":      `bad\xffutf8`,
		"c1\u0085control":  `c1\xc2\x85control`,
		"kworker/u4:1-ev ": "kworker/u4:1-ev ",
	} {
		if got := Control(in); got != want {
			t.Errorf("Control(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzControl(f *testing.F) {
	f.Add("y\n<0>PANIC")
	f.Fuzz(func(t *testing.T, s string) {
		out := Control(s)
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("control byte %#x left in %q", c, out)
			}
		}
	})
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer line", 10, "a longe..."},
		{"héhéhéhé", 6, "hé..."}, // never half a character
		{"abc", 2, ""},
	} {
		if got := Truncate(c.in, c.n); got != c.want || len(got) > c.n {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// Bidi controls reorder what a terminal or a browser shows after them: a
// process named "evil\u202egnp.exe" must not read as "evilexe.png".
func TestControlEscapesBidi(t *testing.T) {
	for _, r := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c} {
		in := "a" + string(r) + "b"
		got := Control(in)
		if strings.ContainsRune(got, r) || got != fmt.Sprintf(`a\u%04xb`, r) {
			t.Errorf("Control(%q) = %q, want the control escaped", in, got)
		}
	}
	if got := Control("café ✓"); got != "café ✓" {
		t.Errorf("ordinary text changed: %q", got)
	}
}
