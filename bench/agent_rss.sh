#!/usr/bin/env bash
# The whole agent's RSS at steady state on a host with N extra processes
# (default 2000), sampling every second for DURATION seconds (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}; DURATION=${DURATION:-30}
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; [ -n "${AG:-}" ] && kill "$AG" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
go build -o "$dir/ec2diag" ./cmd/ec2diag
for i in $(seq "$N"); do sleep 600 & pids+=($!); done
: > "$dir/syslog"
printf 'host: {interval: 1s}\nsyslog: {source: files, files: [%s]}\nspikes: {console: ""}\n' "$dir/syslog" > "$dir/c.yaml"
AWS_EC2_METADATA_DISABLED=true "$dir/ec2diag" run --config "$dir/c.yaml" --state-dir "$dir/st" 2>/dev/null &
AG=$!
sleep "$DURATION"
rss=$(awk '/VmRSS/{print $2}' /proc/$AG/status); hwm=$(awk '/VmHWM/{print $2}' /proc/$AG/status)
cpu=$(awk '{print ($14+$15)/100}' /proc/$AG/stat)
echo "processes=$(ls /proc | grep -c '^[0-9]') agent_rss_mib=$((rss/1024)) agent_peak_rss_mib=$((hwm/1024)) agent_cpu_seconds=$cpu over ${DURATION}s"
