#!/usr/bin/env bash
# Syslog reader throughput: tailer alone and tailer+parser, next to
# `cat FILE > /dev/null` on the same file in the same run (page cache warm for
# all three). SIZE_MB (default 2048) sets the file size; the file is removed
# afterwards. Report ratios, not absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-2048}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/tailbench" ./bench/tailbench
"$dir/tailbench" -file "$dir/syslog" -gen-mb "$SIZE_MB"
cat "$dir/syslog" > /dev/null # warm the cache
s=$(date +%s.%N); cat "$dir/syslog" > /dev/null; e=$(date +%s.%N)
cat_mbps=$(awk -v s="$s" -v e="$e" -v b="$(stat -c %s "$dir/syslog")" 'BEGIN{printf "%.1f", b/1e6/(e-s)}')
echo "mode=cat mb_per_s=$cat_mbps"
for m in read parse; do
  out=$("$dir/tailbench" -file "$dir/syslog" -mode "$m")
  echo "$out"
  mbps=$(echo "$out" | sed -n 's/.*mb_per_s=\([0-9.]*\).*/\1/p')
  awk -v a="$mbps" -v c="$cat_mbps" -v m="$m" 'BEGIN{printf "ratio %s/cat = %.2f\n", m, a/c}'
done
