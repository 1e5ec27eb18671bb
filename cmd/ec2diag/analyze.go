package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/collectors/jobs"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/syslog"
	"github.com/ec2diag/ec2diag/internal/tail"
	"github.com/spf13/cobra"
)

// analyzeRecord is the JSON contract of `ec2diag analyze --format json`
// (documented in the README); fields are only ever added.
type analyzeRecord struct {
	Type     string   `json:"type"`
	Time     string   `json:"time"`
	Host     string   `json:"host,omitempty"`
	Job      string   `json:"job,omitempty"`
	User     string   `json:"user,omitempty"`
	PID      *int     `json:"pid,omitempty"`
	Command  string   `json:"command,omitempty"`
	Start    string   `json:"start,omitempty"`
	End      *string  `json:"end"`
	Duration *float64 `json:"duration_seconds"`
	Source   string   `json:"source,omitempty"`
	Unit     string   `json:"unit,omitempty"`
	Session  int      `json:"session_pid,omitempty"`
	EndBy    string   `json:"end_by,omitempty"`
	EndBound string   `json:"ended_before,omitempty"`
	Result   string   `json:"result,omitempty"`
	CPU      *float64 `json:"cpu_seconds,omitempty"`
	Notes    []string `json:"notes,omitempty"`
	Ambig    string   `json:"ambiguous,omitempty"`
	Victim   int      `json:"victim_pid,omitempty"`
	Comm     string   `json:"comm,omitempty"`
	RSSKB    int64    `json:"anon_rss_kb,omitempty"`
	Memcg    string   `json:"memcg,omitempty"`
	Iface    string   `json:"iface,omitempty"`
	Count    int64    `json:"count,omitempty"`
	Message  string   `json:"message,omitempty"`
	File     string   `json:"file,omitempty"`
}

