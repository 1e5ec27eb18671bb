#!/bin/sh
# Scenario (f): a job that writes to a disk that stops serving (the harness
# throttles the guest's disk to 1 IOPS and 16 KiB/s through QMP, as an EBS
# volume out of burst credits or stalled would be): synchronous, direct
# writes, each waiting on the device, over the same 4 MiB so the disk
# does not fill.
while :; do
  dd if=/dev/zero of=/var/tmp/iostall bs=64k count=64 oflag=direct,dsync conv=notrunc status=none
done
