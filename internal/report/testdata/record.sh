#!/usr/bin/env bash
# Records the incident the report's golden files are made from: the real
# agent on this machine, real processes in real cgroup v2 groups, a real
# cron-style job run, a login from a fake sshd (a renamed shell whose pid
# the auth.log line gives), and two kernel lines (an OOM kill, a hung
# task) written to the syslog file the agent tails. Needs root and a
# writable cgroup v2 hierarchy. Writes testdata/recorded/incidents.jsonl.
#   internal/report/testdata/record.sh && go test ./internal/report -update
set -euo pipefail
# In a PID namespace of its own with its own /proc: the agent sees only the
# recording's processes, not this machine's (whose command lines are none
# of the fixture's business).
if [ -z "${EC2DIAG_RECORD_NS:-}" ]; then
  exec env EC2DIAG_RECORD_NS=1 unshare --pid --fork --mount --mount-proc "$0" "$@"
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
cg=/sys/fs/cgroup/unified
[ -e "$cg/cgroup.procs" ] || cg=/sys/fs/cgroup
svc=$cg/system.slice/etl.service sess=$cg/user.slice/user-1000.slice/session-7.scope
killgroups() { for g in "$svc" "$sess"; do for p in $(cat "$g/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done; done; }
trap 'killgroups; kill -9 $(jobs -p) 2>/dev/null || true; sleep 1; rmdir "$svc" "$sess" 2>/dev/null || true' EXIT
mkdir -p "$svc" "$sess"

(cd "$root" && CGO_ENABLED=0 go build -o "$work/ec2diag" ./cmd/ec2diag)
: > "$work/syslog"; : > "$work/auth.log"
cat > "$work/config.yaml" <<CFG
host:
  interval: 2s
syslog:
  source: files
  files: [$work/syslog, $work/auth.log]
spikes:
  snapshot_every: 10s
  boot_grace: 0s # a machine booted minutes ago still records the spike
jobs:
  cron_parents: [cron, bash, record.sh]
CFG
log() { echo "$(date +%Y-%m-%dT%H:%M:%S.%6N%:z) ip-10-0-0-12 $2" >> "$work/$1"; }

AWS_EC2_METADATA_DISABLED=true "$work/ec2diag" run --config "$work/config.yaml" --state-dir "$work/state" \
  --log-format json 2> "$work/agent.log" &
agent=$!
sleep 20 # calm samples before onset

# A service: two python3 burners in etl.service, a secret on the command line,
# and their parent holding 96 MiB it wrote (so the report shows growth).
mkdir -p "$work/opt/etl"
printf 'import multiprocessing, time\ndef burn():\n    while True: pass\nif __name__ == "__main__":\n    for _ in range(2): multiprocessing.Process(target=burn).start()\n    hoard = b"x" * (96 << 20)\n    time.sleep(3600)\n' > "$work/opt/etl/run.py"
sh -c "echo \$\$ > $svc/cgroup.procs; exec python3 $work/opt/etl/run.py --full --password=hunter2" &
# A login: "sshd" is a copy of bash; its pid is the one auth.log names.
cp /bin/bash "$work/sshd"
"$work/sshd" -c "echo \$\$ > $sess/cgroup.procs; sleep 1; yes > /dev/null" &
log auth.log "sshd[$!]: Accepted publickey for ubuntu from 10.0.0.5 port 51514 ssh2: ED25519 SHA256:Zm9vYmFy"
# The stock sysstat line, a real (short) job run beside the spike.
setsid sh -c 'sleep 8' &
log syslog "CRON[$!]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"
sleep 14
log syslog "kernel: [63012.113820] Out of memory: Killed process 4242 (java) total-vm:4194304kB, anon-rss:1048576kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:2200kB oom_score_adj:0"
sleep 8
log syslog "kernel: [63020.501123] INFO: task jbd2/nvme0n1p1-8:312 blocked for more than 120 seconds."
sleep 16
killgroups
sleep 20 # the spike ends
kill -TERM $agent; wait $agent || true
mkdir -p "$here/recorded"; cp "$work/state/incidents.jsonl" "$here/recorded/incidents.jsonl"
grep -c . "$here/recorded/incidents.jsonl"
