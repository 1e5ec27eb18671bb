#!/usr/bin/env bash
# How well the agent measures a job's CPU: a job script that mixes a
# long-lived burner, hundreds of short children and a nested shell runs
# N times as a "cron job" under the agent (local mode, 1 s samples), then
# N times under bash's `time`; reports agent/time per run, the ratio a
# perfect accounting would put at 1.00.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
export AWS_EC2_METADATA_DISABLED=true
d=$(mktemp -d); trap 'kill $agent 2>/dev/null || true; rm -rf "$d"' EXIT
go build -o "$d/ec2diag" ./cmd/ec2diag
: > "$d/syslog"; : > "$d/kmsg"
cat > "$d/config.yaml" <<CFG
host:
  interval: 1s
syslog:
  source: files
  files: [$d/syslog]
  poll_interval: 100ms
spikes:
  console: $d/kmsg
CFG
cat > "$d/job.sh" <<'JOB'
#!/bin/sh
timeout 2 yes > /dev/null &
i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); done
sh -c 'timeout 1.5 yes > /dev/null'
wait
JOB
chmod +x "$d/job.sh"
"$d/ec2diag" run --config "$d/config.yaml" --state-dir "$d/state" --print > "$d/out.jsonl" 2> "$d/err.log" &
agent=$!
sleep 2
for _ in $(seq "$n"); do
  setsid sh -c 'echo "$(date +%Y-%m-%dT%H:%M:%S.000000+00:00) benchhost CRON[$$]: (root) CMD ('"$d"'/job.sh)" >> '"$d"'/syslog; exec '"$d"'/job.sh' &
  wait $!
  sleep 4
done
sleep 4
kill -INT $agent; wait $agent || true
mapfile -t agentcpu < <(grep '"type":"job_run"' "$d/out.jsonl" | grep -o '"cpu_seconds":[0-9.]*' | cut -d: -f2)
timed=()
for _ in $(seq "$n"); do
  t=$( { TIMEFORMAT='%U %S'; time "$d/job.sh"; } 2>&1 | awk '{print $1+$2}')
  timed+=("$t")
done
[ "${#agentcpu[@]}" -eq "$n" ] || { echo "expected $n job_run records, got ${#agentcpu[@]}" >&2; exit 1; }
for i in $(seq 0 $((n-1))); do
  awk -v a="${agentcpu[$i]}" -v t="${timed[$i]}" 'BEGIN{printf "run %d: agent %.2f s, time %.2f s, ratio %.3f\n", '"$i"'+1, a, t, a/t}'
done
