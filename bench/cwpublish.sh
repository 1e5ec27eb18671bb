#!/usr/bin/env bash
# An hour of a default agent's data (2 ENA interfaces, 20 cron jobs every
# 5 minutes) through aggregation, the spool and the real SDK to the fake
# CloudWatch: requests, bytes and CPU per hour, and the cost of delivery as
# a ratio against aggregation alone, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run XXX -bench PublishHour -benchtime 5x -count 1 ./internal/sink/cloudwatch/)
echo "$out" | grep Benchmark
echo "$out" | awk '/aggregate-only/{a=$3} /publish-/{p=$3; for(i=1;i<=NF;i++){if($i=="requests/hour")r=$(i-1); if($i=="wire-bytes/hour")w=$(i-1); if($i=="cpu-ms/hour")c=$(i-1); if($i=="spool-bytes/hour")s=$(i-1)}}
  END{printf "per hour: %d PutMetricData calls, %.0f KB on the wire, %.0f KB written to the spool, %.0f ms CPU (fake server included)\nratio publish/aggregate-only wall time = %.1f\n", r, w/1000, s/1000, c, p/a}'
