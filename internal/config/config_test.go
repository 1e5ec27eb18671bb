package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsDefault(t *testing.T) {
	data, err := os.ReadFile("../../packaging/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("config.yaml", data)
	if err != nil {
		t.Fatalf("shipped example config rejected: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("example config differs from Default():\n got %+v\nwant %+v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the one-line errors, in order
	}{
		{"unknown top key", "state_dri: /x\n", []string{"c.yaml:1:1: state_dri: unknown key", "known keys here: checks, cloudwatch, cloudwatch_logs, host, imds, incidents, jobs, log, memory_lock, memory_trim, shutdown_timeout, sinks, spikes, state_dir, syslog"}},
		{"unknown nested key", "log:\n  levle: debug\n", []string{"c.yaml:2:3: log.levle: unknown key"}},
		{"a second document", "log:\n  level: debug\n---\nlog:\n  level: error\n", []string{"c.yaml:3:1: a second YAML document"}},
		{"bad duration", "host:\n  interval: fast\n", []string{`c.yaml:2:13: host.interval: want a duration like "30s", got "fast"`}},
		{"bare number duration", "host:\n  interval: 5\n", []string{`host.interval: want a duration like "30s", got "5"`}},
		{"wrong type bool", "imds:\n  disabled: maybe\n", []string{`c.yaml:2:13: imds.disabled: want true or false, got "maybe"`}},
		{"mapping expected", "log: loud\n", []string{`c.yaml:1:6: log: want a mapping of keys, got "loud"`}},
		{"bad enum", "log:\n  level: loud\n", []string{`c.yaml:2:10: log.level: want one of [debug info warn error], got "loud"`}},
		{"too short", "host:\n  interval: 1ms\n", []string{"c.yaml:2:13: host.interval: want a duration of at least 100ms, got 1ms"}},
		{"duplicate key", "log:\n  level: info\n  level: warn\n", []string{"c.yaml:3:3: log.level: key given twice"}},
		{"several at once", "nope: 1\nlog:\n  format: xml\n  x: 1\n", []string{"c.yaml:1:1: nope: unknown key", "c.yaml:4:3: log.x: unknown key"}},
		{"relative file", "syslog:\n  files: [syslog]\n", []string{`c.yaml:2:11: syslog.files[0]: want an absolute path, got "syslog"`}},
		{"bad zone", "syslog:\n  timezone: Mars/Base\n", []string{`c.yaml:2:13: syslog.timezone: unknown time zone "Mars/Base"`}},
		{"list expected", "syslog:\n  files: /var/log/syslog\n", []string{`c.yaml:2:10: syslog.files: want a list, got "/var/log/syslog"`}},
		{"not yaml", "log: [\n", []string{"c.yaml:", "not valid YAML"}},
		{"too many top processes", "spikes:\n  top_processes: 60\n", []string{"c.yaml:2:18: spikes.top_processes: want 1 to 30"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want %q", tc.yaml, tc.want)
			}
			msg := err.Error()
			pos := 0
			for _, w := range tc.want {
				i := strings.Index(msg[pos:], w)
				if i < 0 {
					t.Fatalf("Parse(%q) error\n%s\nwant it to contain (in order) %q", tc.yaml, msg, w)
				}
				pos += i + len(w)
			}
		})
	}
}

func TestParseValuesAndNull(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("log:\n  level: debug\nhost:\n  interval: 250ms\nsinks:\n  file:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" || cfg.Host.Interval.D() != 250*time.Millisecond || cfg.Log.Format != "auto" {
		t.Errorf("got %+v", cfg)
	}
	if _, err := Parse("c.yaml", nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load("/nonexistent/ec2diag.yaml", false); err != nil {
		t.Errorf("implicit missing file: %v, want defaults", err)
	}
	_, err := Load("/nonexistent/ec2diag.yaml", true)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("explicit missing file: %v, want ErrNotExist", err)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../../packaging/config.yaml")
	f.Add(data)
	f.Add([]byte("log: {level: [1]}\nhost: &a {interval: 1s}\nsinks: *a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse("f.yaml", b)
		if err == nil && cfg.StateDir == "" {
			t.Fatalf("accepted empty state_dir from %q", b)
		}
	})
}
