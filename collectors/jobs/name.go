package jobs

import (
	"path"
	"regexp"
	"strings"
)

// NameRule maps commands matching Pattern to Name (config overrides).
type NameRule struct {
	Pattern *regexp.Regexp
	Name    string
}

// Namer gives a job the name people recognise.
type Namer struct{ Rules []NameRule }

// Name returns the first matching override, else JobName(command).
func (n *Namer) Name(command string) string {
	for _, r := range n.Rules {
		if r.Pattern.MatchString(command) {
			return r.Name
		}
	}
	return JobName(command)
}

// guards are commands that only test whether the real work should run.
var guards = map[string]bool{
	"test": true, "[": true, "[[": true, "command": true, "cd": true, "true": true, "false": true,
	"exit": true, "type": true, "which": true, "if": true, "then": true, "else": true, "elif": true,
	"fi": true, "do": true, "done": true, "!": true, "echo": true, ":": true,
}

// wrappers run another command; the name is that command's.
var wrappers = map[string]int{ // value: how many following non-flag args to skip
	"nice": 0, "ionice": 0, "chronic": 0, "nohup": 0, "sudo": 0, "env": 0, "timeout": 0, "flock": 1, "systemd-cat": 0,
}

// keywords start a shell clause; the command follows them.
var keywords = map[string]bool{"if": true, "then": true, "else": true, "elif": true, "do": true, "!": true, "while": true, "until": true}

func isNumber(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return s != ""
}

var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "python": true, "python3": true, "perl": true, "ruby": true, "php": true}

// JobName is the documented naming rule:
//  1. split the command at shell operators (&& || ; | ( ) and newlines);
//  2. drop guard commands (test, [, command -v, cd, if/then/fi, echo ...),
//     environment assignments and redirections;
//  3. in the first remaining command skip wrappers (nice, ionice, timeout N,
//     flock FILE, sudo, env, nohup, chronic) and, for an interpreter (sh,
//     bash, python ...), take the script it runs;
//  4. the name is that program's base name; for run-parts it is the base
//     name of the directory ("cron.daily").
//
// "command -v debian-sa1 > /dev/null && debian-sa1 1 1" -> "debian-sa1";
// "test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )" -> "cron.daily".
func JobName(command string) string {
	for _, seg := range splitShell(command) {
		words := cleanWords(strings.Fields(seg))
		for len(words) > 0 && keywords[words[0]] {
			words = words[1:] // "then /usr/lib/php/sessionclean"
		}
		if len(words) == 0 || guards[words[0]] {
			continue
		}
		for len(words) > 0 {
			skip, isWrapper := wrappers[path.Base(words[0])]
			if !isWrapper {
				break
			}
			words = words[1:]
			for len(words) > 0 && (strings.HasPrefix(words[0], "-") || isNumber(words[0])) {
				words = words[1:] // "-n 10", "-c3", "300"
			}
			if len(words) > skip {
				words = words[skip:]
			} else {
				words = nil
			}
		}
		if len(words) == 0 || guards[words[0]] {
			continue
		}
		prog := path.Base(words[0])
		args := words[1:]
		if prog == "run-parts" {
			for i := len(args) - 1; i >= 0; i-- {
				if !strings.HasPrefix(args[i], "-") {
					return path.Base(args[i])
				}
			}
		}
		if shells[prog] {
			for _, a := range args {
				if a == "-c" {
					break // inline script: the interpreter is the best name
				}
				if !strings.HasPrefix(a, "-") {
					return path.Base(a)
				}
			}
		}
		return prog
	}
	if f := strings.Fields(command); len(f) > 0 {
		return path.Base(f[0])
	}
	return "unknown"
}

func splitShell(s string) []string {
	return strings.FieldsFunc(splitter.Replace(s), func(r rune) bool {
		return r == 0 || r == ';' || r == '|' || r == '(' || r == ')' || r == '\n' || r == '&'
	})
}

// cleanWords drops VAR=value prefixes and redirections with their targets.
func cleanWords(w []string) []string {
	out := w[:0:0]
	for i := 0; i < len(w); i++ {
		x := w[i]
		if len(out) == 0 && strings.Contains(x, "=") && !strings.HasPrefix(x, "=") && !strings.ContainsAny(x[:strings.Index(x, "=")], "/-.") {
			continue
		}
		if strings.ContainsAny(x[:1], "<>") || (len(x) > 1 && x[0] >= '0' && x[0] <= '9' && strings.ContainsAny(x[1:2], "<>")) {
			if x == ">" || x == ">>" || x == "<" || x == "2>" || x == "1>" || x == "2>>" {
				i++ // the target is the next word
			}
			continue
		}
		out = append(out, strings.Trim(x, `"'`))
	}
	return out
}

// splitter is built once: building it per command was the tracker's
// largest cost under a flood of CMD lines.
var splitter = strings.NewReplacer("&&", "\x00", "||", "\x00", "#012", "\x00")
