package redact

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpus reads a testdata file: one command line per line, # comments.
func corpus(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// marked splits a corpus line into the command and its marked secrets.
func marked(l string) (string, []string) {
	var secrets []string
	var b strings.Builder
	for {
		i := strings.Index(l, "[[")
		if i < 0 {
			b.WriteString(l)
			return b.String(), secrets
		}
		j := strings.Index(l[i:], "]]")
		b.WriteString(l[:i])
		secrets = append(secrets, l[i+2:i+j])
		b.WriteString(l[i+2 : i+j])
		l = l[i+j+2:]
	}
}

// argv is a command line as the kernel would give it to the first
// program: its words, quotes removed.
func argv(cmd string) []string {
	cmds := splitCommands(cmd)
	var out []string
	for _, c := range cmds {
		for _, t := range c {
			out = append(out, t.text)
		}
		break
	}
	return out
}

// Every secret of the corpus is hidden, as a cron command and as the
// process's argv (when the line is one simple command), and the recall is
// what the README says.
func TestRecallOnTheCorpus(t *testing.T) {
	lines := corpus(t, "secrets.txt")
	if len(lines) < 60 {
		t.Fatalf("corpus of %d forms; the issue asks for at least 60", len(lines))
	}
	missed := 0
	for _, l := range lines {
		cmd, secrets := marked(l)
		got, n := Command(cmd)
		leak := ""
		for _, s := range secrets {
			if strings.Contains(got, s) {
				leak = s
			}
		}
		if n == 0 || leak != "" {
			missed++
			t.Errorf("Command(%q) = %q: %q left", cmd, got, leak)
			continue
		}
		if len(splitCommands(cmd)) == 1 {
			a, _ := Args(argv(cmd))
			joined := strings.Join(a, "\x00")
			for _, s := range secrets {
				if strings.Contains(joined, s) {
					t.Errorf("Args(%q) = %q: %q left", argv(cmd), a, s)
				}
			}
		}
	}
	t.Logf("recall: %d of %d forms fully redacted (%.1f%%)", len(lines)-missed, len(lines), 100*float64(len(lines)-missed)/float64(len(lines)))
}

// Ordinary command lines are left alone: every unit's and cron's command
// and every process's command line of a Debian system and of the VM
// guest. The false-positive rate is what the README says.
func TestFalsePositivesOnOrdinaryCommands(t *testing.T) {
	total, changed := falsePositives(t, "ordinary-debian12.txt", "ordinary-vm-guest.txt")
	if changed > 0 {
		t.Errorf("%d of %d ordinary command lines changed", changed, total)
	}
}

// The lines of a Debian system's shell scripts (what cron.daily and the
// timers run, help texts and shell syntax in between) are a harder test:
// a value assigned to a secret-looking name is hidden even when it is
// not a secret. The rate stays under 0.1%.
func TestFalsePositivesOnScriptLines(t *testing.T) {
	total, changed := falsePositives(t, "ordinary-debian12-scripts.txt")
	if float64(changed) > 0.001*float64(total) {
		t.Errorf("%d of %d script lines changed: over 0.1%%", changed, total)
	}
}

func falsePositives(t *testing.T, names ...string) (total, changed int) {
	for _, name := range names {
		for _, l := range corpus(t, name) {
			total++
			if got, n := Command(l); n > 0 {
				changed++
				t.Logf("%s: Command(%q) = %q", name, l, got)
			}
		}
	}
	t.Logf("false positives: %d of %d lines changed (%.2f%%)", changed, total, 100*float64(changed)/float64(max(total, 1)))
	return total, changed
}

// Cases that must stay as they are, and edge cases of the shell reading.
func TestLeftAlone(t *testing.T) {
	for _, s := range []string{
		"mysql -p db",               // -p alone prompts
		"ssh -p 2222 host",          // -p is a port here
		"app --bypass=1 --passes 3", // not the word pass
		"systemd-tty-ask-password-agent --watch --console",
		"curl https://example.com/path?q=1&page=2",
		"grep -r token .",                // a word, not a flag
		"app --author=bob --authority x", // auth is a word of its own
		"tar czf /backup/$(date +%F).tgz /etc",
		"echo 'unbalanced",
	} {
		if got, n := Command(s); n != 0 {
			t.Errorf("Command(%q) = %q, %d hidden; want it unchanged", s, got, n)
		}
	}
}

func TestTextHidesPairsAndTokens(t *testing.T) {
	for in, want := range map[string]string{
		"login failed for db password=hunter2 from 10.0.0.1":     "login failed for db password=*** from 10.0.0.1",
		`retrying with token="abc def" now`:                      `retrying with token="***" now`,
		"GET /cb?code=1&access_token=S3cret HTTP/1.1":            "GET /cb?code=1&access_token=*** HTTP/1.1",
		"using key AKIAIOSFODNN7EXAMPLE":                         "using key ***",
		"Out of memory: Killed process 4242 (java) total-vm:1kB": "Out of memory: Killed process 4242 (java) total-vm:1kB",
	} {
		if got, _ := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCommand(f *testing.F) {
	for _, l := range []string{"bash -c \"export A=1 PASSWORD=x; y\"", "a 'b\\\"c", "curl -u a:b https://u:p@h", "x\"", "'", "$(a --token=b)"} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, n := Command(s)
		if n < 0 || n > len(s)+1 || len(got) > len(s)+3*n {
			t.Fatalf("Command(%q) = %q, %d", s, got, n)
		}
		if g, _ := Text(s); len(g) > len(s)*3+3 {
			t.Fatalf("Text(%q) grew to %q", s, g)
		}
	})
}

// The held-out forms measure the rules on what they were not written for;
// the figure is reported, not required (the README gives it).
func TestRecallOnHeldOutForms(t *testing.T) {
	lines := corpus(t, "secrets-heldout.txt")
	missed := 0
	for _, l := range lines {
		cmd, secrets := marked(l)
		got, _ := Command(cmd)
		for _, s := range secrets {
			if strings.Contains(got, s) {
				missed++
				t.Logf("missed: %q -> %q", cmd, got)
				break
			}
		}
	}
	t.Logf("held-out recall: %d of %d forms fully redacted (%.1f%%)", len(lines)-missed, len(lines), 100*float64(len(lines)-missed)/float64(len(lines)))
}

// The literal prefilter against the regexps alone, in the same run, on
// the ordinary lines a flood is made of and on the secrets corpus:
//
//	go test -run '^$' -bench Redact ./internal/redact/
func BenchmarkRedact(b *testing.B) {
	ordinary := corpus(b, "ordinary-debian12-scripts.txt")
	secrets := corpus(b, "secrets.txt")
	for _, c := range []struct {
		name  string
		lines []string
	}{{"ordinary", ordinary}, {"secrets", secrets}} {
		for _, pf := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/prefilter=%v", c.name, pf), func(b *testing.B) {
				prefilter = pf
				defer func() { prefilter = true }()
				for i := 0; i < b.N; i++ {
					Text(c.lines[i%len(c.lines)])
				}
			})
		}
	}
}

// The prefilter only skips work: with and without it, the same text is
// hidden.
func FuzzPrefilterChangesNothing(f *testing.F) {
	for _, l := range corpus(f, "secrets.txt") {
		f.Add(l)
	}
	f.Add("Authorization: Bearer abc")
	f.Fuzz(func(t *testing.T, s string) {
		with, n1 := Text(s)
		prefilter = false
		without, n2 := Text(s)
		cmdWithout, c2 := Command(s)
		prefilter = true
		cmdWith, c1 := Command(s)
		if with != without || n1 != n2 || cmdWith != cmdWithout || c1 != c2 {
			t.Fatalf("prefilter changed the result of %q: %q (%d) vs %q (%d); %q vs %q", s, with, n1, without, n2, cmdWith, cmdWithout)
		}
	})
}
