// Package jobs recognises what happened on the machine from parsed syslog
// lines: cron, cronie and systemd-timer job runs, PAM cron sessions, OOM
// kills, hung tasks, soft lockups, ENA driver trouble, boots and lost log
// lines. A Tracker pairs starts with ends into job runs; the agent and
// `ec2diag analyze` share both.
package jobs

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/redact"
	"github.com/ec2diag/ec2diag/internal/syslog"
)

// Event types. Stable: they appear in JSON output and journal fields.
const (
	TypeCronCmd      = "cron_cmd"      // a cron job started (CMD line)
	TypeCronEnd      = "cron_end"      // Debian END (-L 2) or cronie CMDEND
	TypeCronFailed   = "cron_failed"   // Debian "grandchild #P failed with exit status N"
	TypeCronNote     = "cron_note"     // No MTA, MAIL, CMDOUT
	TypeSessionOpen  = "session_open"  // pam_unix(cron:session) opened
	TypeSessionClose = "session_close" // pam_unix(cron:session) closed
	TypeCronDaemon   = "cron_daemon"   // cron daemon (re)started
	TypeUnitStart    = "unit_start"    // systemd: Starting X...
	TypeUnitStarted  = "unit_started"  // systemd: Started X. (a service that keeps running: not a job run)
	TypeStartupDone  = "startup_done"  // systemd: Startup finished in ... (the boot is over)
	TypeUnitEnd      = "unit_end"      // systemd: Finished / Deactivated / Succeeded / Failed
	TypeUnitCPU      = "unit_cpu"      // systemd: X: Consumed 1.234s CPU time
	TypeOOMInvoked   = "oom_invoked"
	TypeOOMKill      = "oom_kill"
	TypeHungTask     = "hung_task"
	TypeSoftLockup   = "soft_lockup"
	TypeRCUStall     = "rcu_stall"
	TypeENA          = "ena_event"
	TypeBoot         = "boot"
	TypeLinesLost    = "lines_lost"
	TypeAgentStart   = "agent_start"
	TypeSSHLogin     = "ssh_login" // sshd: Accepted publickey for USER from ADDR port N
)

// Event is one recognised line. Fields not relevant to Type stay zero.
type Event struct {
	Type    string    `json:"type"`
	Time    time.Time `json:"-"`
	Digits  int       `json:"-"`
	Host    string    `json:"host,omitempty"`
	Source  string    `json:"source,omitempty"` // cron, cronie, systemd, kernel, pam, rsyslog, journald
	PID     int       `json:"pid,omitempty"`    // the logging pid
	JobPID  int       `json:"job_pid,omitempty"`
	User    string    `json:"user,omitempty"`
	Command string    `json:"command,omitempty"`
	Unit    string    `json:"unit,omitempty"`
	Result  string    `json:"result,omitempty"` // success, exit-code, oom-kill, exit status N ...
	CPU     float64   `json:"cpu_seconds,omitempty"`
	Victim  int       `json:"victim_pid,omitempty"`
	Comm    string    `json:"comm,omitempty"`
	RSSKB   int64     `json:"anon_rss_kb,omitempty"`
	Memcg   string    `json:"memcg,omitempty"`
	Iface   string    `json:"iface,omitempty"`
	Count   int64     `json:"count,omitempty"`
	Message string    `json:"message,omitempty"`
	File    string    `json:"file,omitempty"`
	Addr    string    `json:"addr,omitempty"` // ssh_login: the client's address
	Offset  int64     `json:"offset,omitempty"`
	// Verified: a trusted source says the kernel logged it.
	Verified bool `json:"-"`
}

// Recognize returns the event in l, if any. It first tests the program
// name and cheap byte prefixes, so the common line costs a few compares and
// allocates nothing; only matches copy their fields.
func Recognize(l *syslog.Line, ev *Event) bool {
	if !l.Parsed {
		return false
	}
	*ev = Event{Time: l.Time, Digits: l.Digits, PID: l.PID}
	prog, msg := l.Program, l.Message
	ok := false
	switch {
	case bytes.Equal(prog, []byte("CRON")) || bytes.Equal(prog, []byte("CROND")):
		ok = cronLine(prog, msg, ev)
	case bytes.Equal(prog, []byte("cron")) || bytes.Equal(prog, []byte("crond")):
		ok = cronDaemon(msg, ev)
	case bytes.Equal(prog, []byte("systemd")):
		ok = systemdLine(msg, ev)
	case bytes.Equal(prog, []byte("kernel")):
		ok = kernelLine(msg, ev)
	case bytes.Equal(prog, []byte("rsyslogd")):
		ok = rsyslogLine(msg, ev)
	case bytes.Equal(prog, []byte("systemd-journald")):
		ok = journaldLine(msg, ev)
	case bytes.Equal(prog, []byte("sshd")) || bytes.Equal(prog, []byte("sshd-session")):
		ok = sshLine(msg, ev)
	case bytes.Equal(prog, []byte("ec2diag")):
		if bytes.HasPrefix(msg, []byte("ec2diag starting")) {
			ev.Type, ev.Source = TypeAgentStart, "ec2diag"
			ok = true
		}
	}
	if ok {
		ev.Host = string(l.Host)
	}
	return ok
}

