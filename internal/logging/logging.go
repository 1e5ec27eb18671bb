// Package logging builds the agent's zap logger: native journald under
// systemd, human console or JSON elsewhere. Field keys are constants so the
// same names work in code, on the console and in journalctl filters.
package logging

import (
	"fmt"
	"io"
	"os"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field keys. In the journal they appear upper-cased (EC2DIAG_EVENT, JOB,
// PID ...), which is what operators filter on: journalctl EC2DIAG_EVENT=spike.
const (
	KeyEvent     = "ec2diag_event"
	KeyJob       = "job"
	KeyPID       = "pid"
	KeyFile      = "file"
	KeyCollector = "collector"
	KeyIface     = "iface"
	KeyTopPID    = "top_pid"
	KeyTopComm   = "top_comm"
	KeyIncident  = "incident"
)

// Options selects level and output.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // auto, journal, console, json
	Ident  string // SYSLOG_IDENTIFIER; default "ec2diag"
	// Out is the console destination; nil means stderr.
	Out io.Writer
	// Send replaces journal.Send (tests).
	Send SendFunc
}

// New returns the logger, an AtomicLevel for reloads, and the format chosen
// when Format is "auto".
func New(o Options) (*zap.Logger, zap.AtomicLevel, string, error) {
	lvl := zap.NewAtomicLevel()
	if err := lvl.UnmarshalText([]byte(o.Level)); err != nil {
		return nil, lvl, "", fmt.Errorf("log level %q: %w", o.Level, err)
	}
	format := o.Format
	if format == "" || format == "auto" {
		format = "console"
		if under, _ := journal.StderrIsJournalStream(); under && journal.Enabled() {
			format = "journal"
		}
	}
	ident := o.Ident
	if ident == "" {
		ident = "ec2diag"
	}
	out := o.Out
	if out == nil {
		out = os.Stderr
	}
	var core zapcore.Core
	switch format {
	case "journal":
		send := o.Send
		if send == nil {
			send = journal.Send
		}
		core = NewJournalCore(lvl, ident, send)
	case "console", "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.EncodeDuration = zapcore.StringDurationEncoder
		var enc zapcore.Encoder
		if format == "json" {
			enc = zapcore.NewJSONEncoder(ec)
		} else {
			ec.EncodeLevel = zapcore.CapitalLevelEncoder
			enc = zapcore.NewConsoleEncoder(ec)
		}
		core = zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)
	default:
		return nil, lvl, "", fmt.Errorf("log format %q: want auto, journal, console or json", o.Format)
	}
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel)), lvl, format, nil
}
