#!/usr/bin/env bash
# A flood of forged cron lines (`logger -t 'CRON[pid]'` would write them)
# against a running agent in local mode: how long until every line is read
# and what it cost, for BASELINE (another build, e.g. an older commit) and
# this tree's build, in the same run. N lines (default 50000).
# Usage: bench/forged.sh [BASELINE_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50000}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/ec2diag" ./cmd/ec2diag
python3 - "$dir/lines" "$N" <<'PY'
import sys, datetime
t = datetime.datetime(2026, 12, 1)
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        ts = (t + datetime.timedelta(microseconds=100 * i)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"
        f.write(f"{ts} h CRON[{100000 + i}]: (root) CMD (backup.sh)\n")
PY
run() {
  local name=$1 bin=$2 d="$dir/$1"
  mkdir -p "$d"
  : > "$d/syslog"
  cat > "$d/config.yaml" <<CFG
syslog:
  source: files
  files: [$d/syslog]
sinks:
  file:
    path: $d/events.jsonl
CFG
  AWS_EC2_METADATA_DISABLED=true "$bin" run --config "$d/config.yaml" --state-dir "$d/state" --log-format json 2>"$d/log" &
  local pid=$!
  sleep 2
  local c0; c0=$(awk '{print $14+$15}' /proc/$pid/stat)
  local s; s=$(date +%s.%N)
  cat "$dir/lines" >> "$d/syslog"
  while [ "$(grep -c '"type":"job_start"' "$d/events.jsonl" 2>/dev/null || true)" -lt "$N" ]; do
    sleep 0.2
    if [ "$(echo "$(date +%s.%N) - $s > 300" | bc)" = 1 ]; then echo "$name: gave up after 300 s"; break; fi
  done
  local e; e=$(date +%s.%N)
  local c1; c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  local rss; rss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  awk -v n="$name" -v s="$s" -v e="$e" -v c="$((c1-c0))" -v N="$N" -v r="$rss" 'BEGIN{w=e-s; printf "%s: %d lines in %.1f s wall, %.1f s CPU (%.0f lines/s), peak RSS %d MiB\n", n, N, w, c/100, N/w, r/1024}'
}
if [ $# -ge 1 ]; then run baseline "$1"; fi
run this "$dir/ec2diag"
