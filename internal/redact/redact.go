// Package redact hides secrets in outside text before ec2diag keeps or
// ships it: command lines (argv), the commands cron and systemd run
// (shell strings, parsed as a shell would, so `bash -c '...'`, `env A=B
// cmd` and `export A=B; ...` are looked into), and log messages.
//
// What is hidden, each value replaced by "***":
//   - NAME=value, --name=value, --name value and -name value where the
//     name says secret (password, passwd, passphrase, pwd, secret, token,
//     api key, access/private/secret/session key, credentials, auth,
//     authorization, cookie, signature), in argv, in shell assignments and
//     in URL query strings;
//   - the password of a URL's user info (scheme://user:PASSWORD@host),
//     and a lone user info that is a token;
//   - the values of HTTP authentication headers (Authorization,
//     Proxy-Authorization, Cookie, X-Api-Key, X-Auth-Token, Private-Token,
//     X-Amz-Security-Token);
//   - well-known token formats anywhere: AWS access key ids, GitHub,
//     GitLab, Slack, Stripe, npm, Google API keys, JWTs and PEM private
//     keys;
//   - the password arguments of common clients: the mysql family's -pVALUE,
//     sshpass -p, redis-cli -a, openssl pass:VALUE and -k, the ldap tools'
//     -w, curl/wget -u user:PASS, smbclient -U user%PASS, sqlcmd -P,
//     mongo/mongosh -p, docker/podman login -p, htpasswd -b's password,
//     and `aws configure set`/`git config` of a secret-named key.
//
// Redaction errs on the side of hiding: a value that only looks like a
// secret is hidden too. It never makes text longer than "***" per value
// and counts what it hid.
package redact

import (
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Mask replaces a hidden value.
const Mask = "***"

// secretName matches names whose values are secrets. The word must start
// the name or follow a separator ("db-password", "AWS_SECRET_ACCESS_KEY"),
// so that "bypass" or "passes" are not secrets; a few well-known variables
// glue the word on (PGPASSWORD).
var secretName = regexp.MustCompile(`(?i)(^|[-_.])(pass(word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|secret[-_]?key|private[-_]?key|session[-_]?key|credentials?|auth|authorization|cookie|signature|bearer)s?$|^(pgpassword|mysql_pwd|rediscli_auth|sshpass|vault_token|consul_http_token|nomad_token|(src|dest)?(store|key)pass)$`)

// camelSecret matches camelCase names (keyStorePassword, clientSecret).
var camelSecret = regexp.MustCompile(`[a-z0-9](Password|Passwd|Passphrase|Secret|Token|ApiKey|AccessKey|SecretKey|PrivateKey|Credentials?)s?$`)

// IsSecretName reports whether a flag, variable or parameter name says its
// value is secret.
func IsSecretName(name string) bool {
	name = strings.TrimLeft(name, "-")
	return name != "" && len(name) <= 128 && (secretName.MatchString(name) || camelSecret.MatchString(name))
}

// patterns are redacted wherever they appear; group 1, when present, is
// the part hidden, else the whole match. Each comes with the literals one
// of which a match must contain: most text holds none of them, and a
// substring search is far cheaper than the regexp (a flood of log lines
// is redacted line by line).
var patterns = []struct {
	re   *regexp.Regexp
	need []string // case-sensitive; nil: always run
	fold bool     // need is matched case-insensitively (lower-case literals)
}{
	// URL user info: scheme://user:PASSWORD@ (up to the last @ of the
	// token: an unencoded @ or / in a password is still the password).
	{re: regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@'"]*:([^\s'"]*)@[^\s@'"/]`), need: []string{"://"}},
	// A lone user info that is a token: https://TOKEN@host.
	{re: regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://([A-Za-z0-9_-]{20,})@`), need: []string{"://"}},
	// HTTP authentication headers, to the end of the quoted value or line.
	{re: regexp.MustCompile(`(?i)\b(?:proxy-authorization|authorization|cookie|x-api-key|api-key|x-auth-token|private-token|x-amz-security-token|x-vault-token)\s*:\s*([^'"\n\r]+)`),
		need: []string{"authorization", "cookie", "api-key", "-token"}, fold: true},
	// Well-known token formats.
	{re: regexp.MustCompile(`\b((?:AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[0-9A-Z]{16})\b`), need: []string{"AKIA", "ASIA", "AIDA", "AROA", "ABIA", "ACCA"}},
	{re: regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{30,})`), need: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}},
	{re: regexp.MustCompile(`\b(github_pat_[A-Za-z0-9_]{22,})`), need: []string{"github_pat_"}},
	{re: regexp.MustCompile(`\b(glpat-[A-Za-z0-9_-]{20,})`), need: []string{"glpat-"}},
	{re: regexp.MustCompile(`\b(xox[abposr]-[A-Za-z0-9-]{10,})`), need: []string{"xox"}},
	{re: regexp.MustCompile(`hooks\.slack\.com/services/([A-Za-z0-9/]+)`), need: []string{"hooks.slack.com/services/"}},
	{re: regexp.MustCompile(`\b((?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,})`), need: []string{"_live_", "_test_"}},
	{re: regexp.MustCompile(`\b(npm_[A-Za-z0-9]{36})`), need: []string{"npm_"}},
	{re: regexp.MustCompile(`\b(AIza[0-9A-Za-z_-]{35})`), need: []string{"AIza"}},
	{re: regexp.MustCompile(`\b(sk-[A-Za-z0-9_-]{32,})`), need: []string{"sk-"}},
	{re: regexp.MustCompile(`\b(eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)`), need: []string{"eyJ"}},
	{re: regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----([\s\S]*?)(?:-----END [A-Z ]*PRIVATE KEY-----|$)`), need: []string{"-----BEGIN "}},
	// openssl's pass:VALUE.
	{re: regexp.MustCompile(`\bpass:([^\s'"]+)`), need: []string{"pass:"}},
}

