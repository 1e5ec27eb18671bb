#!/bin/sh
# Scenario (b): a slow thrash: the working set just under RAM, so program
# text is evicted and every process faults it back in; no OOM kill.
exec /usr/local/bin/hog thrash 0.3
