package syslog

import (
	"bytes"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	utc := time.UTC
	anchor := time.Date(2024, 10, 21, 12, 0, 0, 0, utc)
	for _, tc := range []struct {
		name, line      string
		want            time.Time
		host, prog, msg string
		pid             int
		format          Format
		parsed          bool
	}{
		{"incident line rfc3339", "2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
			time.Date(2024, 10, 21, 4, 49, 1, 801940000, utc), "ip-172-31-20-5", "CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", 2978, FormatRFC3339, true},
		{"incident line traditional", "Oct 21 04:49:01 ip-172-31-20-5 CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
			time.Date(2024, 10, 21, 4, 49, 1, 0, utc), "ip-172-31-20-5", "CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", 2978, FormatTraditional, true},
		{"space-padded day", "Oct  1 00:00:00 h kernel: [    1.234567] Linux version 6.8.0",
			time.Date(2024, 10, 1, 0, 0, 0, 0, utc), "h", "kernel", "[    1.234567] Linux version 6.8.0", 0, FormatTraditional, true},
		{"offset zone", "2024-10-21T06:49:01.000001+02:00 h systemd[1]: Started x.service.",
			time.Date(2024, 10, 21, 4, 49, 1, 1000, utc), "h", "systemd", "Started x.service.", 1, FormatRFC3339, true},
		{"negative zone Z", "2024-10-21T04:49:01Z h sshd[7]: hi", time.Date(2024, 10, 21, 4, 49, 1, 0, utc), "h", "sshd", "hi", 7, FormatRFC3339, true},
		{"no pid", "2024-10-21T04:49:01.1+00:00 h rsyslogd: [origin software=\"rsyslogd\"] start",
			time.Date(2024, 10, 21, 4, 49, 1, 100000000, utc), "h", "rsyslogd", "[origin software=\"rsyslogd\"] start", 0, FormatRFC3339, true},
		{"no tag", "2024-10-21T04:49:01+00:00 h just words here", time.Date(2024, 10, 21, 4, 49, 1, 0, utc), "h", "", "just words here", 0, FormatRFC3339, true},
		{"rfc5424", "<78>1 2024-10-21T04:49:01.801940+00:00 h CRON 2978 - - (root) CMD (true)",
			time.Date(2024, 10, 21, 4, 49, 1, 801940000, utc), "h", "CRON", "(root) CMD (true)", 2978, FormatRFC5424, true},
		{"rfc5424 sd", `<13>1 2024-10-21T04:49:01Z h app - ID47 [ex@1 a="x\]y"] msg`, time.Date(2024, 10, 21, 4, 49, 1, 0, utc), "h", "app", "msg", 0, FormatRFC5424, true},
		{"garbage", "hello world", time.Time{}, "", "", "hello world", 0, FormatUnknown, false},
		{"bad month", "Foo 21 04:49:01 h x: y", time.Time{}, "", "", "Foo 21 04:49:01 h x: y", 0, FormatUnknown, false},
		{"feb 30", "2024-02-30T04:49:01Z h x: y", time.Time{}, "", "", "2024-02-30T04:49:01Z h x: y", 0, FormatUnknown, false},
		{"invalid utf8 kept", "2024-10-21T04:49:01Z h x[1]: \xff\xfe", time.Date(2024, 10, 21, 4, 49, 1, 0, utc), "h", "x", "\xff\xfe", 1, FormatRFC3339, true},
		{"bad pid", "2024-10-21T04:49:01Z h x[abc]: y", time.Date(2024, 10, 21, 4, 49, 1, 0, utc), "h", "", "x[abc]: y", 0, FormatRFC3339, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Parser{Location: utc, Anchor: anchor}
			var l Line
			p.Parse([]byte(tc.line), &l)
			if l.Parsed != tc.parsed || l.Format != tc.format || !l.Time.Equal(tc.want) || string(l.Host) != tc.host ||
				string(l.Program) != tc.prog || l.PID != tc.pid || string(l.Message) != tc.msg {
				t.Errorf("Parse(%q) =\n {%v %s host=%q prog=%q pid=%d msg=%q parsed=%v}\nwant\n {%v %s host=%q prog=%q pid=%d msg=%q parsed=%v}",
					tc.line, l.Time, l.Format, l.Host, l.Program, l.PID, l.Message, l.Parsed, tc.want, tc.format, tc.host, tc.prog, tc.pid, tc.msg, tc.parsed)
			}
		})
	}
}

