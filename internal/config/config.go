// Package config loads ec2diag's one YAML file strictly: unknown keys, wrong
// types and bad values are errors that name the file, line, column and key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where the package installs the config.
const DefaultPath = "/etc/ec2diag/config.yaml"

// Duration is a time.Duration written as "30s" or "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML accepts Go duration strings only; a bare number is ambiguous
// (seconds? nanoseconds?) and is rejected.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration like \"30s\", got a %s", describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("want a duration like \"30s\", got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole file. Every key is documented in packaging/config.yaml,
// which is tested to load and to match Default().
type Config struct {
	StateDir string `yaml:"state_dir"`
	// ShutdownTimeout bounds the flush on SIGTERM; keep it under the
	// unit's TimeoutStopSec.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MemoryLock keeps the agent's pages in memory (mlockall on fault):
	// in a thrash the kernel evicts program text, and an agent that must
	// read its own code back from disk stops recording just before the
	// hang it is there to explain. Needs LimitMEMLOCK= in the unit.
	MemoryLock bool `yaml:"memory_lock"`
	// MemoryTrim gives back, once start-up is over, the program pages
	// only start-up touched (fault-around maps 64 KiB per fault): a third
	// of the idle agent's RSS.
	MemoryTrim bool           `yaml:"memory_trim"`
	Log        Log            `yaml:"log"`
	IMDS       IMDS           `yaml:"imds"`
	Sinks      Sinks          `yaml:"sinks"`
	Host       HostConfig     `yaml:"host"`
	Spikes     Spikes         `yaml:"spikes"`
	Incidents  Incidents      `yaml:"incidents"`
	Jobs       Jobs           `yaml:"jobs"`
	Syslog     Syslog         `yaml:"syslog"`
	CloudWatch CloudWatch     `yaml:"cloudwatch"`
	Logs       CloudWatchLogs `yaml:"cloudwatch_logs"`
	Checks     Checks         `yaml:"checks"`
}

// CloudWatchLogs configures shipping the incident store (incidents and
// job-run summaries) to CloudWatch Logs, one stream per instance.
type CloudWatchLogs struct {
	// Enabled: auto (on EC2 only), true, or false.
	Enabled  string `yaml:"enabled"`
	LogGroup string `yaml:"log_group"`
	// RetentionDays is set when the agent creates the group; 0 keeps
	// events for ever. A group made by someone else is left alone.
	RetentionDays int `yaml:"retention_days"`
	// Region defaults to the instance's (from IMDS).
	Region string `yaml:"region"`
	// Endpoint overrides the SDK's (which honours AWS_ENDPOINT_URL_CLOUDWATCH_LOGS).
	Endpoint string `yaml:"endpoint"`
	// FlushInterval is how long a job-run summary may wait to be
	// batched; incident records go at once.
	FlushInterval  Duration `yaml:"flush_interval"`
	RequestTimeout Duration `yaml:"request_timeout"`
}

// RetentionValues are the retentions CloudWatch Logs accepts, in days.
var RetentionValues = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// Checks configures the instance hygiene checks (ec2diag check, and the
// daemon at start and every Interval).
type Checks struct {
	// Interval between runs in the daemon; 0 turns them off there.
	Interval Duration `yaml:"interval"`
	// AllowedAMIOwners: owner aliases (amazon, aws-marketplace) or
	// 12-digit account ids trusted to provide AMIs.
	AllowedAMIOwners []string `yaml:"allowed_ami_owners"`
	// Endpoint overrides the EC2 API endpoint (AWS_ENDPOINT_URL_EC2 works too).
	Endpoint string `yaml:"endpoint"`
}