// sshLine recognises a login: "Accepted publickey for ubuntu from
// 10.0.0.5 port 51514 ssh2: ...". The logging pid is the session's
// privileged sshd (sshd-session since OpenSSH 9.8), an ancestor of every
// process the login starts: that is how an incident's process is tied to
// the address it was started from. A user name or address that is not
// one is no login.
func sshLine(msg []byte, ev *Event) bool {
	rest, ok := bytes.CutPrefix(msg, []byte("Accepted "))
	if !ok {
		return false
	}
	_, rest, ok = bytes.Cut(rest, []byte(" for "))
	if !ok {
		return false
	}
	user, rest, ok := bytes.Cut(rest, []byte(" from "))
	if !ok || len(user) == 0 || len(user) > 64 || !portableName(user) {
		return false
	}
	addr, _, _ := bytes.Cut(rest, []byte(" "))
	a, err := netip.ParseAddr(string(addr))
	if err != nil || ev.PID <= 0 {
		return false
	}
	// Without its zone: "fe80::1%<anything>" put arbitrary text (markup,
	// escape sequences) into a group's name.
	ev.Type, ev.Source, ev.User, ev.Addr = TypeSSHLogin, "sshd", string(user), a.WithZone("").String()
	return true
}

// MaxCommand bounds a job's command as kept: rsyslog passes lines of 8
// KiB, and anyone can log one.
const MaxCommand = 1024

// command is a job's command as ec2diag keeps it: secrets hidden where it
// enters (the run's start and end lines are redacted alike, so they still
// pair), bounded.
func command(b []byte) string {
	// Cut before redacting (a secret cut in two is still a value and is
	// hidden), then again: redaction must not cost a core per 60 KiB line
	// of a flood.
	s, _ := redact.Command(escape.Truncate(string(b), 2*MaxCommand))
	return escape.Truncate(s, MaxCommand)
}

// portableName: the characters of a user name (POSIX's portable set, and
// the @ of a realm's users); a name with others is no login.
func portableName(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@' || c == '$') {
			return false
		}
	}
	return true
}

// paren splits "(a) WORD (b)" into a, WORD, b; b keeps inner parentheses.
func paren(msg []byte) (user, word, detail []byte, ok bool) {
	if len(msg) < 2 || msg[0] != '(' {
		return nil, nil, nil, false
	}
	end := bytes.IndexByte(msg, ')')
	if end < 0 || end+2 > len(msg) || msg[end+1] != ' ' {
		return nil, nil, nil, false
	}
	user, rest := msg[1:end], msg[end+2:]
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return user, rest, nil, true
	}
	word, rest = rest[:sp], rest[sp+1:]
	if len(rest) >= 2 && rest[0] == '(' && rest[len(rest)-1] == ')' {
		rest = rest[1 : len(rest)-1]
	}
	return user, word, rest, true
}

var (
	pamOpen  = []byte("session opened for user ")
	pamClose = []byte("session closed for user ")
)

