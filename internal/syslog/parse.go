// Package syslog parses the lines rsyslog writes to /var/log/syslog and
// friends: the RFC 3339 high-precision default (Debian 12, Ubuntu 24.04), the
// traditional "Mmm dd hh:mm:ss" format (Ubuntu 20.04/22.04, Debian 11, Amazon
// Linux 2) with its missing year and zone, and RFC 5424. Parsing is by hand,
// per line, without allocating: a syslog burst must not cost the agent a core.
package syslog

import (
	"bytes"
	"time"

	"github.com/ec2diag/ec2diag/internal/clock"
)

// Format is the timestamp format a line was written in.
type Format uint8

const (
	FormatUnknown Format = iota
	FormatRFC3339
	FormatTraditional
	FormatRFC5424
)

func (f Format) String() string {
	switch f {
	case FormatRFC3339:
		return "rfc3339"
	case FormatTraditional:
		return "traditional"
	case FormatRFC5424:
		return "rfc5424"
	}
	return "unknown"
}

// Line is one parsed line. Byte fields alias the input and are valid only
// until the caller reuses it.
type Line struct {
	Time    time.Time
	Host    []byte
	Program []byte
	PID     int // 0 when the tag has none
	Message []byte
	Format  Format
	// Digits is how many fractional-second digits the timestamp had, so
	// output can keep the source's precision.
	Digits int
	// Parsed is false when the line matched no format; Message then holds
	// the whole line so nothing is dropped.
	Parsed bool
}

// Origin is what a trusted source says about who logged a line: the
// journal's _PID, _COMM and _TRANSPORT, which the kernel's credentials
// give and the logging process cannot choose. A line from a syslog file
// has no known origin: its "prog[pid]:" tag is whatever the writer said.
type Origin struct {
	Known     bool
	PID       int
	Comm      string
	Transport string // kernel, syslog, journal, stdout ...
}

// Kernel reports whether the kernel itself logged the line.
func (o Origin) Kernel() bool { return o.Known && o.Transport == "kernel" }

// Parser carries what year inference needs across lines of one file.
type Parser struct {
	// Location for traditional timestamps (rsyslog writes its local time);
	// nil means time.Local.
	Location *time.Location
	// Anchor is a time known to be at or after the file's lines, normally
	// the file's mtime (or now for a live tail); it picks the year.
	Anchor time.Time
	// Clock gives the anchor when Anchor is zero; nil is the system clock.
	Clock clock.Clock

	year      int
	lastMonth time.Month
	started   bool
	zones     [4]zoneCache
}

type zoneCache struct {
	off int
	loc *time.Location
}

// Parse fills out from line. It never fails: an unrecognised line comes
// back with Parsed false.
func (p *Parser) Parse(line []byte, out *Line) {
	*out = Line{}
	rest, ok := p.timestamp(line, out)
	if !ok || len(rest) == 0 || rest[0] != ' ' {
		*out = Line{Message: line}
		return
	}
	rest = rest[1:]
	if out.Format == FormatRFC5424 {
		p.rfc5424Rest(rest, out)
		return
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		*out = Line{Message: line}
		return
	}
	out.Host = rest[:sp]
	rest = rest[sp+1:]
	parseTag(rest, out)
	out.Parsed = true
}

// parseTag splits "prog[pid]: msg" or "prog: msg"; a message without a tag
// keeps the whole rest.
func parseTag(rest []byte, out *Line) {
	for i := 0; i < len(rest) && i < 256; i++ {
		switch rest[i] {
		case ' ':
			out.Message = rest
			return
		case '[':
			end := bytes.IndexByte(rest[i:], ']')
			if end < 0 || i+end+1 >= len(rest) || rest[i+end+1] != ':' {
				out.Message = rest
				return
			}
			pid, ok := atoi(rest[i+1 : i+end])
			if !ok {
				out.Message = rest
				return
			}
			out.Program, out.PID = rest[:i], pid
			out.Message = trimSpace1(rest[i+end+2:])
			return
		case ':':
			out.Program = rest[:i]
			out.Message = trimSpace1(rest[i+1:])
			return
		}
	}
	out.Message = rest
}

