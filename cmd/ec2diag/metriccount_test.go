package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/agent"
	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/config"
	"github.com/ec2diag/ec2diag/internal/metrics"
	cwsink "github.com/ec2diag/ec2diag/internal/sink/cloudwatch"
	"github.com/ec2diag/ec2diag/internal/spool"
	"github.com/ec2diag/ec2diag/internal/testkit/fakecw"
	"go.uber.org/zap"
)

// everything feeds one of every kind of record the agent makes: host
// figures, 30 jobs' runs, 4 interfaces (3 ENA, 1 EFA) with their counters,
// every kind of kernel event, IMDS notices, checks, log statistics.
func everything(t0 time.Time, minute int) []collectors.Record {
	at := t0.Add(time.Duration(minute) * time.Second)
	recs := []collectors.Record{
		{Time: at, Kind: collectors.KindSample, Source: "host", Type: "host", Metrics: map[string]float64{"cpu_busy_pct": 10, "cpu_user_pct": 5,
			"cpu_system_pct": 3, "cpu_iowait_pct": 1, "cpu_steal_pct": 1, "mem_used_pct": 40, "mem_available_pct": 60, "swap_used_pct": 0,
			"psi_cpu_some_avg10": 1, "psi_memory_some_avg10": 0, "psi_memory_full_avg10": 0, "psi_io_full_avg10": 0}},
		{Time: at, Kind: collectors.KindSample, Source: "logsource", Metrics: map[string]float64{"lines_read": float64(100 * minute), "lines_unparsed": 1}},
		{Time: at, Kind: collectors.KindSample, Source: "imdsevents", Metrics: map[string]float64{"spot_interruption": 0, "rebalance_recommendation": 0, "scheduled_events": 0}},
		{Time: at, Kind: collectors.KindSample, Source: "instancecheck", Metrics: map[string]float64{"fail": 0}},
		{Time: at, Kind: collectors.KindEvent, Type: "spike", Dims: map[string]string{"job": "job-3"}},
	}
	for _, ev := range []collectors.Type{"oom_kill", "hung_task", "soft_lockup", "rcu_stall", "ena_event", "resume"} {
		recs = append(recs, collectors.Record{Time: at, Kind: collectors.KindEvent, Type: ev})
	}
	for j := 0; j < 30; j++ {
		recs = append(recs, collectors.Record{Time: at, Kind: collectors.KindEvent, Type: "job_run", Dims: map[string]string{"job": fmt.Sprint("job-", j)},
			Metrics: map[string]float64{"cpu_seconds": 1, "duration_seconds": 2, "peak_rss_bytes": 1 << 20}})
	}
	ena := map[string]float64{"healthy": 1, "bw_in_allowance_exceeded": 1, "bw_out_allowance_exceeded": 0, "pps_allowance_exceeded": 0,
		"conntrack_allowance_exceeded": 0, "linklocal_allowance_exceeded": 0, "conntrack_allowance_available": 1000, "total_resets": 0,
		"tx_timeout": 0, "rx_dropped": 0, "tx_dropped": 0, "rx_errors": 0, "tx_errors": 0, "carrier_changes": 0}
	for _, i := range []string{"ens5", "ens6", "ens7"} {
		recs = append(recs, collectors.Record{Time: at, Kind: collectors.KindSample, Source: "nethealth", Type: "ena", Dims: map[string]string{"iface": i}, Metrics: ena})
	}
	recs = append(recs, collectors.Record{Time: at, Kind: collectors.KindSample, Source: "nethealth", Type: "efa", Dims: map[string]string{"iface": "rdmap0s6"},
		Metrics: map[string]float64{"healthy": 1, "rx_drops": 0, "retrans_pkts": 0, "cmds_err": 0}})
	return recs
}

// publish runs the agent's CloudWatch sink, shaped by cfg as the agent
// shapes it, over a few periods of everything, and returns the distinct
// metrics (name + dimensions: what CloudWatch bills) the stand-in received.
func publish(t *testing.T, cfg config.Config) map[string]bool {
	fake := fakecw.Start(t, "")
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": fakecw.AccessKey, "AWS_SECRET_ACCESS_KEY": fakecw.SecretKey, "AWS_REGION": fakecw.Region,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"} {
		t.Setenv(k, v)
	}
	awsCfg, err := cwsink.AWSConfig(context.Background(), cwsink.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	cw := cfg.CloudWatch
	cw.Period = config.Duration(time.Second) // a minute scaled down
	agg := metrics.New(agent.AggOptions(cw, []metrics.Dim{{Name: "InstanceId", Value: "i-0123456789abcdef0"}}))
	s := cwsink.New(cwsink.Options{Namespace: "EC2DiagCount", API: cwsink.NewClient(awsCfg, fake.URL), Agg: agg, Spool: sp, Period: time.Second,
		RequestTimeout: 5 * time.Second, Log: zap.NewNop()})
	t0 := time.Now().Truncate(time.Second)
	for m := 0; m < 4; m++ {
		s.Write(context.Background(), everything(t0, m))
		time.Sleep(time.Until(t0.Add(time.Duration(m+1) * time.Second)))
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range fake.Datums() {
		got[d.Name+"{"+d.Dims+"}"] = true
	}
	return got
}

// At the default config an instance publishes at most 20 custom metrics,
// whatever its jobs and interfaces (it published 127 with 20 jobs and 2
// ENA: ~$38 per instance-month). Per-job metrics for the jobs a user
// names go by Job alone, shared by the fleet.
func TestDefaultConfigPublishesAtMost20Metrics(t *testing.T) {
	cfg := config.Default()
	got := publish(t, cfg)
	if len(got) > 20 || len(got) < 10 {
		t.Fatalf("%d distinct metrics at the default config with 30 jobs and 4 interfaces, want 10..20: %v", len(got), got)
	}
	for _, want := range []string{"CPUBusy{InstanceId=i-0123456789abcdef0}", "NICAllowanceExceeded{InstanceId=i-0123456789abcdef0}",
		"NICUnhealthy{InstanceId=i-0123456789abcdef0}", "KernelLockups{InstanceId=i-0123456789abcdef0}", "JobRuns{InstanceId=i-0123456789abcdef0}"} {
		if !got[want] {
			t.Errorf("standard set lacks %s: %v", want, got)
		}
	}
	t.Logf("%d metrics: %v", len(got), got)

	cfg.CloudWatch.JobNames = []string{"job-1", "job-2"}
	got = publish(t, cfg)
	fleet := 0
	for k := range got {
		if k == "JobRuns{Job=job-1}" || k == "JobCPUSeconds{Job=job-2}" {
			fleet++
		}
	}
	if fleet != 2 {
		t.Errorf("named jobs' fleet-wide metrics (Job alone) missing: %v", got)
	}

	cfg = config.Default()
	cfg.CloudWatch.Metrics = "detailed"
	if n := len(publish(t, cfg)); n < 100 {
		t.Errorf("detailed set: %d metrics, want the whole catalogue per interface and job", n)
	}
}
