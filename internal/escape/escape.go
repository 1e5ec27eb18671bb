// Package escape makes outside text safe to print where a person reads it:
// the serial console, the journal's MESSAGE, the CLI's text output. A
// process may name itself "y\n<0>PANIC"; what is printed must stay one
// line, the agent's.
package escape

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Control returns s with control bytes (and invalid UTF-8) shown as \xNN,
// and the Unicode controls that reorder what follows them on a terminal
// or a page (bidi embeddings, overrides and isolates, U+202A-202E and
// U+2066-2069, and the marks U+200E, U+200F, U+061C) as \uNNNN: a name
// holding U+202E reads backwards from there on. A string that needs
// nothing is returned as is, without allocating.
func Control(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if bidi(r) {
				fmt.Fprintf(&b, `\u%04x`, r)
				i += n
				continue
			}
			if r != utf8.RuneError && r >= 0xa0 {
				b.WriteString(s[i : i+n])
				i += n
				continue
			}
		}
		if c < 0x20 || c == 0x7f || c >= 0x80 {
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
		i++
	}
	return b.String()
}

// bidi reports whether r changes the direction of the text around it.
func bidi(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// Truncate cuts s to at most n bytes on a character boundary, ending in
// "..." when it cut: outside text is bounded before it is kept.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < 3 {
		return ""
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