func cronLine(prog, msg []byte, ev *Event) bool {
	ev.Source = "cron"
	if prog[len(prog)-1] == 'D' {
		ev.Source = "cronie"
	}
	if bytes.HasPrefix(msg, []byte("pam_unix(cron")) {
		return pamLine(msg, ev)
	}
	user, word, detail, ok := paren(msg)
	if !ok {
		return false
	}
	switch string(word) {
	case "CMD":
		ev.Type, ev.User = TypeCronCmd, string(user)
		ev.JobPID, ev.Command = ev.PID, command(detail)
		// -L 8: "CMD ([P] cmd)", logged by the intermediate child.
		if jp, cmd, ok := bracketPID(detail); ok {
			ev.JobPID, ev.Command = jp, command(cmd)
		}
		return true
	case "END", "CMDEND":
		ev.Type, ev.User, ev.Command = TypeCronEnd, string(user), command(detail)
		if jp, cmd, ok := bracketPID(detail); ok {
			ev.JobPID, ev.Command = jp, command(cmd)
		}
		return true
	case "error":
		// "(CRON) error (grandchild #1234 failed with exit status 3)"
		const p = "grandchild #"
		if i := bytes.Index(detail, []byte(p)); i >= 0 {
			rest := detail[i+len(p):]
			sp := bytes.IndexByte(rest, ' ')
			if sp > 0 {
				if jp, err := strconv.Atoi(string(rest[:sp])); err == nil {
					ev.Type, ev.JobPID = TypeCronFailed, jp
					ev.Result = strings.TrimPrefix(string(rest[sp+1:]), "failed with ")
					return true
				}
			}
		}
		ev.Type, ev.Message = TypeCronNote, string(detail)
		return true
	case "info", "INFO", "MAIL", "CMDOUT":
		ev.Type, ev.User, ev.Message = TypeCronNote, string(user), string(word)+" "+string(detail)
		return true
	}
	return false
}

// bracketPID parses "[1234] command".
func bracketPID(b []byte) (int, []byte, bool) {
	if len(b) < 3 || b[0] != '[' {
		return 0, nil, false
	}
	end := bytes.IndexByte(b, ']')
	if end < 2 {
		return 0, nil, false
	}
	n, err := strconv.Atoi(string(b[1:end]))
	if err != nil {
		return 0, nil, false
	}
	return n, bytes.TrimLeft(b[end+1:], " "), true
}

// pamLine: "pam_unix(cron:session): session opened for user root(uid=0) by
// (uid=0)" (pam >= 1.4; older: "for user root by (uid=0)"), or "session
// closed for user root".
func pamLine(msg []byte, ev *Event) bool {
	var rest []byte
	if i := bytes.Index(msg, pamOpen); i >= 0 {
		ev.Type, rest = TypeSessionOpen, msg[i+len(pamOpen):]
	} else if i := bytes.Index(msg, pamClose); i >= 0 {
		ev.Type, rest = TypeSessionClose, msg[i+len(pamClose):]
	} else {
		return false
	}
	end := len(rest)
	for i, c := range rest {
		if c == '(' || c == ' ' {
			end = i
			break
		}
	}
	ev.User, ev.Source = string(rest[:end]), "pam"
	return true
}

func cronDaemon(msg []byte, ev *Event) bool {
	_, word, detail, ok := paren(msg)
	if !ok {
		return false
	}
	ev.Source = "cron"
	switch {
	case bytes.Contains(detail, []byte("Running @reboot jobs")):
		ev.Type, ev.Message = TypeBoot, "cron ran @reboot jobs"
		return true
	case bytes.HasPrefix(detail, []byte("pidfile fd")), string(word) == "STARTUP", bytes.Contains(detail, []byte("Skipping @reboot jobs")):
		ev.Type, ev.Message = TypeCronDaemon, string(word)+" "+string(detail)
		return true
	}
	return false
}

func systemdLine(msg []byte, ev *Event) bool {
	ev.Source = "systemd"
	switch {
	case bytes.HasPrefix(msg, []byte("Starting ")) && bytes.HasSuffix(msg, []byte("...")):
		ev.Type = TypeUnitStart
		ev.Unit, ev.Message = unitName(msg[len("Starting ") : len(msg)-3])
		return true
	case bytes.HasPrefix(msg, []byte("Started ")):
		// A oneshot says "Finished" when it is done; a unit that says
		// "Started" has started and keeps running: a service, not a job.
		ev.Type = TypeUnitStarted
		ev.Unit, ev.Message = unitName(bytes.TrimSuffix(msg[len("Started "):], []byte(".")))
		return true
	case bytes.HasPrefix(msg, []byte("Startup finished in ")):
		ev.Type, ev.Message = TypeStartupDone, string(msg)
		return true
	case bytes.HasPrefix(msg, []byte("Finished ")):
		ev.Type, ev.Result = TypeUnitEnd, "success"
		ev.Unit, ev.Message = unitName(bytes.TrimSuffix(msg[len("Finished "):], []byte(".")))
		return true
	case bytes.HasPrefix(msg, []byte("Failed to start ")):
		ev.Type, ev.Result = TypeUnitEnd, "failed"
		ev.Unit, ev.Message = unitName(bytes.TrimSuffix(msg[len("Failed to start "):], []byte(".")))
		return true
	}
	// "unit.service: ..." lines.
	colon := bytes.Index(msg, []byte(".service: "))
	if colon < 0 {
		return false
	}
	unit, rest := string(msg[:colon+len(".service")]), msg[colon+len(".service: "):]
	ev.Unit = unit
	switch {
	case bytes.HasPrefix(rest, []byte("Deactivated successfully")), bytes.HasPrefix(rest, []byte("Succeeded")):
		ev.Type, ev.Result = TypeUnitEnd, "success"
	case bytes.HasPrefix(rest, []byte("Failed with result '")):
		r := rest[len("Failed with result '"):]
		if q := bytes.IndexByte(r, '\''); q >= 0 {
			r = r[:q]
		}
		ev.Type, ev.Result = TypeUnitEnd, string(r)
	case bytes.HasPrefix(rest, []byte("Consumed ")):
		// "Consumed 1.234s CPU time." or "Consumed 1min 2.5s CPU time, ..."
		d := rest[len("Consumed "):]
		i := bytes.Index(d, []byte(" CPU time"))
		if i < 0 {
			return false
		}
		secs, ok := systemdSpan(string(d[:i]))
		if !ok {
			return false
		}
		ev.Type, ev.CPU = TypeUnitCPU, secs
	case bytes.Contains(rest, []byte("killed by the OOM killer")):
		ev.Type, ev.Result = TypeUnitEnd, "oom-kill"
	default:
		return false
	}
	return true
}

