#!/usr/bin/env bash
# One ENA/EFA health check of 8 ENA interfaces (32 queues each) and 4 EFA
# devices in a fixture sysfs tree: the daemon's steady state (full read
# every 10th check, held descriptors) against reading everything every
# time (the baseline, what `ec2diag health` does), in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run XXX -bench 'Check|Attr' -benchmem -count 3 ./collectors/nethealth/)
echo "$out" | grep Benchmark
echo "$out" | awk '/BenchmarkCheck-/{s+=$3; n++} /BenchmarkCheckFull-/{f+=$3; m++}
  END{printf "steady check %.0f us, full check %.0f us, ratio steady/full = %.2f\n", s/n/1000, f/m/1000, (s/n)/(f/m)}'