func trimSpace1(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

func (p *Parser) timestamp(b []byte, out *Line) ([]byte, bool) {
	if len(b) > 0 && b[0] == '<' {
		return p.rfc5424Head(b, out)
	}
	if len(b) >= 19 && isDigit(b[0]) && b[4] == '-' {
		t, n, ok := p.rfc3339(b)
		if !ok {
			return nil, false
		}
		out.Time, out.Format, out.Digits = t, FormatRFC3339, fracDigits(b[19:n])
		return b[n:], true
	}
	if len(b) >= 15 {
		t, ok := p.traditional(b[:15])
		if ok {
			out.Time, out.Format = t, FormatTraditional
			return b[15:], true
		}
	}
	return nil, false
}

// rfc3339 parses 2024-10-21T04:49:01[.frac](Z|±hh:mm) without time.Parse,
// which allocates a Location for every non-UTC offset.
func (p *Parser) rfc3339(b []byte) (time.Time, int, bool) {
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	s, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || b[7] != '-' || (b[10] != 'T' && b[10] != ' ') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, 0, false
	}
	i, ns := 19, 0
	if i < len(b) && b[i] == '.' {
		i++
		digits := 0
		for i < len(b) && isDigit(b[i]) {
			if digits < 9 {
				ns = ns*10 + int(b[i]-'0')
				digits++
			}
			i++
		}
		if digits == 0 {
			return time.Time{}, 0, false
		}
		for ; digits < 9; digits++ {
			ns *= 10
		}
	}
	if i >= len(b) {
		return time.Time{}, 0, false
	}
	var loc *time.Location
	switch b[i] {
	case 'Z', 'z':
		loc = time.UTC
		i++
	case '+', '-':
		if i+6 > len(b) || b[i+3] != ':' {
			return time.Time{}, 0, false
		}
		oh, ok1 := num(b[i+1 : i+3])
		om, ok2 := num(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, 0, false
		}
		off := oh*3600 + om*60
		if b[i] == '-' {
			off = -off
		}
		loc = p.zone(off)
		i += 6
	default:
		return time.Time{}, 0, false
	}
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
		return time.Time{}, 0, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, ns, loc)
	if t.Day() != d {
		return time.Time{}, 0, false // Feb 30 and friends
	}
	return t, i, true
}

