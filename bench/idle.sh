#!/usr/bin/env bash
# Idle cost: the agent at its defaults (5 s sampling) next to node_exporter
# scraped every 15 s, in the same run, on a host with N extra processes
# (default 200). Reports CPU seconds per idle hour for each, their ratio,
# the agent's wake-ups (context switches) per second and its RSS.
# BASE=PATH adds an earlier build of the agent to the same run (same
# config), and reports this build's CPU and RSS as ratios against it: the
# figures against node_exporter move with the machine, the two builds'
# ratio much less.
#   DURATION=120 N=200 [BASE=/tmp/ec2diag-old] bench/idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}; DURATION=${DURATION:-120}
NODE_EXPORTER_VERSION=${NODE_EXPORTER_VERSION:-v1.8.2}
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
# Built as scripts/deb builds the package: static, stripped (RSS counts the
# binary pages it touches).
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/ec2diag" ./cmd/ec2diag
GOBIN="$dir" GOFLAGS=-mod=mod go install "github.com/prometheus/node_exporter@${NODE_EXPORTER_VERSION}"
for i in $(seq "$N"); do sleep 3600 & pids+=($!); done
: > "$dir/syslog"
# SYSLOG_OPTS adds keys to the syslog section (", poll_interval: 10s"),
# EXTRA_CONFIG whole sections.
printf "syslog: {source: files, files: [%s]${SYSLOG_OPTS:-}}\nspikes: {console: \"\"}\n${EXTRA_CONFIG:-}" "$dir/syslog" > "$dir/c.yaml"
AWS_EC2_METADATA_DISABLED=true "$dir/ec2diag" run --config "$dir/c.yaml" --state-dir "$dir/st" 2>"$dir/agent.log" &
AG=$!; pids+=($AG)
# The same agent without the start-up page trim (memory_trim: false), in
# the same run: the baseline its RSS is reported against.
{ cat "$dir/c.yaml"; printf 'memory_trim: false\n'; } > "$dir/c0.yaml"
AWS_EC2_METADATA_DISABLED=true "$dir/ec2diag" run --config "$dir/c0.yaml" --state-dir "$dir/st0" 2>"$dir/agent0.log" &
A0=$!; pids+=($A0)
"$dir/node_exporter" --web.listen-address=127.0.0.1:19100 >/dev/null 2>&1 &
NE=$!; pids+=($NE)
if [ -n "${BASE:-}" ]; then
  AWS_EC2_METADATA_DISABLED=true "$BASE" run --config "$dir/c.yaml" --state-dir "$dir/stb" 2>"$dir/base.log" &
  AB=$!; pids+=($AB)
fi
( while sleep 15; do curl -s -o /dev/null http://127.0.0.1:19100/metrics || true; done ) &
pids+=($!)
sleep 20 # start-up (first checks, first samples) is not idle
# CPU time in ns from the scheduler (schedstat, summed over threads): the
# ticks of /proc/PID/stat are 10 ms each, too coarse for ~2 s an hour.
# Go's threads live as long as the process, so none is lost by exiting.
ticks() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END{printf "%d", s/1e6}'; }
ctx() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/{s+=$2} END{print s}'; }
a0=$(ticks $AG); n0=$(ticks $NE); c0=$(ctx $AG); b0=0
[ -n "${BASE:-}" ] && b0=$(ticks $AB)
sleep "$DURATION"
a1=$(ticks $AG); n1=$(ticks $NE); c1=$(ctx $AG); b1=0
[ -n "${BASE:-}" ] && b1=$(ticks $AB)
hz=1000 # ticks() is in ms
rss=$(awk '/VmRSS/{print int($2/1024)}' /proc/$AG/status)
rss0=$(awk '/VmRSS/{print int($2/1024)}' /proc/$A0/status)
awk -v a=$((a1-a0)) -v n=$((n1-n0)) -v c=$((c1-c0)) -v d="$DURATION" -v hz="$hz" -v rss="$rss" -v rss0="$rss0" -v procs="$(ls /proc | grep -c '^[0-9]')" 'BEGIN{
  as=a/hz*3600/d; ns=n/hz*3600/d
  printf "processes=%d agent_cpu_s_per_hour=%.2f (%.3f%% of a core) node_exporter_cpu_s_per_hour=%.2f ratio=%.2fx agent_wakeups_per_s=%.1f agent_rss_mib=%d (untrimmed %d: %.2fx) over %ds\n",
    procs, as, as/36, ns, (ns>0?as/ns:0), c/d, rss, rss0, (rss0>0?rss/rss0:0), d}'
if [ -n "${BASE:-}" ]; then
  rssb=$(awk '/VmRSS/{print int($2/1024)}' /proc/$AB/status)
  awk -v a=$((a1-a0)) -v b=$((b1-b0)) -v d="$DURATION" -v rss="$rss" -v rssb="$rssb" 'BEGIN{
    printf "base_cpu_s_per_hour=%.2f cpu_vs_base=%.2fx base_rss_mib=%d rss_vs_base=%.2fx\n",
      b/1000*3600/d, (b>0?a/b:0), rssb, (rssb>0?rss/rssb:0)}'
fi