// unitName splits "x.service - Description" (systemd >= 248 with
// StatusUnitFormat=combined) into unit and description; a description-only
// form ("Rotate log files") has no unit.
func unitName(b []byte) (unit, desc string) {
	if i := bytes.Index(b, []byte(" - ")); i > 0 && bytes.IndexByte(b[:i], ' ') < 0 {
		return string(b[:i]), string(b[i+3:])
	}
	if bytes.IndexByte(b, ' ') < 0 && bytes.IndexByte(b, '.') > 0 {
		return string(b), ""
	}
	return "", string(b)
}

// systemdSpan parses systemd's "1min 2.345s", "123ms", "1h 2min 3s".
func systemdSpan(s string) (float64, bool) {
	var total float64
	for _, f := range strings.Fields(s) {
		i := 0
		for i < len(f) && (f[i] >= '0' && f[i] <= '9' || f[i] == '.') {
			i++
		}
		v, err := strconv.ParseFloat(f[:i], 64)
		if err != nil {
			return 0, false
		}
		switch f[i:] {
		case "us":
			total += v / 1e6
		case "ms":
			total += v / 1e3
		case "s":
			total += v
		case "min":
			total += v * 60
		case "h":
			total += v * 3600
		case "d":
			total += v * 86400
		default:
			return 0, false
		}
	}
	return total, true
}

// stripUptime drops the "[ 1234.567890] " prefix imklog leaves in.
func stripUptime(msg []byte) []byte {
	if len(msg) > 0 && msg[0] == '[' {
		if i := bytes.IndexByte(msg, ']'); i > 0 {
			return bytes.TrimLeft(msg[i+1:], " ")
		}
	}
	return msg
}