// CloudWatch configures metric publishing.
type CloudWatch struct {
	// Enabled: auto (on EC2 only), true, or false.
	Enabled   string `yaml:"enabled"`
	Namespace string `yaml:"namespace"`
	// Region defaults to the instance's (from IMDS).
	Region string `yaml:"region"`
	// Endpoint overrides the SDK's (which honours AWS_ENDPOINT_URL_CLOUDWATCH).
	Endpoint string `yaml:"endpoint"`
	// Period is the aggregation period: one datum per metric per period.
	// Below 60s all data is sent at high resolution.
	Period Duration `yaml:"period"`
	// Dimensions added to every metric besides InstanceId:
	// AutoScalingGroupName, InstanceType, ImageId.
	Dimensions []string `yaml:"dimensions"`
	// HighResolution names metrics aggregated over HighResolutionPeriod
	// and stored at 1-second resolution (billed the same per metric, but
	// more data points per request).
	HighResolution       []string `yaml:"high_resolution"`
	HighResolutionPeriod Duration `yaml:"high_resolution_period"`
	// Job dimension cardinality: JobNames, if set, are published as
	// themselves and every other job as "other"; else the first
	// MaxJobNames distinct names seen are.
	JobNames    []string `yaml:"job_names"`
	MaxJobNames int      `yaml:"max_job_names"`
	// Metrics selects the set published: standard (at most 20 per
	// instance; per-job metrics by Job alone, shared by the fleet, for
	// job_names only) or detailed (the whole catalogue per instance:
	// per-interface counters, per-instance per-job metrics with
	// max_job_names, every host figure).
	Metrics        string   `yaml:"metrics"`
	SpoolMaxBytes  int64    `yaml:"spool_max_bytes"`
	RequestTimeout Duration `yaml:"request_timeout"`
}

// Log selects the agent's own logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto, journal, console, json
}

// IMDS configures how the agent finds out whether it is on EC2.
type IMDS struct {
	Disabled bool     `yaml:"disabled"`
	Endpoint string   `yaml:"endpoint"`
	Timeout  Duration `yaml:"timeout"`
	// EventsInterval is how often spot, rebalance and scheduled-event
	// notices are polled on EC2; 0 turns it off.
	EventsInterval Duration `yaml:"events_interval"`
}

// Sinks configures the local outputs, which work on and off EC2.
type Sinks struct {
	// SummaryInterval is how often a one-line summary goes to the log.
	SummaryInterval Duration `yaml:"summary_interval"`
	File            FileSink `yaml:"file"`
	Prometheus      PromSink `yaml:"prometheus"`
}

// PromSink serves the latest figures in the Prometheus text format at
// http://Listen/metrics; empty Listen disables it. Loopback only.
type PromSink struct {
	Listen string `yaml:"listen"`
}

// FileSink writes every record as a JSON line; empty Path disables it.
type FileSink struct {
	Path string `yaml:"path"`
}

// HostConfig is the host sampler's schedule.
type HostConfig struct {
	Interval Duration `yaml:"interval"`
	// CalmProcessInterval is how often every process is scanned while the
	// host is calm (no spike near, no job run open): the scan is two
	// thirds of the idle agent's CPU. The host itself is still sampled
	// every Interval and a sample that is not calm scans at once, so no
	// detection waits for it. 0 scans at every sample.
	CalmProcessInterval Duration `yaml:"calm_process_interval"`
}

