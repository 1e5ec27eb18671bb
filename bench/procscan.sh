#!/usr/bin/env bash
# One sampling tick (ec2diag's /proc scan) vs a naive gopsutil scan of every
# process, measured in the same run with ~2000 extra processes
# (EC2DIAG_BENCH_PROCS to change). Reports the CPU ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run XXX -bench 'Tick|NaiveGopsutil' -benchtime 20x -count 1 ./collectors/procstat/)
echo "$out" | grep Benchmark
echo "$out" | awk '/BenchmarkTick/{for(i=1;i<=NF;i++) if($i=="cpu-ms/op") t=$(i-1)} /BenchmarkNaive/{for(i=1;i<=NF;i++) if($i=="cpu-ms/op") n=$(i-1)} END{printf "ratio tick/naive CPU = %.3f (%.2f ms vs %.2f ms)\n", t/n, t, n}'
