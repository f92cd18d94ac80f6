#!/bin/sh
# Runs every unit test binary, then every integration test binary, of build
# dir $1, counts the cmocka results and ends with one "N passed, N failed"
# line; exits 1 on any failure. A binary that crashes or times out counts as
# one failure. TEST_PREFIX (e.g. valgrind ...) is put before each binary;
# TEST_FILTER runs only binaries whose name contains it.
#
# TEST_JOBS binaries (default 2, the machine's cores; 1 under TEST_PREFIX)
# run at once, each with its own servers on its own sockets and ports; the
# suites that measure time or take a fleet through failovers (ALONE below)
# run afterwards one at a time, on a machine with nothing else of ours on
# it. Results are printed in name order once all have run.
# SPDX-License-Identifier: MIT
set -u
O=${1:-build}
export SUPERIMAP_BIN_DIR="$(cd "$O/bin" && pwd)"
export SUPERIMAP_SRC_DIR="$(pwd)"
TIMEOUT=${TEST_TIMEOUT:-600}
prefix=${TEST_PREFIX:-}
jobs=${TEST_JOBS:-2}
[ -n "$prefix" ] && jobs=1
ALONE=" test_fleet test_fleet_drain test_fleet_redis test_fleet_sentinel test_sentinel \
test_system_failover test_watcher_renewals test_watcher_chaos test_dispatcher_fleet \
test_node_lifecycle test_admin_dashboard test_readme_commands "
passed=0
failed=0
failures=""
start=$(date +%s)

command -v redis-server >/dev/null 2>&1 || {
    echo "redis-server not found: install the Debian package redis-server (make deps)" >&2
    echo "0 passed, 1 failed"
    exit 1
}

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

# Runs binary $1 into $results/<n>.<name>.out and writes "passed failed exit
# seconds" to .res beside it ($2: its number, to keep the order).
run_one() {
    t=$1
    name=$(basename "$t")
    out="$results/$2.$name.out"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    timeout -k 10 "$TIMEOUT" $prefix "$t" >"$out" 2>&1 </dev/null
    rc=$?
    t1=$(date +%s)
    p=$(sed -n 's/.*\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/.*\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    if grep -q -e 'AddressSanitizer' -e 'runtime error:' -e 'LeakSanitizer' "$out"; then
        [ "$f" -eq 0 ] && f=1
    fi
    echo "$p $f $rc $((t1 - t0))" >"$results/$2.$name.res"
}

# The binaries to run: lane i of the shared ones gets every jobs-th.
n=0
alone=""
for t in "$O"/tests/unit/test_* "$O"/tests/integration/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d | *.o) continue ;; esac
    name=$(basename "$t")
    if [ -n "${TEST_FILTER:-}" ]; then
        case "$name" in *"$TEST_FILTER"*) ;; *) continue ;; esac
    fi
    n=$((n + 1))
    key=$(printf '%04d' "$n")
    case "$t" in
    */integration/*) case "$ALONE" in *" $name "*)
        alone="$alone $key:$t"
        continue
        ;;
    esac ;;
    esac
    echo "$key:$t" >>"$results/lane.$((n % jobs))"
done

lane=0
while [ "$lane" -lt "$jobs" ]; do
    if [ -f "$results/lane.$lane" ]; then
        (while IFS=: read -r key t; do run_one "$t" "$key"; done <"$results/lane.$lane") &
    fi
    lane=$((lane + 1))
done
wait
for item in $alone; do
    run_one "${item#*:}" "${item%%:*}"
done

for res in "$results"/*.res; do
    [ -f "$res" ] || continue
    base=${res%.res}
    name=${base#"$results"/}
    name=${name#*.}
    read -r p f rc secs <"$res"
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failures="$failures $name"
        echo "---- $name: FAILED (exit $rc, $secs s)"
        cat "$base.out"
    else
        echo "---- $name: $p passed ($secs s)"
    fi
done

end=$(date +%s)
[ -n "$failures" ] && echo "failed:$failures"
echo "tests took $((end - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