// Default returns the configuration used when no file exists.
func Default() Config {
	return Config{
		StateDir:        "/var/lib/ec2diag",
		ShutdownTimeout: Duration(10 * time.Second),
		MemoryLock:      true,
		MemoryTrim:      true,
		Log:             Log{Level: "info", Format: "auto"},
		IMDS:            IMDS{Timeout: Duration(2 * time.Second), EventsInterval: Duration(5 * time.Second)},
		Sinks:           Sinks{SummaryInterval: Duration(5 * time.Minute)},
		Host:            HostConfig{Interval: Duration(5 * time.Second), CalmProcessInterval: Duration(30 * time.Second)},
		Spikes: Spikes{
			CPUHigh: 90, CPULow: 70, EnterSamples: 2, ExitSamples: 3,
			MemAvailableLow: 10, MemAvailableHigh: 15, PSIMemoryFull: 10,
			FastInterval: Duration(time.Second), SnapshotEvery: Duration(30 * time.Second),
			JobWindow: Duration(2 * time.Minute), TopProcesses: 10, Console: "/dev/kmsg", BootGrace: Duration(10 * time.Minute),
			IOStallAfter: Duration(10 * time.Second), PSIIOFull: 90, CPUStealHigh: 30, StalledAfter: Duration(2 * time.Minute),
		},
		Incidents: Incidents{MaxFileBytes: 16 << 20, KeepFiles: 4},
		Jobs:      Jobs{Names: []JobName{}, CronParents: []string{"cron", "crond", "fcron"}},
		CloudWatch: CloudWatch{
			Enabled: "auto", Namespace: "EC2Diag", Period: Duration(time.Minute), Dimensions: []string{},
			HighResolution: []string{}, HighResolutionPeriod: Duration(10 * time.Second), JobNames: []string{},
			MaxJobNames: 20, Metrics: "standard", SpoolMaxBytes: 32 << 20, RequestTimeout: Duration(30 * time.Second),
		},
		Logs: CloudWatchLogs{Enabled: "auto", LogGroup: "/ec2diag", RetentionDays: 30, FlushInterval: Duration(time.Minute),
			RequestTimeout: Duration(30 * time.Second)},
		Checks: Checks{Interval: Duration(24 * time.Hour), AllowedAMIOwners: []string{"amazon", "099720109477", "136693071363"}},
		Syslog: Syslog{
			Source:             "auto",
			Files:              []string{"/var/log/syslog", "/var/log/auth.log"},
			MaxLineBytes:       64 << 10,
			PollInterval:       Duration(10 * time.Second),
			CheckpointInterval: Duration(time.Second),
			JournalProbe:       Duration(10 * time.Second),
		},
	}
}

// Load reads path over Default(). A missing file at the default path is not
// an error (the agent runs on defaults); a missing file named explicitly is.
func Load(path string, explicit bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (named file in errors) over Default() and validates it.
func Parse(file string, data []byte) (Config, error) {
	cfg := Default()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line := 0
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			fmt.Sscanf(cleanPrefix(err.Error()), "line %d", &line)
		}
		return cfg, Errors{{File: file, Line: line, Msg: "not valid YAML: " + cleanYAMLError(err)}}
	}
	// yaml.Unmarshal reads the first document only: a second one after
	// "---" would be ignored without a word.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first, second yaml.Node
	if dec.Decode(&first) == nil {
		if err := dec.Decode(&second); err == nil {
			return cfg, Errors{{File: file, Line: second.Line, Column: 1, Msg: "a second YAML document: the configuration is one document (remove the \"---\" and merge what follows)"}}
		}
	}
	d := &decoder{file: file, pos: map[string][2]int{}}
	d.decode(&root, reflect.ValueOf(&cfg).Elem(), "")
	if len(d.errs) == 0 {
		cfg.validate(d)
	}
	if len(d.errs) > 0 {
		return cfg, d.errs
	}
	return cfg, nil
}

func cleanPrefix(s string) string {
	if len(s) > 6 && s[:6] == "yaml: " {
		return s[6:]
	}
	return s
}

