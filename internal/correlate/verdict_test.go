package correlate

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

func TestDecide(t *testing.T) {
	onset := t0
	sa1 := RunUse{ID: "sa1", Job: "debian-sa1", PID: 2978, Start: onset.Add(-time.Second), CPUSec: 0.02}
	java := ProcUse{PID: 4242, Comm: "java", CPUSec: 19}
	cases := []struct {
		name     string
		runs     []RunUse
		procs    []ProcUse
		total    float64
		memTotal int64
		cause    string
		verdicts map[string]string // job -> verdict; jobs not listed must be absent
		summary  []string          // substrings of the summary
		byMemory bool
		groups   map[string]string // group -> verdict, where given
	}{
		{
			// The incident this agent exists for: the stock sysstat cron line
			// just before the hang, and something else eating the machine.
			name: "a job that merely preceded the spike is coincident",
			runs: []RunUse{sa1}, procs: []ProcUse{java, {PID: 1, Comm: "systemd", CPUSec: 0.5}}, total: 20, memTotal: 3000 * mib,
			cause:    "process java (pid 4242)",
			verdicts: map[string]string{"debian-sa1": "coincident"},
			summary:  []string{"debian-sa1 ran 1s before onset but used 0.02 s CPU (0%): not the cause", "java pid 4242 used 95% of the CPU"},
		},
		{
			name:  "a job that used most of the CPU caused it",
			runs:  []RunUse{{Job: "backup", PID: 10, Start: onset.Add(-time.Hour), Active: true, CPUSec: 16}},
			procs: []ProcUse{{PID: 11, Comm: "gzip", CPUSec: 15, Job: "backup"}, {PID: 12, Comm: "sshd", CPUSec: 1}}, total: 20,
			cause:    "job backup",
			verdicts: map[string]string{"backup": "caused"},
			summary:  []string{"backup was running at onset and used 80% of the CPU and 0% of the memory"},
		},
		{
			name: "half is enough to cause, a tenth to contribute",
			runs: []RunUse{
				{Job: "half", Start: onset, Active: true, CPUSec: 10},
				{Job: "tenth", Start: onset, Active: true, CPUSec: 2},
				{Job: "under", Start: onset, Active: true, CPUSec: 1.99},
			},
			total:    20,
			cause:    "job half",
			verdicts: map[string]string{"half": "caused", "tenth": "contributed", "under": "coincident"},
		},
		{
			name:  "a contributing job does not take the blame from the top process",
			runs:  []RunUse{{Job: "etl", Start: onset, Active: true, CPUSec: 6}},
			procs: []ProcUse{{PID: 7, Comm: "yes", CPUSec: 6, Job: "etl"}, {PID: 8, Comm: "stress", CPUSec: 14}}, total: 20,
			cause:    "process stress (pid 8)",
			verdicts: map[string]string{"etl": "contributed"},
		},
		{
			name:  "the top process of a job is named with it",
			runs:  []RunUse{{Job: "etl", Start: onset, Active: true, CPUSec: 6}},
			procs: []ProcUse{{PID: 7, Comm: "yes", CPUSec: 6, Job: "etl"}, {PID: 8, Comm: "sshd", CPUSec: 1}}, total: 20,
			cause:    "process yes (pid 7) of job etl",
			verdicts: map[string]string{"etl": "contributed"},
		},
		{
			name:  "memory alone can make the cause",
			runs:  []RunUse{{Job: "indexer", Start: onset, Active: true, CPUSec: 0.1, PeakRSS: 1500 * mib}},
			procs: []ProcUse{{PID: 3, Comm: "indexer", CPUSec: 0.1, RSSBytes: 1500 * mib}}, total: 10, memTotal: 2000 * mib,
			cause:    "job indexer",
			verdicts: map[string]string{"indexer": "caused"},
			summary:  []string{"used 1% of the CPU and 75% of the memory"},
		},
		{
			name: "the window: runs too long before, or after, the onset are no candidates",
			runs: []RunUse{
				{Job: "early", Start: onset.Add(-Window - time.Second), CPUSec: 10},
				{Job: "inwindow", Start: onset.Add(-time.Minute), CPUSec: 10},
				{Job: "late", Start: onset.Add(3 * time.Second), CPUSec: 10},
				{Job: "justafter", Start: onset.Add(2 * time.Second), CPUSec: 2},
				{Job: "longrunning", Start: onset.Add(-24 * time.Hour), Active: true, CPUSec: 2},
			},
			total:    20,
			cause:    "job inwindow",
			verdicts: map[string]string{"inwindow": "caused", "justafter": "contributed", "longrunning": "contributed"},
			summary:  []string{"inwindow ran 1m0s before onset", "justafter started 2s after onset"},
		},
		{
			// At boot (and while it reads a backlog) the agent is busy too:
			// it is listed but never blamed (it blamed itself at every boot
			// of a real VM).
			name:  "the agent is never the cause",
			procs: []ProcUse{{PID: 224, Comm: "ec2diag", CPUSec: 9, Agent: true}, {PID: 300, Comm: "rsyslogd", CPUSec: 2}}, total: 12,
			cause:   "process rsyslogd (pid 300)",
			summary: []string{"rsyslogd pid 300 used 17% of the CPU"},
		},
		{
			name:  "only the agent: no cause",
			procs: []ProcUse{{PID: 224, Comm: "ec2diag", CPUSec: 9, Agent: true}}, total: 9,
			summary: []string{"no process data covers the spike yet"},
		},
		{
			name:  "a service's process is named with its unit",
			procs: []ProcUse{{PID: 521, Comm: "hog", CPUSec: 9, Unit: "runaway.service"}, {PID: 8, Comm: "sshd", CPUSec: 1}}, total: 10,
			cause: "service runaway.service (process hog pid 521)",
		},
		{
			// The VM's memory hang: a CPU burner beside the process that
			// ate the memory. Ranked by CPU, the memory hog came third.
			name:  "a memory spike ranks processes by resident memory",
			procs: []ProcUse{{PID: 10, Comm: "yes", CPUSec: 9, RSSBytes: mib}, {PID: 11, Comm: "python3", CPUSec: 4, RSSBytes: 900 * mib}}, total: 13,
			memTotal: 901 * mib, byMemory: true,
			cause:   "process python3 (pid 11)",
			summary: []string{"python3 pid 11 held 900 MiB"},
		},
		{
			// A database's steady buffers are the biggest, but the leaker
			// is what ate the memory.
			name: "a memory spike ranks what grew before what is big",
			procs: []ProcUse{{PID: 20, Comm: "postgres", CPUSec: 2, RSSBytes: 2048 * mib, Unit: "postgresql.service"},
				{PID: 21, Comm: "leak", CPUSec: 1, RSSBytes: 1024 * mib, RSSGrowth: 900 * mib, Unit: "etl.service"},
				{PID: 22, Comm: "bash", CPUSec: 1, RSSBytes: 3072 * mib, RSSGrowth: 4 * mib}},
			total: 4, memTotal: 6144 * mib, byMemory: true,
			cause:   "service etl.service (process leak pid 21)",
			summary: []string{"leak pid 21 held 1024 MiB (grew 900 MiB)"},
			groups:  map[string]string{"service postgresql.service": "coincident", "service etl.service": "caused"},
		},
		{
			// The recorded report's incident: a session's yes used more
			// than either of the service's burners, but the service used
			// twice what the session did.
			name: "a group whose processes together outweigh the busiest one is the cause",
			procs: []ProcUse{{PID: 95, Comm: "yes", CPUSec: 24.6, Group: "session of ubuntu from 10.0.0.5", GroupKind: "session", Login: "10.0.0.5"},
				{PID: 94, Comm: "python3", CPUSec: 23.6, Unit: "etl.service"}, {PID: 93, Comm: "python3", CPUSec: 23.5, Unit: "etl.service"}},
			total:   71.7,
			cause:   "service etl.service (process python3 pid 94)",
			summary: []string{"service etl.service used 66% of the CPU in 2 processes", "python3 pid 94 used 33% of the CPU"},
			groups:  map[string]string{"service etl.service": "caused", "session of ubuntu from 10.0.0.5": "contributed"},
		},
		{
			// The other way round: one process outside any group used more
			// than a whole service did, and it stays the suspect.
			name: "a process that outweighs the leading group stays the cause",
			procs: []ProcUse{{PID: 7, Comm: "hog", CPUSec: 60},
				{PID: 94, Comm: "python3", CPUSec: 20, Unit: "etl.service"}, {PID: 93, Comm: "python3", CPUSec: 20, Unit: "etl.service"}},
			total:   100,
			cause:   "process hog (pid 7)",
			summary: []string{"hog pid 7 used 60% of the CPU"},
			groups:  map[string]string{"service etl.service": "contributed"},
		},
		{
			name: "a memory spike's leading group is named by what grew",
			procs: []ProcUse{{PID: 30, Comm: "java", CPUSec: 5, RSSBytes: 700 * mib, RSSGrowth: 600 * mib},
				{PID: 31, Comm: "worker", CPUSec: 1, RSSBytes: 500 * mib, RSSGrowth: 450 * mib, Unit: "etl.service"},
				{PID: 32, Comm: "worker", CPUSec: 1, RSSBytes: 500 * mib, RSSGrowth: 440 * mib, Unit: "etl.service"}},
			total: 7, memTotal: 1700 * mib, byMemory: true,
			cause:   "service etl.service (process worker pid 31)",
			summary: []string{"service etl.service held 1000 MiB (grew 890 MiB) in 2 processes", "worker pid 31 held 500 MiB (grew 450 MiB)"},
			groups:  map[string]string{"service etl.service": "caused"},
		},
		{
			name:     "a run that started after onset was not active at onset, whatever the sampler said",
			runs:     []RunUse{{Job: "sa1", Start: onset.Add(time.Second), Active: true, CPUSec: 0.01}},
			total:    10,
			verdicts: map[string]string{"sa1": "coincident"},
			summary:  []string{"sa1 started 1s after onset but used 0.01 s CPU"},
		},
		{
			name:    "nothing sampled yet",
			summary: []string{"no process data covers the spike yet"},
		},
		{
			name:     "no CPU measured: no shares, no division by zero",
			runs:     []RunUse{{Job: "x", Start: onset, Active: true}},
			procs:    []ProcUse{{PID: 2, Comm: "y"}},
			cause:    "process y (pid 2)",
			verdicts: map[string]string{"x": "coincident"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Decide(onset, Window, c.runs, c.procs, c.total, c.memTotal, c.byMemory, 0)
			if v.Cause != c.cause {
				t.Errorf("cause %q, want %q", v.Cause, c.cause)
			}
			got := map[string]string{}
			for _, b := range v.Jobs {
				got[b.Job] = string(b.Verdict)
				if math.IsNaN(b.Confidence) || b.Confidence < 0 || b.Confidence > 1 {
					t.Errorf("%s: confidence %v", b.Job, b.Confidence)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.verdicts) && !(len(got) == 0 && len(c.verdicts) == 0) {
				t.Errorf("verdicts %v, want %v", got, c.verdicts)
			}
			for name, want := range c.groups {
				found := false
				for _, g := range v.Groups {
					if g.Name == name {
						found = true
						if string(g.Verdict) != want {
							t.Errorf("group %s: %s, want %s (%+v)", name, g.Verdict, want, v.Groups)
						}
					}
				}
				if !found {
					t.Errorf("no group %s in %+v", name, v.Groups)
				}
			}
			for _, s := range c.summary {
				if !strings.Contains(v.Summary, s) {
					t.Errorf("summary %q lacks %q", v.Summary, s)
				}
			}
			for _, b := range v.Jobs {
				if b.Active && b.Start.After(onset) {
					t.Errorf("%s started after onset but is active_at_onset", b.Job)
				}
			}
			for i := 1; i < len(v.Jobs); i++ {
				if v.Jobs[i].Confidence > v.Jobs[i-1].Confidence {
					t.Errorf("jobs not in order of confidence: %+v", v.Jobs)
				}
			}
		})
	}
}

func TestDecideTopProcesses(t *testing.T) {
	var procs []ProcUse
	for i := 1; i <= 15; i++ {
		procs = append(procs, ProcUse{PID: i, Comm: fmt.Sprintf("p%d", i), CPUSec: float64(i)})
	}
	total := 0.0
	for _, p := range procs {
		total += p.CPUSec
	}
	v := Decide(t0, Window, nil, procs, total, 0, false, 0)
	if len(v.Top) != 10 {
		t.Fatalf("%d top processes, want 10", len(v.Top))
	}
	for i, p := range v.Top {
		if p.PID != 15-i {
			t.Errorf("top[%d] is pid %d, want %d (busiest first)", i, p.PID, 15-i)
		}
		if want := float64(p.PID) / total; math.Abs(p.CPUShare-want) > 1e-9 {
			t.Errorf("pid %d share %v, want %v", p.PID, p.CPUShare, want)
		}
	}
	if v.Cause != "process p15 (pid 15)" {
		t.Errorf("cause %q", v.Cause)
	}
	if procs[0].CPUShare != 0 {
		t.Error("Decide wrote into the caller's slice")
	}
}

// A flood of start lines (anyone can log them) makes many candidate runs:
// the verdict lists the most confident MaxCandidates and counts the rest.
func TestCandidateRunsAreBounded(t *testing.T) {
	onset := time.Unix(1_800_000_000, 0)
	var runs []RunUse
	for i := 0; i < 500; i++ {
		runs = append(runs, RunUse{ID: fmt.Sprint(i), Job: "flood", PID: 1000 + i, Start: onset.Add(-time.Minute), Unverified: "pid gone"})
	}
	runs = append(runs, RunUse{ID: "real", Job: "etl", PID: 42, Start: onset.Add(-time.Minute), Active: true, CPUSec: 9})
	v := Decide(onset, Window, runs, []ProcUse{{PID: 43, Comm: "etl", CPUSec: 9, Job: "etl"}}, 10, 0, false, 0)
	if len(v.Jobs) != MaxCandidates || v.Jobs[0].Job != "etl" || v.RunsLeftOut[Unverified] != 501-MaxCandidates {
		t.Fatalf("%d runs listed (first %q), left out %v", len(v.Jobs), v.Jobs[0].Job, v.RunsLeftOut)
	}
}

// The number of processes listed is the config's (it was silently 10).
func TestTopNIsHonoured(t *testing.T) {
	var procs []ProcUse
	for i := 0; i < 40; i++ {
		procs = append(procs, ProcUse{PID: i + 1, Comm: "p", CPUSec: float64(i)})
	}
	if v := Decide(time.Unix(0, 0), Window, nil, procs, 100, 0, false, 25); len(v.Top) != 25 {
		t.Errorf("%d processes listed, want 25", len(v.Top))
	}
}
