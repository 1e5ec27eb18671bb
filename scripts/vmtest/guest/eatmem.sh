#!/bin/sh
# Scenario (a): memory to exhaustion, fast, with a CPU burner beside it.
yes >/dev/null &
exec /usr/local/bin/hog mem 400
