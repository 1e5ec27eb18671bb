package redact

import "strings"

// token is one word of a shell command line: its text as the program gets
// it (quotes removed, escapes undone) and where it is in the source.
type token struct {
	text       string
	start, end int // the word in the source, quotes included
	// off is where text starts in the source when the source holds it as
	// one contiguous run (no quotes inside, no escapes): then a part of
	// text maps to the source exactly; else the whole word is the span.
	off    int
	whole  bool
	raw    string
	quoted bool
}

// mapSpan maps a span of t.text to the source (offset by base): exactly
// when the word is contiguous there, else where the hidden text appears
// in the word as written (--password='x y'), else the whole word.
func (t token) mapSpan(x span, base int) span {
	if t.whole {
		return span{base + t.off + x.start, base + t.off + x.end}
	}
	if v := t.text[x.start:x.end]; v != "" {
		if i := strings.LastIndex(t.raw, v); i >= 0 {
			return span{base + t.start + i, base + t.start + i + len(v)}
		}
	}
	return span{base + t.start, base + t.end}
}

// splitCommands splits a shell command line into simple commands (at ; &
// | newline ( ) and backquotes outside quotes) and each into words. It
// never fails: unbalanced quotes run to the end, as a shell would complain
// about but the text still has to be read.
func splitCommands(s string) [][]token {
	var cmds [][]token
	var cur []token
	var b strings.Builder
	inWord, contig := false, true
	start, off := 0, 0
	flush := func(end int) {
		if inWord {
			t := token{text: b.String(), start: start, end: end, raw: s[start:end]}
			if contig {
				t.whole, t.off = true, off
			}
			cur = append(cur, t)
		}
		b.Reset()
		inWord, contig = false, true
	}
	endCmd := func() {
		if len(cur) > 0 {
			cmds = append(cmds, cur)
		}
		cur = nil
	}
	begin := func(i, textAt int) {
		if !inWord {
			inWord, start, off, contig = true, i, textAt, true
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush(i)
		case c == ';' || c == '&' || c == '|' || c == '\n' || c == '(' || c == ')' || c == '`':
			flush(i)
			endCmd()
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			flush(i)
			endCmd()
			i++
		case c == '\'':
			wasWord := inWord
			begin(i, i+1)
			j := strings.IndexByte(s[i+1:], '\'')
			end := len(s)
			if j >= 0 {
				end = i + 1 + j
			}
			if wasWord || b.Len() > 0 {
				contig = false
			} else {
				off = i + 1
			}
			b.WriteString(s[i+1 : end])
			i = end
			if j >= 0 && i+1 < len(s) && !isBreak(s[i+1]) {
				contig = false // 'a'b: text and source differ
			}
		case c == '"':
			wasWord := inWord
			begin(i, i+1)
			if wasWord || b.Len() > 0 {
				contig = false
			} else {
				off = i + 1
			}
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) && strings.IndexByte("\"\\$`\n", s[j+1]) >= 0 {
					contig = false
					j++
				}
				b.WriteByte(s[j])
			}
			i = j
			if j < len(s) && i+1 < len(s) && !isBreak(s[i+1]) {
				contig = false
			}
		case c == '\\' && i+1 < len(s):
			begin(i, i)
			contig = false
			i++
			b.WriteByte(s[i])
		default:
			if !inWord {
				begin(i, i)
			}
			b.WriteByte(c)
		}
	}
	flush(len(s))
	endCmd()
	return cmds
}

func isBreak(c byte) bool {
	return c == ' ' || c == '\t' || c == ';' || c == '&' || c == '|' || c == '\n' || c == '(' || c == ')' || c == '`'
}
