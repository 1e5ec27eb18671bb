#!/bin/sh
# Scenario (c): CPU only, on every vCPU.
for i in $(seq "$(nproc)"); do yes >/dev/null & done
wait
