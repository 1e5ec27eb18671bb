#!/bin/sh
# Scenario (g): a busy machine an operator gives up on and sends EC2's
# diagnostic interrupt (the harness injects an NMI through QMP).
for i in $(seq "$(nproc)"); do yes >/dev/null & done
wait
