#!/bin/sh
# Runs every benchmark of build dir $1 (make bench): each executable
# <build dir>/bench/bench_* in name order, after a header naming the machine
# and the date, so tables from different runs can be compared. The benchmarks
# print their own Markdown tables; nothing here judges the numbers (timing is
# never a failure). Exits 1 only if a benchmark itself exits non-zero, after
# running the others. BENCH_FILTER runs only those whose name contains it.
# SPDX-License-Identifier: MIT
set -u
O=${1:-build}

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
# shellcheck disable=SC3045 # dash, bash and busybox sh all have ulimit -n
nofile=$(ulimit -n 2>/dev/null || echo unknown)

echo "# superimap benchmarks"
echo
echo "| | |"
echo "|---|---|"
echo "| date | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
echo "| revision | $(git rev-parse --short HEAD 2>/dev/null || echo unknown) |"
echo "| CPU | ${cpu:-unknown} |"
echo "| cores (nproc) | $(nproc 2>/dev/null || echo unknown) |"
echo "| RAM | ${ram:-unknown} |"
echo "| kernel | $(uname -srm) |"
echo "| open files limit | $nofile |"
echo

ran=0
failed=""
for b in "$O"/bench/bench_*; do
    if [ ! -f "$b" ] || [ ! -x "$b" ]; then
        continue
    fi
    case "$b" in *.d | *.o) continue ;; esac
    name=$(basename "$b")
    if [ -n "${BENCH_FILTER:-}" ]; then
        case "$name" in *"$BENCH_FILTER"*) ;; *) continue ;; esac
    fi
    echo "## $name"
    echo
    start=$(date +%s)
    "$b"
    rc=$?
    echo
    if [ "$rc" -ne 0 ]; then
        echo "**$name exited with status $rc**"
        echo
        failed="$failed $name"
    fi
    echo "_$name took $(($(date +%s) - start)) s_"
    echo
    ran=$((ran + 1))
done

if [ "$ran" -eq 0 ]; then
    echo "No benchmarks built yet: $O/bench/bench_* (from tests/bench/bench_*.c) is empty."
    exit 0
fi
if [ -n "$failed" ]; then
    echo "benchmarks that failed:$failed"
    exit 1
fi
echo "$ran benchmark(s) ran."
