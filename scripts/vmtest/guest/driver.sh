#!/bin/bash
# Runs at every boot of the VM test's guest (ci-driver.service). Boot 1
# installs the .deb; every later boot first records what the agent kept of
# the boot before (the scenario that hung or loaded it), then arms the next
# scenario from /ci/plan. The host watches /dev/ttyS1 (heartbeat and these
# markers) and resets the guest when it hangs, as the reboot alarm would.
exec >>/ci/driver.log 2>&1
set -u
say() { echo "$*" >/dev/ttyS1; echo "$(date +%T) $*"; }
stage=$(( $(cat /ci/stage 2>/dev/null || echo 0) + 1 ))
echo "$stage" >/ci/stage; sync
mapfile -t plan </ci/plan
say "BOOT $stage"
mkdir -p /ci/results; cat /proc/sys/kernel/random/boot_id >/ci/results/boot-$stage.id

wait_active() {
  for _ in $(seq 240); do
    [ "$(systemctl is-active ec2diag)" = active ] && return 0
    sleep 1
  done
  return 1
}

if [ "$stage" = 1 ]; then
  DEBIAN_FRONTEND=noninteractive dpkg -i /ci/ec2diag.deb >/ci/results/dpkg.log 2>&1
  echo "dpkg rc=$?" >>/ci/results/dpkg.log
fi
wait_active; echo "rc=$?" >/ci/results/active-$stage.txt
systemctl show -p ActiveState,SubState,Result,NRestarts,StatusText,MainPID ec2diag >>/ci/results/active-$stage.txt
systemctl status --no-pager -n 0 ec2diag >>/ci/results/active-$stage.txt 2>&1

prev=${plan[$((stage-2))]:-}
if [ "$stage" -gt 1 ] && [ -n "$prev" ]; then
  d=/ci/results/$prev; mkdir -p "$d"
  # Let the agent finish its start (it reads the log from its checkpoint).
  sleep 20
  ec2diag incidents --boot -1 --format json >"$d/incidents.json" 2>"$d/incidents.err"
  ec2diag incidents --boot -1 >"$d/incidents.txt" 2>&1
  cp -a /var/lib/ec2diag/incidents.jsonl* "$d/" 2>/dev/null
  date +%s >"$d/collected"
  sync
fi

scen=${plan[$((stage-1))]:-}
if [ -z "$scen" ]; then
  # Last boot: it must not be an incident either. Give the agent a minute
  # of this boot, then record boot 0 and stop.
  sleep 60
  ec2diag incidents --boot 0 --format json >/ci/results/last-boot.json 2>&1
  # The command lines of a stock guest: redaction's false-positive corpus.
  ps -eo args= >/ci/results/cmdlines.txt
  # What systemd-pstore archived (a panic's dump, as the kernel wrote it).
  cp -a /var/lib/systemd/pstore /ci/results/pstore 2>/dev/null
  cp -a /var/lib/ec2diag /ci/results/state 2>/dev/null
  sync
  say "DONE"
  systemctl poweroff
  exit 0
fi

# Scenarios start on a cron minute far enough ahead that cron sees the file.
now=$(date +%s); at=$(( (now/60 + 1) * 60 )); [ $((at - now)) -lt 15 ] && at=$((at + 60))
mkdir -p "/ci/results/$scen"; echo "$at" >"/ci/results/$scen/armed"; sync
cronline() { echo "$(date -d @"$at" +%-M) $(date -d @"$at" +%-H) * * * root $1" >/etc/cron.d/ec2diag-scenario; }
case "$scen" in
  quiet)
    rm -f /etc/cron.d/ec2diag-scenario
    say "ARMED $scen $at"
    sleep $(( at - now + 100 ))
    say "REBOOT"; sync; systemctl reboot ;;
  iostall)
    # The harness stalls the disk from at+5 to at+65; the machine lives
    # on, so the guest reboots itself once the job had time to finish.
    cronline "/usr/local/bin/$scen.sh"
    say "ARMED $scen $at"
    sleep $(( at - now + 125 ))
    systemctl show -p ActiveState,SubState,NRestarts,StatusText ec2diag >"/ci/results/$scen/after.txt"
    pkill -f iostall.sh; pkill -x dd
    say "REBOOT"; sync; systemctl reboot ;;
  nmi)
    # The operator's opt-in, as docs/hangs.md says; the harness sends the
    # NMI (EC2's diagnostic interrupt) while the job burns the CPUs.
    ln -sf /usr/share/ec2diag/sysctl/60-ec2diag-nmi-panic.conf /etc/sysctl.d/
    sysctl --system >/dev/null
    ec2diag check --local >"/ci/results/$scen/check.txt" 2>&1
    cronline "/usr/local/bin/$scen.sh"
    say "ARMED $scen $at" ;;
  runaway)
    rm -f /etc/cron.d/ec2diag-scenario
    say "ARMED $scen $at"
    sleep $(( at - now ))
    systemctl start --no-block runaway.service ;;
  *)
    cronline "/usr/local/bin/$scen.sh"
    say "ARMED $scen $at" ;;
esac
