package cloudwatch

import (
	"fmt"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/collectors"
	"github.com/ec2diag/ec2diag/internal/testkit/fakecw"
	"golang.org/x/sys/unix"
)

// hourOfRecords is what the agent produces in an hour at default
// settings on a host with two ENA interfaces and twenty distinct cron
// jobs (each every 5 minutes), with a log line read per second.
func hourOfRecords(t0 time.Time) []collectors.Record {
	var rs []collectors.Record
	host := map[string]float64{"cpu_busy_pct": 12, "cpu_user_pct": 8, "cpu_system_pct": 3, "cpu_iowait_pct": 1, "cpu_steal_pct": 0,
		"mem_used_pct": 40, "mem_available_pct": 55, "psi_cpu_some_avg10": 1, "psi_memory_some_avg10": 0, "psi_memory_full_avg10": 0, "psi_io_full_avg10": 0}
	nic := map[string]float64{"healthy": 1, "bw_in_allowance_exceeded": 0, "bw_out_allowance_exceeded": 0, "pps_allowance_exceeded": 0,
		"conntrack_allowance_exceeded": 0, "linklocal_allowance_exceeded": 0, "conntrack_allowance_available": 50000, "total_resets": 0,
		"tx_timeout": 0, "carrier_down_count": 0, "rx_dropped": 0, "tx_dropped": 0, "rx_over_errors": 0}
	for s := 0; s < 3600; s += 5 {
		at := t0.Add(time.Duration(s) * time.Second)
		rs = append(rs, collectors.Record{Time: at, Kind: collectors.KindSample, Source: "host", Type: "host", Metrics: host})
		if s%30 == 0 {
			for _, i := range []string{"ens5", "ens6"} {
				rs = append(rs, collectors.Record{Time: at, Kind: collectors.KindSample, Source: "nethealth", Type: "ena", Metrics: nic, Dims: map[string]string{"iface": i}})
			}
		}
		if s%300 == 0 {
			rs = append(rs, collectors.Record{Time: at, Kind: collectors.KindSample, Source: "logsource", Metrics: map[string]float64{"lines_read": float64(s), "lines_unparsed": 0}})
			for j := 0; j < 20; j++ {
				rs = append(rs, collectors.Record{Time: at.Add(time.Duration(j) * time.Second), Kind: collectors.KindEvent, Type: "job_run",
					Dims: map[string]string{"job": fmt.Sprintf("job-%02d", j)}, Metrics: map[string]float64{"cpu_seconds": 0.5, "duration_seconds": 2, "peak_rss_bytes": 30 << 20}})
			}
		}
	}
	return rs
}

func cpuNow() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublishHour pushes one simulated hour through aggregation,
// the spool and the real SDK to the fake CloudWatch and reports the
// requests and bytes an instance sends per hour. The baseline is the
// same hour aggregated only (no spool, no network), measured in the same
// run: the ratio says what delivery costs on top.
func BenchmarkPublishHour(b *testing.B) {
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	recs := hourOfRecords(t0)
	b.Run("aggregate-only", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r := &rig{}
			r.agg = newAggForBench()
			for j := range recs {
				r.agg.Add(&recs[j])
			}
			for m := 1; m <= 60; m++ {
				r.agg.Flush(t0.Add(time.Duration(m)*time.Minute), false)
			}
		}
	})
	b.Run("publish", func(b *testing.B) {
		var reqs, bytes, spooled float64
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			fake := fakecw.Start(b, "")
			r := newBenchRig(b, fake)
			b.StartTimer()
			c0 := cpuNow()
			next := 0
			for m := 1; m <= 60; m++ {
				end := t0.Add(time.Duration(m) * time.Minute)
				for next < len(recs) && recs[next].Time.Before(end) {
					r.agg.Add(&recs[next])
					next++
				}
				r.sink.flush(end, false)
				spooled += float64(r.spool.Size())
				if err := r.sink.Drain(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			cpu += cpuNow() - c0
			n, _, _, _, w := fake.Counts()
			reqs += float64(n)
			bytes += float64(w)
		}
		b.ReportMetric(reqs/float64(b.N), "requests/hour")
		b.ReportMetric(bytes/float64(b.N), "wire-bytes/hour")
		b.ReportMetric(spooled/float64(b.N), "spool-bytes/hour")
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/hour")
	})
}