func (p *Parser) zone(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	for i := range p.zones {
		if p.zones[i].loc != nil && p.zones[i].off == off {
			return p.zones[i].loc
		}
	}
	loc := time.FixedZone("", off)
	copy(p.zones[1:], p.zones[:len(p.zones)-1])
	p.zones[0] = zoneCache{off: off, loc: loc}
	return loc
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// traditional parses "Oct 21 04:49:01" (day space-padded) and infers the
// year: from Anchor for the first line, then a December-to-January step
// means a new year. A small step back (an NTP correction) is not one.
func (p *Parser) traditional(b []byte) (time.Time, bool) {
	var mo time.Month
	for i, m := range months {
		if b[0] == m[0] && b[1] == m[1] && b[2] == m[2] {
			mo = time.Month(i + 1)
			break
		}
	}
	if mo == 0 || b[3] != ' ' || b[6] != ' ' || b[9] != ':' || b[12] != ':' {
		return time.Time{}, false
	}
	dd := b[4:6]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	d, ok1 := num(dd)
	h, ok2 := num(b[7:9])
	mi, ok3 := num(b[10:12])
	s, ok4 := num(b[13:15])
	if !(ok1 && ok2 && ok3 && ok4) || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 {
		return time.Time{}, false
	}
	loc := p.Location
	if loc == nil {
		loc = time.Local
	}
	if !p.started {
		anchor := p.Anchor
		if anchor.IsZero() {
			anchor = clock.Or(p.Clock).Now()
		}
		anchor = anchor.In(loc)
		p.year = anchor.Year()
		// A line dated more than a day after the anchor was written last year.
		if time.Date(p.year, mo, d, h, mi, s, 0, loc).After(anchor.Add(24 * time.Hour)) {
			p.year--
		}
		p.started = true
	} else if p.lastMonth == time.December && mo == time.January {
		p.year++
	}
	p.lastMonth = mo
	year := p.year
	t := time.Date(year, mo, d, h, mi, s, 0, loc)
	if t.Month() != mo {
		// Feb 29 in a common year: time.Date rolled it into March. The line
		// is from the nearest earlier leap year (an old file read late).
		for y := year - 1; y >= year-4; y-- {
			if t = time.Date(y, mo, d, h, mi, s, 0, loc); t.Month() == mo {
				return t, true
			}
		}
		return time.Time{}, false
	}
	return t, true
}

// rfc5424Head parses "<PRI>1 TIMESTAMP".
func (p *Parser) rfc5424Head(b []byte, out *Line) ([]byte, bool) {
	end := bytes.IndexByte(b, '>')
	if end < 2 || end > 4 {
		return nil, false
	}
	if _, ok := atoi(b[1:end]); !ok {
		return nil, false
	}
	b = b[end+1:]
	if len(b) < 2 || b[0] != '1' || b[1] != ' ' {
		return nil, false
	}
	b = b[2:]
	if len(b) > 0 && b[0] == '-' {
		out.Format = FormatRFC5424
		return b[1:], true
	}
	if len(b) < 20 {
		return nil, false
	}
	t, n, ok := p.rfc3339(b)
	if !ok {
		return nil, false
	}
	out.Time, out.Format, out.Digits = t, FormatRFC5424, fracDigits(b[19:n])
	return b[n:], true
}

// rfc5424Rest parses "HOST APP PROCID MSGID SD MSG" with "-" for nil.
func (p *Parser) rfc5424Rest(b []byte, out *Line) {
	var f [4][]byte
	for i := range f {
		sp := bytes.IndexByte(b, ' ')
		if sp < 0 {
			f[i], b = b, nil
			break
		}
		f[i], b = b[:sp], b[sp+1:]
	}
	nilv := func(x []byte) []byte {
		if len(x) == 1 && x[0] == '-' {
			return nil
		}
		return x
	}
	out.Host, out.Program = nilv(f[0]), nilv(f[1])
	if pid, ok := atoi(f[2]); ok {
		out.PID = pid
	}
	// Structured data: "-" or one or more [...] elements.
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	} else {
		for len(b) > 0 && b[0] == '[' {
			end := sdEnd(b)
			if end < 0 {
				break
			}
			b = b[end+1:]
		}
	}
	b = trimSpace1(b)
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		b = b[3:] // BOM
	}
	out.Message = b
	out.Parsed = true
}

// sdEnd finds the ']' closing an SD element, honouring \] escapes.
func sdEnd(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case ']':
			return i
		}
	}
	return -1
}

// fracDigits counts the digits after '.' at the start of b.
func fracDigits(b []byte) int {
	if len(b) == 0 || b[0] != '.' {
		return 0
	}
	n := 0
	for _, c := range b[1:] {
		if !isDigit(c) {
			break
		}
		n++
	}
	return min(n, 9)
}

// FormatTime writes t in RFC 3339 with exactly digits fractional digits.
func FormatTime(t time.Time, digits int) string {
	const layout = "2006-01-02T15:04:05.000000000"
	l := layout[:20+digits]
	if digits == 0 {
		l = layout[:19]
	}
	return t.Format(l + "-07:00") // +00:00 like rsyslog, not Z
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func num(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// atoi parses a pid: 1 to 10 digits.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	return num(b)
}
