package procinfo

import (
	"regexp"
	"strings"
)

// secretKey matches names whose values are secrets: --password, -p is
// too short to tell (left alone), AWS_SECRET_ACCESS_KEY, api_key, token,
// client-secret, passwd, credentials, authorization.
var secretKey = regexp.MustCompile(`(?i)(pass(word|wd)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth(orization)?|session[-_]?key)s?$`)

// userinfo matches scheme://user:password@ in a URL.
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]*:)[^@/\s]+@`)

const hidden = "***"

// Redact hides the values of secret-looking arguments: --name=value and
// NAME=value when the name says secret, the argument after a bare
// --password-style flag, and the password of a URL's user info. It
// returns the arguments with values replaced and how many were.
func Redact(args []string) ([]string, int) {
	out := make([]string, len(args))
	n := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if u := userinfo.ReplaceAllString(a, "${1}"+hidden+"@"); u != a {
			a = u
			n++
		}
		if k, v, ok := strings.Cut(a, "="); ok && v != "" && v != hidden && secretKey.MatchString(strings.TrimLeft(k, "-")) {
			out[i] = k + "=" + hidden
			n++
			continue
		}
		out[i] = a
		// --password VALUE: the flag alone, its value next.
		if strings.HasPrefix(a, "-") && !strings.Contains(a, "=") && len(strings.TrimLeft(a, "-")) > 2 &&
			secretKey.MatchString(strings.TrimLeft(a, "-")) && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			out[i] = hidden
			n++
		}
	}
	return out, n
}