// prefilter turns the literal checks on; the benchmark turns them off for
// its baseline.
var prefilter = true

// mayMatch reports whether s holds one of the literals a match needs.
// lower is s in lower case, made on first use.
func mayMatch(s string, need []string, fold bool, lower *string) bool {
	if !prefilter || need == nil {
		return true
	}
	if fold {
		if *lower == "" {
			*lower = strings.ToLower(s)
		}
		s = *lower
	}
	for _, n := range need {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// span is a byte range of the text to hide.
type span struct{ start, end int }

// Text hides secrets in free text (a log message): the patterns, and
// NAME=value pairs with a secret name.
func Text(s string) (string, int) {
	var sp []span
	sp = patternSpans(s, 0, sp)
	sp = kvSpans(s, 0, sp)
	return apply(s, sp)
}

// Command hides secrets in a shell command line (what cron runs, what
// `bash -c` is given).
func Command(s string) (string, int) {
	sp := commandSpans(s, 0, nil, 0)
	return apply(s, sp)
}

// Args hides secrets in a process's arguments (argv, as /proc/PID/cmdline
// has them). A shell's -c script is read as a command line.
func Args(argv []string) ([]string, int) {
	out := make([]string, len(argv))
	total := 0
	spans := argSpans(argv, 0)
	for i, a := range argv {
		var n int
		out[i], n = apply(a, spans[i])
		total += n
	}
	return out, total
}

// maxDepth bounds how deep shell strings nest (bash -c "sh -c '...'").
const maxDepth = 4

// argSpans finds what to hide in each element of argv.
func argSpans(argv []string, depth int) [][]span {
	spans := make([][]span, len(argv))
	toks := make([]token, len(argv))
	for i, a := range argv {
		toks[i] = token{text: a, start: 0, end: len(a), raw: a, whole: true}
	}
	for i := range argv {
		spans[i] = patternSpans(argv[i], 0, spans[i])
	}
	simple(toks, func(i int, s span) { spans[i] = append(spans[i], s) }, depth)
	// A shell's script: bash -c 'SCRIPT', sh -ec "SCRIPT".
	if len(argv) > 0 && isShell(argv[0]) && depth < maxDepth {
		for i := 1; i < len(argv)-1; i++ {
			if a := argv[i]; strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a, "c") {
				spans[i+1] = commandSpans(argv[i+1], 0, spans[i+1], depth+1)
				break
			}
		}
	}
	return spans
}

// commandSpans parses s as a shell command line and finds what to hide.
func commandSpans(s string, base int, sp []span, depth int) []span {
	sp = patternSpans(s, base, sp)
	cmds := splitCommands(s)
	// echo SECRET | docker login --password-stdin: what a pipeline feeds
	// a program reading its password from stdin is the password.
	stdinSecret := false
	for _, cmd := range cmds {
		for _, t := range cmd {
			stdinSecret = stdinSecret || t.text == "--password-stdin" || t.text == "--passphrase-fd" || t.text == "--passphrase-stdin"
		}
	}
	for _, cmd := range cmds {
		if f := firstWord(cmd); stdinSecret && f >= 0 && (cmd[f].text == "echo" || cmd[f].text == "printf") {
			for _, t := range cmd[f+1:] {
				if !strings.HasPrefix(t.text, "-") {
					sp = append(sp, t.mapSpan(span{0, len(t.text)}, base))
				}
			}
		}
	}
	for _, cmd := range cmds {
		toks := cmd
		add := func(i int, x span) { sp = append(sp, toks[i].mapSpan(x, base)) }
		simple(toks, add, depth)
		// A shell inside: bash -c "...", or the text of an eval.
		if len(toks) > 0 && depth < maxDepth {
			first := firstWord(toks)
			if first >= 0 && isShell(toks[first].text) {
				for i := first + 1; i < len(toks)-1; i++ {
					if t := toks[i].text; strings.HasPrefix(t, "-") && !strings.HasPrefix(t, "--") && strings.Contains(t, "c") {
						n := toks[i+1]
						if n.whole {
							sp = commandSpans(n.text, base+n.off, sp, depth+1)
						} else {
							sp = append(sp, secretsIn(n, base, depth)...)
						}
						break
					}
				}
			}
		}
	}
	return sp
}

// secretsIn handles a token whose text is not a contiguous part of the
// source (quotes and escapes inside it): if anything in its text is
// secret, the whole token is hidden.
func secretsIn(t token, base, depth int) []span {
	if _, n := Command(t.text); n > 0 {
		return []span{{base + t.start, base + t.end}}
	}
	return nil
}

// simple applies the rules of one simple command to its tokens:
// assignments before the program, the program's own password arguments,
// and secret-named flags and parameters anywhere.
func simple(toks []token, add func(int, span), depth int) {
	first := firstWord(toks)
	// Assignments (A=1 PASSWORD=x ./run, export, env, declare) and
	// NAME=value pairs inside a word (a URL's query string, -Dkey=value,
	// --extra-vars 'db_password=x').
	for i := range toks {
		t := toks[i].text
		if k, v, ok := strings.Cut(t, "="); ok && validVar(k) && literal(v) && IsSecretName(k) {
			add(i, span{len(k) + 1, len(t)})
			continue
		}
		for _, x := range kvSpans(t, 0, nil) {
			if literal(t[x.start:x.end]) {
				add(i, x)
			}
		}
	}
	for i := range toks {
		t := toks[i].text
		if !strings.HasPrefix(t, "-") || len(t) < 2 {
			continue
		}
		name, val, eq := strings.Cut(t, "=")
		if !IsSecretName(name) {
			continue
		}
		switch {
		case eq && val != "":
			if !validVar(name) && literal(val) { // NAME=value was done above
				add(i, span{len(name) + 1, len(t)})
			}
		case i+1 < len(toks) && !strings.HasPrefix(toks[i+1].text, "-") && literal(toks[i+1].text):
			// --password VALUE, and --password= VALUE (the value slipped
			// to the next argument).
			add(i+1, span{0, len(toks[i+1].text)})
		}
	}
	if first < 0 {
		return
	}
	prog := filepath.Base(toks[first].text)
	args := toks[first+1:]
	at := func(j int, s span) { add(first+1+j, s) }
	clientArgs(prog, args, at)
}

// clientArgs hides the password arguments of well-known clients.
func clientArgs(prog string, args []token, add func(int, span)) {
	next := func(j int) {
		if j+1 < len(args) {
			add(j+1, span{0, len(args[j+1].text)})
		}
	}
	for j := 0; j < len(args); j++ {
		a := args[j].text
		switch {
		case mysqlFamily(prog) && strings.HasPrefix(a, "-p") && len(a) > 2 && !strings.HasPrefix(a, "--"):
			add(j, span{2, len(a)}) // -pVALUE; a bare -p prompts
		case (prog == "sshpass" || prog == "sqlcmd" || prog == "mongo" || prog == "mongosh" || prog == "mongodump" || prog == "mongorestore" || isLogin(prog, args, j)) && (a == "-p" || a == "-P"):
			if prog != "mongo" && prog != "mongosh" && prog != "mongodump" && prog != "mongorestore" || a == "-p" {
				next(j)
			}
		case prog == "sshpass" && strings.HasPrefix(a, "-p") && len(a) > 2:
			add(j, span{2, len(a)})
		case prog == "redis-cli" && a == "-a",
			(prog == "zip" || prog == "unzip" || prog == "zipcloak") && a == "-P",
			prog == "ssh-keygen" && (a == "-N" || a == "-P"),
			prog == "az" && a == "-p":
			next(j)
		case (prog == "7z" || prog == "7za" || prog == "7zr") && strings.HasPrefix(a, "-p") && len(a) > 2:
			add(j, span{2, len(a)})
		case prog == "rabbitmqctl" && (a == "add_user" || a == "change_password") && j+2 < len(args):
			add(j+2, span{0, len(args[j+2].text)})
		case strings.HasPrefix(prog, "ldap") && a == "-w":
			next(j)
		case prog == "openssl" && a == "-k":
			next(j)
		case (prog == "curl" || prog == "wget") && (a == "-u" || a == "--user" || a == "-U" || a == "--proxy-user"):
			if j+1 < len(args) {
				if i := strings.IndexByte(args[j+1].text, ':'); i >= 0 {
					add(j+1, span{i + 1, len(args[j+1].text)})
				}
			}
		case (prog == "curl" || prog == "wget") && (strings.HasPrefix(a, "--user=") || strings.HasPrefix(a, "-u") && len(a) > 2):
			if i := strings.IndexByte(a, ':'); i >= 0 {
				add(j, span{i + 1, len(a)})
			}
		case prog == "smbclient" && (a == "-U" || a == "--user"):
			if j+1 < len(args) {
				if i := strings.IndexByte(args[j+1].text, '%'); i >= 0 {
					add(j+1, span{i + 1, len(args[j+1].text)})
				}
			}
		case prog == "htpasswd" && strings.HasPrefix(a, "-") && strings.Contains(a, "b"):
			// htpasswd -b[c] FILE USER PASSWORD: the last of the three.
			if j+3 < len(args)+0 && j+3 <= len(args)-1 {
				add(j+3, span{0, len(args[j+3].text)})
			}
		case prog == "aws" && a == "set" || prog == "git" && a == "config":
			// set NAME VALUE, options first: git config --global github.token VALUE.
			k := j + 1
			for k < len(args) && strings.HasPrefix(args[k].text, "-") {
				k++
			}
			if k+1 < len(args) && IsSecretName(lastWord(args[k].text)) {
				add(k+1, span{0, len(args[k+1].text)})
			}
		}
	}
}

func isLogin(prog string, args []token, j int) bool {
	if prog != "docker" && prog != "podman" && prog != "nerdctl" && prog != "helm" {
		return false
	}
	for k := 0; k < j; k++ {
		if args[k].text == "login" || args[k].text == "add" {
			return true
		}
	}
	return false
}

func lastWord(s string) string {
	if i := strings.LastIndexAny(s, "."); i >= 0 {
		return s[i+1:]
	}
	return s
}

func mysqlFamily(prog string) bool {
	return strings.HasPrefix(prog, "mysql") || strings.HasPrefix(prog, "mariadb")
}

func isShell(arg0 string) bool {
	switch filepath.Base(arg0) {
	case "sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "su":
		return true
	}
	return false
}

// wrappers run the command that follows them.
var wrappers = map[string]bool{"env": true, "sudo": true, "exec": true, "nohup": true, "nice": true, "ionice": true, "timeout": true,
	"flock": true, "chronic": true, "time": true, "command": true, "builtin": true, "export": true, "declare": true, "local": true, "readonly": true}

// firstWord is the index of the program a simple command runs: past
// assignments, wrappers and their options; -1 when there is none.
func firstWord(toks []token) int {
	for i := 0; i < len(toks); i++ {
		t := toks[i].text
		if k, _, ok := strings.Cut(t, "="); ok && validVar(k) {
			continue
		}
		if wrappers[filepath.Base(t)] {
			// Skip the wrapper's options and a number (timeout 5, nice -n 5).
			for i+1 < len(toks) && (strings.HasPrefix(toks[i+1].text, "-") || isNumber(toks[i+1].text)) {
				i++
			}
			continue
		}
		return i
	}
	return -1
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == 's' || c == 'm') {
			return false
		}
	}
	return s[0] >= '0' && s[0] <= '9'
}