func newAnalyzeCmd(g *globalFlags) *cobra.Command {
	var files []string
	var year int
	var tz, format string
	var names []string
	c := &cobra.Command{
		Use:   "analyze --syslog FILE [--syslog FILE ...]",
		Short: "Print a timeline of job runs, kernel trouble and boots from syslog files",
		Long: `Read syslog files after the fact (rotated and gzipped ones too; give auth.log the
same way for cron session lines), and print a timeline in time order: job runs (cron,
cronie, systemd timer services) with start, end, duration, user, pid and command;
OOM kills, hung tasks, soft lockups, ENA resets, lost log lines; boots. An end time
is printed only when a log line says so: never guessed.

--format json prints one object per line; see "analyze JSON" in the README.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("give at least one --syslog FILE")}
			}
			if format != "text" && format != "json" {
				return &exitError{code: exitUsage, err: fmt.Errorf("--format: want text or json, got %q", format)}
			}
			loc := time.Local
			if tz != "" {
				l, err := time.LoadLocation(tz)
				if err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("--tz %q: %v", tz, err)}
				}
				loc = l
			}
			namer := &jobs.Namer{}
			for _, n := range names {
				pat, name, ok := strings.Cut(n, "=")
				re, err := regexp.Compile(pat)
				if !ok || err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("--name %q: want REGEXP=NAME", n)}
				}
				namer.Rules = append(namer.Rules, jobs.NameRule{Pattern: re, Name: name})
			}
			a := &analysis{loc: loc, year: year}
			for _, f := range files {
				a.read(f)
			}
			if err := a.print(cmd.OutOrStdout(), cmd.ErrOrStderr(), namer, format); err != nil {
				return err
			}
			if a.failed > 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d files could not be read (the others were analysed)", a.failed, len(files))}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&files, "syslog", nil, "syslog, auth.log or rotated (.1, .gz) file (repeatable)")
	f.IntVar(&year, "year", 0, "year of traditional \"Oct 21 04:49:01\" timestamps' first line (default: from the file's time)")
	f.StringVar(&tz, "tz", "", "zone of traditional timestamps, an IANA name (default: this host's)")
	f.StringVar(&format, "format", "text", "output: text or json")
	f.StringArrayVar(&names, "name", nil, "job name override REGEXP=NAME, matched against the command (repeatable)")
	return c
}

type analysis struct {
	loc      *time.Location
	year     int
	events   []jobs.Event
	lines    int
	unparsed int
	files    int
	long     int   // lines over maxAnalyzeLine, kept to their start
	nuls     int64 // NUL bytes a crash left, skipped
	damage   []string
	failed   int // files that could not be read at all
}

// maxAnalyzeLine is how much of one line is kept; the rest is skipped and
// counted (a 1 MiB line used to abort the whole analysis).
const maxAnalyzeLine = 64 << 10

// read adds one file's events. Damage (a truncated .gz, an I/O error) ends
// that file where it is, keeping what came before, and is reported with
// the file and offset; other files are read regardless.
func (a *analysis) read(name string) {
	f, err := tail.OpenRegular(name)
	if err != nil {
		a.failed++
		a.damage = append(a.damage, fmt.Sprintf("cannot read %s: %v", name, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		a.failed++
		a.damage = append(a.damage, fmt.Sprintf("cannot read %s: %v", name, err))
		return
	}
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		z, err := gzip.NewReader(f)
		if err != nil {
			a.failed++
			a.damage = append(a.damage, fmt.Sprintf("cannot read %s: %v", name, err))
			return
		}
		defer z.Close()
		r = z
	}
	anchor := fi.ModTime()
	if a.year != 0 {
		anchor = time.Date(a.year, 12, 31, 23, 59, 59, 0, a.loc)
	}
	p := &syslog.Parser{Location: a.loc, Anchor: anchor}
	rd := bufio.NewReaderSize(r, 64<<10)
	var off, start int64 // (decompressed) offset read to, and of the line's first byte
	line := make([]byte, 0, 4096)
	over := false
	for {
		frag, err := rd.ReadSlice('\n')
		off += int64(len(frag))
		if len(line) == 0 && !over {
			// NULs a crash left before the next line do not count
			// against the line's length (2 MiB of them hid the line after).
			k := 0
			for k < len(frag) && frag[k] == 0 {
				k++
			}
			a.nuls += int64(k)
			frag, start = frag[k:], start+int64(k)
		}
		switch {
		case over:
		case len(line)+len(frag) > maxAnalyzeLine:
			line, over = append(line, frag[:maxAnalyzeLine-len(line)]...), true
		default:
			line = append(line, frag...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if b := bytes.TrimSuffix(line, []byte("\n")); len(b) > 0 {
			a.line(p, name, b, start, over)
		}
		line, over, start = line[:0], false, off
		if err == io.EOF {
			break
		}
		if err != nil {
			a.damage = append(a.damage, fmt.Sprintf("%s: damaged at offset %d (%v); its lines before that were analysed", name, off, err))
			break
		}
	}
	a.files++
}

// line analyses one line; off is where it began.
func (a *analysis) line(p *syslog.Parser, name string, b []byte, off int64, long bool) {
	if long {
		a.long++
	}
	a.lines++
	var l syslog.Line
	p.Parse(b, &l)
	if !l.Parsed {
		a.unparsed++
	}
	var ev jobs.Event
	if jobs.Recognize(&l, &ev) {
		ev.File, ev.Offset = name, off
		a.events = append(a.events, ev)
	}
}

func (a *analysis) print(out, errw io.Writer, namer *jobs.Namer, format string) error {
	sort.SliceStable(a.events, func(i, j int) bool { return a.events[i].Time.Before(a.events[j].Time) })
	tr := jobs.NewTracker(namer, true)
	var recs []analyzeRecord
	var times []time.Time
	for i := range a.events {
		ev := &a.events[i]
		tr.Feed(ev)
		switch ev.Type {
		case jobs.TypeOOMKill, jobs.TypeOOMInvoked, jobs.TypeHungTask, jobs.TypeSoftLockup, jobs.TypeRCUStall,
			jobs.TypeENA, jobs.TypeBoot, jobs.TypeLinesLost, jobs.TypeAgentStart:
			recs = append(recs, analyzeRecord{Type: ev.Type, Time: syslog.FormatTime(ev.Time, ev.Digits), Host: ev.Host, Source: ev.Source,
				Victim: ev.Victim, Comm: ev.Comm, RSSKB: ev.RSSKB, Memcg: ev.Memcg, Iface: ev.Iface, Count: ev.Count, Message: ev.Message, File: ev.File})
			times = append(times, ev.Time)
		}
	}
	for _, r := range tr.Runs() {
		rec := analyzeRecord{Type: "job_run", Time: syslog.FormatTime(r.Start, r.Digits), Host: r.Host, Job: r.Job, User: r.User,
			Command: r.Command, Start: syslog.FormatTime(r.Start, r.Digits), Source: r.Source, Unit: r.Unit, Session: r.SessionPID,
			EndBy: r.EndBy, Result: r.Result, Notes: r.Notes, Ambig: r.Ambiguous, File: r.File}
		if r.PID != 0 {
			pid := r.PID
			rec.PID = &pid
		}
		if r.End != nil {
			e := syslog.FormatTime(*r.End, r.Digits)
			d := r.End.Sub(r.Start).Seconds()
			rec.End, rec.Duration = &e, &d
		}
		if r.EndBound != nil {
			rec.EndBound = syslog.FormatTime(*r.EndBound, r.Digits)
		}
		if r.CPU > 0 {
			c := r.CPU
			rec.CPU = &c
		}
		recs = append(recs, rec)
		times = append(times, r.Start)
	}
	idx := make([]int, len(recs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return times[idx[i]].Before(times[idx[j]]) })
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, i := range idx {
		r := recs[i]
		if format == "json" {
			if err := enc.Encode(&r); err != nil {
				return err
			}
			continue
		}
		// Every field came from a log line: escaped, so no ESC or BEL
		// reaches the terminal and no line becomes two.
		fmt.Fprintln(w, escape.Control(textLine(&r)))
	}
	fmt.Fprintf(errw, "%d files, %d lines, %d not in a known syslog format (kept, not analysed), %d events\n", a.files, a.lines, a.unparsed, len(a.events))
	if a.long > 0 || a.nuls > 0 {
		fmt.Fprintf(errw, "warning: %d lines longer than %d bytes (kept to their start), %d NUL bytes skipped (left by a crash)\n", a.long, maxAnalyzeLine, a.nuls)
	}
	for _, d := range a.damage {
		fmt.Fprintf(errw, "warning: %s\n", escape.Control(d))
	}
	if tr.Dropped > 0 || tr.NotKept > 0 {
		// A flood of start lines nobody ended (forged with logger, or a
		// log that lost the ends): bounded, and said.
		fmt.Fprintf(errw, "warning: %d job runs never ended and were given up (more than %d open at once); %d runs not listed (more than %d)\n",
			tr.Dropped, jobs.MaxOpen, tr.NotKept, jobs.MaxKept)
	}
	return nil
}

func textLine(r *analyzeRecord) string {
	if r.Type != "job_run" {
		s := fmt.Sprintf("%s  %-12s", r.Time, r.Type)
		if r.Comm != "" {
			s += fmt.Sprintf(" %s", r.Comm)
		}
		if r.Victim != 0 {
			s += fmt.Sprintf(" pid %d", r.Victim)
		}
		if r.Iface != "" {
			s += " " + r.Iface
		}
		if r.Message != "" {
			s += "  " + r.Message
		}
		return s
	}
	end := "end unknown"
	switch {
	case r.End != nil:
		end = fmt.Sprintf("ended %s (%.1fs, %s)", *r.End, *r.Duration, r.EndBy)
	case r.EndBound != "":
		end = "end unknown, before the boot at " + r.EndBound
	}
	s := fmt.Sprintf("%s  job_run      %s (%s", r.Start, r.Job, r.Source)
	if r.User != "" {
		s += ", user " + r.User
	}
	if r.PID != nil {
		s += fmt.Sprintf(", pid %d", *r.PID)
	}
	s += ")  " + end
	if r.Result != "" && r.Result != "success" {
		s += ", result " + r.Result
	}
	if r.CPU != nil {
		s += fmt.Sprintf(", %.3fs CPU", *r.CPU)
	}
	if r.Ambig != "" {
		s += "  [ambiguous: " + r.Ambig + "]"
	}
	if r.Command != "" && r.Source != "systemd" {
		s += "\n      command: " + r.Command
	}
	for _, n := range r.Notes {
		s += "\n      note: " + n
	}
	return s
}