// validate checks values, reporting at the key's position when it came from
// the file.
func (c *Config) validate(d *decoder) {
	bad := func(key, format string, args ...any) {
		e := &Error{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
		if p, ok := d.pos[key]; ok {
			e.Line, e.Column = p[0], p[1]
		}
		d.errs = append(d.errs, e)
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	atLeast(bad, "shutdown_timeout", c.ShutdownTimeout, 100*time.Millisecond)
	oneOf(bad, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(bad, "log.format", c.Log.Format, "auto", "journal", "console", "json")
	atLeast(bad, "imds.timeout", c.IMDS.Timeout, 100*time.Millisecond)
	atLeast(bad, "sinks.summary_interval", c.Sinks.SummaryInterval, time.Second)
	atLeast(bad, "host.interval", c.Host.Interval, 100*time.Millisecond)
	atLeast(bad, "host.calm_process_interval", c.Host.CalmProcessInterval, 0)
	oneOf(bad, "syslog.source", c.Syslog.Source, "auto", "files", "journal")
	if c.Syslog.Source != "journal" && len(c.Syslog.Files) == 0 {
		bad("syslog.files", "want at least one file (or source: journal)")
	}
	for i, f := range c.Syslog.Files {
		if !filepath.IsAbs(f) {
			bad(fmt.Sprintf("syslog.files[%d]", i), "want an absolute path, got %q", f)
		}
	}
	if _, err := c.Syslog.Location(); err != nil {
		bad("syslog.timezone", "unknown time zone %q (want an IANA name like \"Europe/Berlin\")", c.Syslog.Timezone)
	}
	if c.Syslog.MaxLineBytes < 256 || c.Syslog.MaxLineBytes > 16<<20 {
		bad("syslog.max_line_bytes", "want 256 to 16777216, got %d", c.Syslog.MaxLineBytes)
	}
	atLeast(bad, "syslog.poll_interval", c.Syslog.PollInterval, 10*time.Millisecond)
	atLeast(bad, "syslog.journal_probe", c.Syslog.JournalProbe, time.Second)
	sp := c.Spikes
	if sp.CPUHigh <= 0 || sp.CPUHigh > 100 || sp.CPULow < 0 || sp.CPULow >= sp.CPUHigh {
		bad("spikes.cpu_low", "want 0 <= cpu_low < cpu_high <= 100, got cpu_low %v, cpu_high %v", sp.CPULow, sp.CPUHigh)
	}
	if sp.MemAvailableLow < 0 || sp.MemAvailableHigh < sp.MemAvailableLow || sp.MemAvailableHigh > 100 {
		bad("spikes.mem_available_high", "want 0 <= mem_available_low <= mem_available_high <= 100")
	}
	if sp.EnterSamples < 1 || sp.ExitSamples < 1 {
		bad("spikes.enter_samples", "want enter_samples and exit_samples of at least 1")
	}
	if sp.TopProcesses < 1 || sp.TopProcesses > 30 {
		bad("spikes.top_processes", "want 1 to 30 (what an incident record lists; each is kept with its command line), got %d", sp.TopProcesses)
	}
	atLeast(bad, "spikes.fast_interval", sp.FastInterval, 100*time.Millisecond)
	atLeast(bad, "spikes.snapshot_every", sp.SnapshotEvery, time.Second)
	atLeast(bad, "spikes.boot_grace", sp.BootGrace, 0)
	atLeast(bad, "spikes.io_stall_after", sp.IOStallAfter, 0)
	atLeast(bad, "spikes.stalled_after", sp.StalledAfter, 10*time.Second)
	if sp.PSIIOFull < 0 || sp.PSIIOFull > 100 {
		bad("spikes.psi_io_full", "want 0 (off) to 100, got %v", sp.PSIIOFull)
	}
	if sp.CPUStealHigh < 0 || sp.CPUStealHigh > 100 {
		bad("spikes.cpu_steal_high", "want 0 (off) to 100, got %v", sp.CPUStealHigh)
	}
	if c.Incidents.MaxFileBytes < 64<<10 || c.Incidents.KeepFiles < 1 {
		bad("incidents.max_file_bytes", "want max_file_bytes >= 65536 and keep_files >= 1")
	}
	cw := c.CloudWatch
	oneOf(bad, "cloudwatch.enabled", cw.Enabled, "auto", "true", "false")
	oneOf(bad, "cloudwatch.metrics", cw.Metrics, "standard", "detailed")
	if cw.Namespace == "" || len(cw.Namespace) > 255 || cw.Namespace[0] == ':' || len(cw.Namespace) >= 4 && cw.Namespace[:4] == "AWS/" {
		bad("cloudwatch.namespace", "want 1-255 characters, not starting with \":\" or \"AWS/\", got %q", cw.Namespace)
	}
	atLeast(bad, "cloudwatch.period", cw.Period, time.Second)
	if cw.Period.D() > time.Hour {
		bad("cloudwatch.period", "want at most 1h, got %s", cw.Period.D())
	}
	for i, dim := range cw.Dimensions {
		oneOf(bad, fmt.Sprintf("cloudwatch.dimensions[%d]", i), dim, "AutoScalingGroupName", "InstanceType", "ImageId")
	}
	switch cw.HighResolutionPeriod.D() {
	case time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second:
	default:
		bad("cloudwatch.high_resolution_period", "want 1s, 5s, 10s or 30s, got %s", cw.HighResolutionPeriod.D())
	}
	if cw.MaxJobNames < 1 || cw.MaxJobNames > 500 {
		bad("cloudwatch.max_job_names", "want 1 to 500, got %d", cw.MaxJobNames)
	}
	if cw.SpoolMaxBytes < 1<<20 {
		bad("cloudwatch.spool_max_bytes", "want at least 1048576, got %d", cw.SpoolMaxBytes)
	}
	atLeast(bad, "cloudwatch.request_timeout", cw.RequestTimeout, 100*time.Millisecond)
	lg := c.Logs
	oneOf(bad, "cloudwatch_logs.enabled", lg.Enabled, "auto", "true", "false")
	if !validLogGroup(lg.LogGroup) {
		bad("cloudwatch_logs.log_group", "want 1-512 characters of a-z A-Z 0-9 _ - / . #, got %q", lg.LogGroup)
	}
	if lg.RetentionDays != 0 && !slices.Contains(RetentionValues, lg.RetentionDays) {
		bad("cloudwatch_logs.retention_days", "want 0 (never expire) or one of %v, got %d", RetentionValues, lg.RetentionDays)
	}
	atLeast(bad, "cloudwatch_logs.flush_interval", lg.FlushInterval, time.Second)
	atLeast(bad, "cloudwatch_logs.request_timeout", lg.RequestTimeout, 100*time.Millisecond)
	if l := c.Sinks.Prometheus.Listen; l != "" {
		if err := promAddr(l); err != nil {
			bad("sinks.prometheus.listen", "%v", err)
		}
	}
	if c.IMDS.EventsInterval.D() != 0 {
		atLeast(bad, "imds.events_interval", c.IMDS.EventsInterval, time.Second)
	}
	if c.Checks.Interval.D() != 0 {
		atLeast(bad, "checks.interval", c.Checks.Interval, time.Minute)
	}
	for i, o := range c.Checks.AllowedAMIOwners {
		if !ownerRe.MatchString(o) {
			bad(fmt.Sprintf("checks.allowed_ami_owners[%d]", i), "want amazon, aws-marketplace or a 12-digit account id, got %q", o)
		}
	}
	if len(c.Jobs.CronParents) == 0 {
		bad("jobs.cron_parents", "must name at least one cron daemon (default: cron, crond, fcron)")
	}
	for i, n := range c.Jobs.CronParents {
		if n == "" || len(n) > 15 {
			bad(fmt.Sprintf("jobs.cron_parents[%d]", i), "want a process name of 1 to 15 characters (the kernel's comm), got %q", n)
		}
	}
	for i, n := range c.Jobs.Names {
		if _, err := regexp.Compile(n.Pattern); err != nil || n.Name == "" {
			bad(fmt.Sprintf("jobs.names[%d]", i), "want a valid regular expression in pattern and a name, got pattern %q", n.Pattern)
		}
	}
}

func oneOf(bad func(string, string, ...any), key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	bad(key, "want one of %v, got %q", allowed, v)
}

func atLeast(bad func(string, string, ...any), key string, v Duration, min time.Duration) {
	if v.D() < min {
		bad(key, "want a duration of at least %s, got %s", min, v.D())
	}
}

// Syslog configures where log lines come from.
type Syslog struct {
	// Source: auto (files if the first file exists, else the journal),
	// files, or journal.
	Source string   `yaml:"source"`
	Files  []string `yaml:"files"`
	// Timezone for traditional timestamps (IANA name); empty: the host's.
	Timezone string `yaml:"timezone"`
	// FromStart reads existing content when there is no checkpoint yet.
	FromStart          bool     `yaml:"from_start"`
	MaxLineBytes       int      `yaml:"max_line_bytes"`
	PollInterval       Duration `yaml:"poll_interval"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// JournalProbe: how often the journal reader checks that journalctl
	// --follow still wakes up (it can stop under some sandboxes).
	JournalProbe Duration `yaml:"journal_probe"`
}

// Location resolves Timezone; nil means the host's zone.
func (s Syslog) Location() (*time.Location, error) {
	if s.Timezone == "" {
		return nil, nil
	}
	return time.LoadLocation(s.Timezone)
}

// Spikes configures spike detection and evidence.
type Spikes struct {
	CPUHigh          float64  `yaml:"cpu_high"`
	CPULow           float64  `yaml:"cpu_low"`
	EnterSamples     int      `yaml:"enter_samples"`
	ExitSamples      int      `yaml:"exit_samples"`
	MemAvailableLow  float64  `yaml:"mem_available_low"`
	MemAvailableHigh float64  `yaml:"mem_available_high"`
	PSIMemoryFull    float64  `yaml:"psi_memory_full"`
	FastInterval     Duration `yaml:"fast_interval"`
	SnapshotEvery    Duration `yaml:"snapshot_every"`
	JobWindow        Duration `yaml:"job_window"`
	TopProcesses     int      `yaml:"top_processes"`
	// Console is where the one-line onset notice goes ("" = off).
	Console string `yaml:"console"`
	// BootGrace: while the machine boots (until systemd logs "Startup
	// finished", at most this long after boot) CPU alone makes no incident.
	BootGrace Duration `yaml:"boot_grace"`
	// IOStallAfter: a disk with requests in flight and none completing
	// (or each waiting over a second) for this long is a spike; 0 off.
	IOStallAfter Duration `yaml:"io_stall_after"`
	// PSIIOFull: I/O pressure (PSI io full avg10 %) that is a spike; 0 off.
	PSIIOFull float64 `yaml:"psi_io_full"`
	// CPUStealHigh: CPU withheld by the hypervisor (steal %) that is a
	// spike, held like cpu_high; 0 off.
	CPUStealHigh float64 `yaml:"cpu_steal_high"`
	// StalledAfter: the Stalled figure (what the liveness alarm watches)
	// is 1 once a spike of memory, I/O or withheld CPU has lasted this
	// long.
	StalledAfter Duration `yaml:"stalled_after"`
}

// Incidents bounds the evidence store.
type Incidents struct {
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	KeepFiles    int   `yaml:"keep_files"`
}

// Jobs configures job naming.
type Jobs struct {
	Names []JobName `yaml:"names"`
	// CronParents are the process names (comm) of the cron daemons whose
	// children a CMD line may name; a line the process table does not
	// confirm is recorded as unverified and never blamed.
	CronParents []string `yaml:"cron_parents"`
}

// JobName maps commands matching Pattern (a regular expression) to Name.
type JobName struct {
	Pattern string `yaml:"pattern"`
	Name    string `yaml:"name"`
}

var ownerRe = regexp.MustCompile(`^(amazon|aws-marketplace|aws-backup-vault|[0-9]{12})$`)

// promAddr accepts host:port with a loopback host.
func promAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("want a loopback address (127.0.0.1:PORT or [::1]:PORT), got %q: the endpoint has no authentication", addr)
	}
	return nil
}

// validLogGroup: the names CreateLogGroup accepts.
func validLogGroup(g string) bool {
	if g == "" || len(g) > 512 {
		return false
	}
	for _, c := range g {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-/.#", c)) {
			return false
		}
	}
	return true
}