func TestFormatTimeKeepsPrecision(t *testing.T) {
	for _, in := range []string{"2024-10-21T04:49:01.801940+00:00", "2024-10-21T04:49:01+02:00", "2024-10-21T04:49:01.100-05:30"} {
		var l Line
		(&Parser{}).Parse([]byte(in+" h x: y"), &l)
		if got := FormatTime(l.Time, l.Digits); got != in {
			t.Errorf("FormatTime(Parse(%q)) = %q", in, got)
		}
	}
}

func TestYearInference(t *testing.T) {
	utc := time.UTC
	for _, tc := range []struct {
		name   string
		anchor time.Time
		lines  []string
		want   []time.Time
	}{
		{"rollover", time.Date(2025, 1, 1, 0, 10, 0, 0, utc),
			[]string{"Dec 31 23:59:59", "Jan  1 00:00:01"},
			[]time.Time{time.Date(2024, 12, 31, 23, 59, 59, 0, utc), time.Date(2025, 1, 1, 0, 0, 1, 0, utc)}},
		{"live tail over new year", time.Date(2024, 12, 31, 23, 0, 0, 0, utc),
			[]string{"Dec 31 23:59:59", "Jan  1 00:00:01", "Jan  1 00:00:02"},
			[]time.Time{time.Date(2024, 12, 31, 23, 59, 59, 0, utc), time.Date(2025, 1, 1, 0, 0, 1, 0, utc), time.Date(2025, 1, 1, 0, 0, 2, 0, utc)}},
		{"clock stepped back is not a new year", time.Date(2024, 6, 1, 12, 0, 0, 0, utc),
			[]string{"Jun  1 10:00:05", "Jun  1 10:00:03"},
			[]time.Time{time.Date(2024, 6, 1, 10, 0, 5, 0, utc), time.Date(2024, 6, 1, 10, 0, 3, 0, utc)}},
		{"leap day in a leap year", time.Date(2024, 3, 1, 0, 0, 0, 0, utc),
			[]string{"Feb 29 12:00:00"}, []time.Time{time.Date(2024, 2, 29, 12, 0, 0, 0, utc)}},
		{"leap day read in a common year", time.Date(2025, 2, 28, 0, 0, 0, 0, utc),
			[]string{"Feb 29 12:00:00"}, []time.Time{time.Date(2024, 2, 29, 12, 0, 0, 0, utc)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Parser{Location: utc, Anchor: tc.anchor}
			for i, s := range tc.lines {
				var l Line
				p.Parse([]byte(s+" h x: y"), &l)
				if !l.Parsed || !l.Time.Equal(tc.want[i]) {
					t.Errorf("line %q: got %v (parsed %v), want %v", s, l.Time, l.Parsed, tc.want[i])
				}
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	p := &Parser{Location: time.UTC}
	lines := [][]byte{
		[]byte("2024-10-21T04:49:01.801940+02:00 ip-172-31-20-5 CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
		[]byte("Oct 21 04:49:01 ip-172-31-20-5 CRON[2978]: (root) CMD (x)"),
	}
	var l Line
	for _, b := range lines {
		p.Parse(b, &l) // warm the zone cache
		if n := testing.AllocsPerRun(100, func() { p.Parse(b, &l) }); n != 0 {
			t.Errorf("Parse(%q) allocates %v times per line, want 0", b, n)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"2024-10-21T04:49:01.801940+00:00 h CRON[2978]: (root) CMD (x)",
		"Oct 21 04:49:01 h CRON[2978]: (root) CMD (x)",
		"<78>1 2024-10-21T04:49:01Z h CRON 2978 - [a b=\"]\"] m",
		"Feb 29 12:00:00 h x[99999999999]: y",
		"2024-10-21T04:49:01.+00:00 h",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &Parser{Location: time.UTC, Anchor: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
		var l Line
		p.Parse(b, &l)
		if !l.Parsed && !bytes.Equal(l.Message, b) {
			t.Fatalf("unparsed line not kept whole: %q -> %q", b, l.Message)
		}
		for _, part := range [][]byte{l.Host, l.Program, l.Message} {
			if len(part) > len(b) {
				t.Fatalf("field longer than the line")
			}
		}
		if l.PID < 0 {
			t.Fatalf("negative pid")
		}
	})
}

func BenchmarkParse(b *testing.B) {
	line := []byte("2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)")
	p := &Parser{}
	var l Line
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.Parse(line, &l)
	}
}
