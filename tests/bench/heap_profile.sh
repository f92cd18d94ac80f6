#!/bin/sh
# The heap of idle watcher sessions, allocation site by allocation site
# (docs/performance.md, "Memory per idle session"):
#
#   tests/bench/heap_profile.sh [build dir] ["<BENCH_ONLY>"] [BENCH_SCALE]
#   e.g. tests/bench/heap_profile.sh build "5k plain"; ... build "10k TLS" 0.2
#
# Runs one scenario of bench_watcher with the watcher under heaptrack's
# preload (raw record, no interpretation while it runs). bench_watcher stops
# the watcher with SIGTERM once its sessions have idled; the wrapper here
# turns that into SIGKILL, so the record ends with the idle heap (a clean
# exit would free everything first) and the watcher's /proc status of that
# moment. Then heap_pages.awk prints the live blocks by site: their count,
# bytes asked, glibc chunk bytes, and the 4 KiB pages they keep resident
# (each page shared among the chunks in it). Needs heaptrack (scripts/deps.sh).
# Leaves everything in a new directory it names at the end.
# SPDX-License-Identifier: MIT
set -eu
O=${1:-build}
only=${2:-5k plain}
scale=${3:-1}
src=$(cd "$(dirname "$0")/../.." && pwd)
case $O in /*) ;; *) O=$src/$O ;; esac
preload=/usr/lib/heaptrack/libheaptrack_preload.so
interpret=/usr/lib/heaptrack/libexec/heaptrack_interpret
for f in "$preload" "$interpret" "$O/bin/superimap-watcher" "$O/bench/bench_watcher"; do
    [ -e "$f" ] || { echo "heap_profile: $f is missing (make all build/bench/bench_watcher; scripts/deps.sh heaptrack)" >&2; exit 1; }
done
dir=$(mktemp -d /tmp/superimap-heap-XXXXXX)
mkdir "$dir/bin" "$dir/bench"
cp "$O/bench/bench_watcher" "$dir/bench/"
ln -s "$O/bin/superimap-fake-imapd" "$dir/bin/"
cat >"$dir/bin/superimap-watcher" <<WRAP
#!/bin/sh
LD_PRELOAD=$preload DUMP_HEAPTRACK_OUTPUT=$dir/raw $O/bin/superimap-watcher &
child=\$!
trap 'cat /proc/\$child/status > $dir/status; kill -9 \$child' TERM
wait \$child
wait \$child
WRAP
chmod +x "$dir/bin/superimap-watcher"
BENCH_ONLY=$only BENCH_SCALE=$scale "$dir/bench/bench_watcher" >"$dir/bench.txt" 2>&1 || true
grep '^| [0-9]' "$dir/bench.txt" || { echo "heap_profile: the scenario failed; see $dir/bench.txt" >&2; exit 1; }
"$interpret" <"$dir/raw" >"$dir/interpreted"
grep -E '^(VmRSS|RssAnon|VmPTE|VmStk)' "$dir/status"
printf 'page bytes\tchunk bytes\tblocks\tbytes asked\tsite\n'
awk -f "$src/tests/bench/heap_pages.awk" "$dir/interpreted" "$dir/raw" | sort -t "$(printf '\t')" -k1,1rn
echo "heap_profile: record and outputs in $dir"
