// Package archtest holds the tests that keep the architecture as the
// README draws it: which room may import which, and that the clock and
// the host root are made in one place each.
package archtest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const mod = "github.com/ec2diag/ec2diag/"

type pkg struct {
	ImportPath string
	Standard   bool
	Deps       []string
}

// deps lists the packages pattern matches, each with everything it links.
func deps(t *testing.T, pattern string) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Standard,Deps", pattern)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	var ps []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func root(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for !exists(filepath.Join(dir, "go.mod")) {
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
	return dir
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// std reports whether an import path is the standard library's (no dot
// in its first element).
func std(path string) bool { return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") }

// The rooms' boundaries. A rule names the packages it governs and the
// imports they must not link (prefixes), or that they may link only the
// standard library plus a few.
func TestImportBoundaries(t *testing.T) {
	aws := "github.com/aws/aws-sdk-go-v2/service/"
	rules := []struct {
		pattern string
		why     string
		banned  []string
		onlyStd []string // when set: standard library and these only
	}{
		{pattern: "./collectors/...", why: "a producer does not write storage, run the agent or call AWS",
			banned: []string{mod + "internal/evidence/store", mod + "internal/evidence/console", mod + "agent", mod + "internal/sink/", aws}},
		{pattern: "./collectors", why: "the contract stays independent of everything it connects",
			onlyStd: []string{mod + "internal/clock"}},
		{pattern: "./internal/correlate", why: "the decision is pure: no clock, no I/O, no dependencies", onlyStd: []string{}},
		{pattern: "./internal/evidence", why: "the schema is data and rules, no I/O",
			onlyStd: []string{mod + "internal/correlate"}},
		{pattern: "./internal/evidence/store", why: "the store reads nothing of the host: the boot it writes for is given",
			banned: []string{mod + "internal/hostfs", mod + "collectors/", mod + "internal/procinfo"}},
		{pattern: "./agent/flightrec", why: "the recorder writes through Evidence, which it does not implement",
			banned: []string{mod + "internal/evidence/store", mod + "internal/evidence/console", mod + "internal/sink/", aws}},
		{pattern: "./agent", why: "the daemon does not link the EC2 API that only `ec2diag check` needs",
			banned: []string{mod + "internal/checks", aws + "ec2"}},
	}
	for _, r := range rules {
		for _, p := range deps(t, r.pattern) {
			for _, d := range p.Deps {
				bad := false
				if r.onlyStd != nil {
					bad = !std(d)
					for _, ok := range r.onlyStd {
						if d == ok || strings.HasPrefix(d, ok+"/") {
							bad = false
						}
					}
					if strings.HasPrefix(d, "internal/") || strings.HasPrefix(d, "vendor/") {
						bad = false // the standard library's own
					}
				}
				for _, b := range r.banned {
					if d == b || strings.HasPrefix(d, b) && (strings.HasSuffix(b, "/") || strings.HasPrefix(d, b+"/")) {
						if !(b == mod+"internal/checks" && strings.HasPrefix(d, mod+"internal/checks/result")) {
							bad = true
						}
					}
				}
				if bad {
					t.Errorf("%s links %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
	}
}

// time.Now (and Since, Until) and the literal paths of procfs and sysfs
// appear only where the clock and the host root are made: everything else
// takes them injected, which is what lets a test run the agent on a
// fixture tree in fake time.
func TestClockAndRootAreMadeInOnePlace(t *testing.T) {
	top := root(t)
	allowed := map[string]bool{"internal/clock": true, "internal/hostfs": true}
	skip := []string{"scripts/", "bench/", "internal/testkit", "internal/hostfs/hostfstest", "internal/archtest"}
	fset := token.NewFileSet()
	filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(top, path)
		dir := filepath.Dir(rel)
		if allowed[dir] {
			return nil
		}
		for _, s := range skip {
			if strings.HasPrefix(rel, s) {
				return nil
			}
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Name == "time" && (x.Sel.Name == "Now" || x.Sel.Name == "Since" || x.Sel.Name == "Until") {
					t.Errorf("%s: time.%s: take a clock.Clock instead", fset.Position(x.Pos()), x.Sel.Name)
				}
			case *ast.BasicLit:
				if x.Kind == token.STRING {
					// A path, not words about one ("/proc/vmstat could not be read").
					if v, err := strconv.Unquote(x.Value); err == nil && !strings.Contains(v, " ") && (v == "/proc" || v == "/sys" || strings.HasPrefix(v, "/proc/") || strings.HasPrefix(v, "/sys/")) {
						t.Errorf("%s: literal %q: take a hostfs.Root instead", fset.Position(x.Pos()), v)
					}
				}
			}
			return true
		})
		return nil
	})
}