func kernelLine(msg []byte, ev *Event) bool {
	msg = stripUptime(msg)
	ev.Source = "kernel"
	switch {
	case bytes.HasPrefix(msg, []byte("Out of memory: Killed process ")), bytes.HasPrefix(msg, []byte("Memory cgroup out of memory: Killed process ")):
		// "Killed process 1234 (java) total-vm:..kB, anon-rss:..kB, ..."
		i := bytes.Index(msg, []byte("Killed process ")) + len("Killed process ")
		rest := msg[i:]
		sp := bytes.IndexByte(rest, ' ')
		if sp < 0 {
			return false
		}
		pid, err := strconv.Atoi(string(rest[:sp]))
		if err != nil {
			return false
		}
		ev.Type, ev.Victim = TypeOOMKill, pid
		if o, c := bytes.IndexByte(rest, '('), bytes.LastIndex(rest, []byte(") ")); o >= 0 && c > o {
			ev.Comm = string(rest[o+1 : c])
		}
		if j := bytes.Index(rest, []byte("anon-rss:")); j >= 0 {
			v := rest[j+len("anon-rss:"):]
			k := bytes.Index(v, []byte("kB"))
			if k > 0 {
				ev.RSSKB, _ = strconv.ParseInt(string(v[:k]), 10, 64)
			}
		}
		if bytes.HasPrefix(msg, []byte("Memory cgroup")) {
			ev.Memcg = "(memcg)"
		}
		ev.Message = string(msg)
		return true
	case bytes.HasPrefix(msg, []byte("oom-kill:")):
		// Summary with task_memcg=..., task=..., pid=...: key=value pairs.
		ev.Type = TypeOOMKill
		for _, kv := range bytes.Split(msg[len("oom-kill:"):], []byte(",")) {
			k, v, _ := bytes.Cut(kv, []byte("="))
			switch string(k) {
			case "task_memcg":
				ev.Memcg = string(v)
			case "task":
				ev.Comm = string(v)
			case "pid":
				ev.Victim, _ = strconv.Atoi(string(v))
			}
		}
		ev.Result, ev.Message = "summary", string(msg)
		return ev.Victim != 0
	case bytes.Contains(msg, []byte(" invoked oom-killer: ")):
		ev.Type, ev.Comm = TypeOOMInvoked, string(msg[:bytes.Index(msg, []byte(" invoked oom-killer: "))])
		ev.Message = string(msg)
		return true
	case bytes.HasPrefix(msg, []byte("INFO: task ")) && bytes.Index(msg, []byte(" blocked for more than ")) >= len("INFO: task "):
		t := msg[len("INFO: task "):bytes.Index(msg, []byte(" blocked for more than "))]
		if c := bytes.LastIndexByte(t, ':'); c > 0 {
			ev.Comm = string(t[:c])
			ev.Victim, _ = strconv.Atoi(string(t[c+1:]))
		}
		ev.Type, ev.Message = TypeHungTask, string(msg)
		return true
	case bytes.Contains(msg, []byte("BUG: soft lockup")):
		ev.Type, ev.Message = TypeSoftLockup, string(msg)
		if o, c := bytes.LastIndexByte(msg, '['), bytes.LastIndexByte(msg, ']'); o >= 0 && c > o {
			comm, pid, _ := bytes.Cut(msg[o+1:c], []byte(":"))
			ev.Comm = string(comm)
			ev.Victim, _ = strconv.Atoi(string(pid))
		}
		return true
	case bytes.HasPrefix(msg, []byte("rcu: INFO: ")) && bytes.Contains(msg, []byte("stall")):
		ev.Type, ev.Message = TypeRCUStall, string(msg)
		return true
	case bytes.HasPrefix(msg, []byte("Linux version ")):
		ev.Type, ev.Message = TypeBoot, string(msg)
		return true
	case bytes.HasPrefix(msg, []byte("ena ")):
		return enaLine(msg, ev)
	}
	return false
}

var enaTrouble = [][]byte{
	[]byte("Keep alive watchdog timeout"),
	[]byte("Found a Tx that wasn't completed on time"),
	[]byte("The number of lost tx completions is above the threshold"),
	[]byte("Trigger reset is on"),
	[]byte("Reset the device"),
	[]byte("Device reset completed successfully"),
	[]byte("Potential MSIX issue"),
}

// enaLine: "ena 0000:00:05.0 ens5: Keep alive watchdog timeout."
func enaLine(msg []byte, ev *Event) bool {
	for _, t := range enaTrouble {
		if bytes.Contains(msg, t) {
			f := bytes.Fields(msg)
			if len(f) >= 3 && bytes.HasSuffix(f[2], []byte(":")) {
				ev.Iface = string(bytes.TrimSuffix(f[2], []byte(":")))
			}
			ev.Type, ev.Message = TypeENA, string(msg)
			return true
		}
	}
	return false
}

func rsyslogLine(msg []byte, ev *Event) bool {
	ev.Source = "rsyslog"
	switch {
	case bytes.Contains(msg, []byte("messages lost due to rate-limiting")):
		ev.Type, ev.Message = TypeLinesLost, string(msg)
		ev.Count = leadingInt(msg[bytes.LastIndex(msg, []byte(": "))+1:])
		return true
	}
	return false
}

func journaldLine(msg []byte, ev *Event) bool {
	ev.Source = "journald"
	switch {
	case bytes.HasPrefix(msg, []byte("Suppressed ")):
		ev.Type, ev.Count, ev.Message = TypeLinesLost, leadingInt(msg[len("Suppressed "):]), string(msg)
		return true
	case bytes.HasPrefix(msg, []byte("Forwarding to syslog missed ")):
		ev.Type, ev.Count, ev.Message = TypeLinesLost, leadingInt(msg[len("Forwarding to syslog missed "):]), string(msg)
		return true
	}
	return false
}

func leadingInt(b []byte) int64 {
	b = bytes.TrimLeft(b, " ")
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	n, _ := strconv.ParseInt(string(b[:i]), 10, 64)
	return n
}
