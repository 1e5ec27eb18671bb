package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/ec2diag/ec2diag/internal/escape"

	"github.com/ec2diag/ec2diag/collectors/logsource"
	"github.com/ec2diag/ec2diag/internal/logging"
	"github.com/ec2diag/ec2diag/internal/syslog"
	"github.com/spf13/cobra"
)

// tailRecord is the JSON contract of `ec2diag tail --format json`; fields
// are only ever added.
type tailRecord struct {
	File      string  `json:"file"`
	Offset    *int64  `json:"offset,omitempty"`
	Cursor    string  `json:"cursor,omitempty"`
	Time      *string `json:"time"`
	Host      string  `json:"host"`
	Program   string  `json:"program"`
	PID       *int    `json:"pid"`
	Message   string  `json:"message"`
	Parsed    bool    `json:"parsed"`
	Format    string  `json:"format"`
	Raw       string  `json:"raw,omitempty"`
	Truncated bool    `json:"truncated,omitempty"`
	Partial   bool    `json:"partial,omitempty"`
	NULs      int     `json:"nul_bytes_skipped,omitempty"`
}

func newTailCmd(g *globalFlags) *cobra.Command {
	var files []string
	var journal, fromStart bool
	var format string
	var journalArgs []string
	c := &cobra.Command{
		Use:   "tail [--file F ...] [--journal]",
		Short: "Follow log files (or the journal) exactly as the agent does and print each parsed line",
		Long: `Follow files through rotation, truncation and restarts with the agent's own reader
and parser, printing each parsed line. With --state-dir the position is checkpointed
there (use a directory of its own, not the running agent's) and a restart resumes
without losing or repeating lines; without it, following starts at the end and
nothing is saved.

JSON fields (--format json, one object per line): file, offset, cursor (journal),
time (RFC 3339, source precision; null if unparsed), host, program, pid (null if
none), message, parsed, format, raw (the whole line when unparsed), truncated,
partial, nul_bytes_skipped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 && !journal {
				return &exitError{code: exitUsage, err: fmt.Errorf("give --file F (repeatable) or --journal")}
			}
			if format != "json" && format != "text" {
				return &exitError{code: exitUsage, err: fmt.Errorf("--format: want json or text, got %q", format)}
			}
			cfg, err := loadConfig(g)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			loc, _ := cfg.Syslog.Location()
			log, _, _, err := logging.New(logging.Options{Level: cfg.Log.Level, Format: "console"})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			state := g.stateDir
			if state == "" {
				d, err := os.MkdirTemp("", "ec2diag-tail")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				state = d
			}
			src := logsource.New(logsource.Options{
				Files: files, Journal: journal, JournalArgs: journalArgs, StateDir: state, FromStart: fromStart,
				Location: loc, MaxLineBytes: cfg.Syslog.MaxLineBytes, PollInterval: cfg.Syslog.PollInterval.D(), Log: log,
			})
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return printTail(ctx, src, bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10), format)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&files, "file", nil, "file to follow (repeatable)")
	f.BoolVar(&journal, "journal", false, "follow the journal instead of files")
	f.StringArrayVar(&journalArgs, "journal-arg", nil, "extra journalctl argument, e.g. --journal-arg=--directory=/path (repeatable)")
	f.BoolVar(&fromStart, "from-start", false, "with no checkpoint, read the files from their start")
	f.StringVar(&format, "format", "json", "output: json or text")
	return c
}

// printTail writes each batch, flushes, then acks: the checkpoint never
// runs ahead of what was printed.
func printTail(ctx context.Context, src *logsource.Source, w *bufio.Writer, format string) error {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return src.Run(ctx, func(batch []logsource.Entry, ack func()) error {
		mu.Lock()
		defer mu.Unlock()
		for i := range batch {
			e := &batch[i]
			if format == "text" {
				// The line as written, but escaped: anyone can log ESC or
				// BEL, and they must not reach the terminal.
				fmt.Fprintf(w, "%s\n", escape.Control(string(e.Raw.Data)))
				continue
			}
			r := tailRecord{File: e.Raw.File, Cursor: e.Cursor, Host: string(e.Line.Host), Program: string(e.Line.Program),
				Message: string(e.Line.Message), Parsed: e.Line.Parsed, Format: e.Line.Format.String(),
				Truncated: e.Raw.Truncated, Partial: e.Raw.Partial, NULs: e.Raw.NULs}
			if e.Cursor == "" {
				off := e.Raw.Offset
				r.Offset = &off
			}
			if e.Line.Parsed {
				ts := syslog.FormatTime(e.Line.Time, e.Line.Digits)
				r.Time = &ts
			} else {
				r.Raw = string(e.Raw.Data)
			}
			if e.Line.PID != 0 {
				pid := e.Line.PID
				r.PID = &pid
			}
			if err := enc.Encode(&r); err != nil {
				return err
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		ack()
		return nil
	})
}