// literal reports whether v may hold a secret as written: not empty, not
// a shell expansion ($VAR, ${...}, $(...): the secret is elsewhere) and
// not a word of shell syntax (] ]] } then).
func literal(v string) bool {
	if v == "" || v[0] == '$' {
		return false
	}
	switch v {
	case "]", "]]", "}", ")", "then", "do", "fi", "done", "esac", "-", "--":
		return false
	}
	return true
}

func validVar(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// patternSpans finds the patterns in s.
func patternSpans(s string, base int, sp []span) []span {
	var lower string
	for _, p := range patterns {
		if !mayMatch(s, p.need, p.fold, &lower) {
			continue
		}
		for _, m := range p.re.FindAllStringSubmatchIndex(s, -1) {
			a, b := m[0], m[1]
			if len(m) >= 4 && m[2] >= 0 {
				a, b = m[2], m[3]
			}
			if b > a {
				sp = append(sp, span{base + a, base + b})
			}
		}
	}
	return sp
}

// kvSpans finds NAME=value and NAME: value pairs with a secret name in
// free text (and in query strings: ?user=bob&api_key=VALUE).
var kv = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.-]{0,127})\s*=\s*("[^"]*"|'[^']*'|[^\s&;,'"]+)`)

func kvSpans(s string, base int, sp []span) []span {
	if prefilter && !strings.ContainsAny(s, "=") {
		return sp
	}
	for _, m := range kv.FindAllStringSubmatchIndex(s, -1) {
		if IsSecretName(s[m[2]:m[3]]) {
			a, b := m[4], m[5]
			if b-a >= 2 && (s[a] == '"' || s[a] == '\'') && s[b-1] == s[a] {
				a, b = a+1, b-1
			}
			if b > a {
				sp = append(sp, span{base + a, base + b})
			}
		}
	}
	return sp
}

// apply replaces the spans (merged where they overlap) with Mask.
func apply(s string, sp []span) (string, int) {
	if len(sp) == 0 {
		return s, 0
	}
	sort.Slice(sp, func(i, j int) bool { return sp[i].start < sp[j].start })
	var b strings.Builder
	last, n := 0, 0
	for i := 0; i < len(sp); i++ {
		cur := sp[i]
		cur.start, cur.end = max(cur.start, 0), min(cur.end, len(s))
		if cur.start < last {
			cur.start = last
		}
		for i+1 < len(sp) && sp[i+1].start <= cur.end {
			i++
			cur.end = max(cur.end, min(sp[i].end, len(s)))
		}
		if cur.end <= cur.start {
			continue
		}
		if s[cur.start:cur.end] == Mask {
			b.WriteString(s[last:cur.end])
			last = cur.end
			continue
		}
		b.WriteString(s[last:cur.start])
		b.WriteString(Mask)
		last = cur.end
		n++
	}
	b.WriteString(s[last:])
	return b.String(), n
}
