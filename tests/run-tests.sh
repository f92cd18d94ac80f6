#!/bin/sh
# Runs every unit test binary, then every integration test binary, of build
# dir $1, counts the cmocka results and ends with one "N passed, N failed"
# line; exits 1 on any failure. A binary that crashes or times out counts as
# one failure. TEST_PREFIX (e.g. valgrind ...) is put before each binary;
# TEST_FILTER runs only binaries whose name contains it.
# SPDX-License-Identifier: MIT
set -u
O=${1:-build}
export SUPERIMAP_BIN_DIR="$(cd "$O/bin" && pwd)"
export SUPERIMAP_SRC_DIR="$(pwd)"
TIMEOUT=${TEST_TIMEOUT:-600}
prefix=${TEST_PREFIX:-}
passed=0
failed=0
failures=""
start=$(date +%s)

command -v redis-server >/dev/null 2>&1 || {
    echo "redis-server not found: install the Debian package redis-server (make deps)" >&2
    echo "0 passed, 1 failed"
    exit 1
}

for t in "$O"/tests/unit/test_* "$O"/tests/integration/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d | *.o) continue ;; esac
    name=$(basename "$t")
    if [ -n "${TEST_FILTER:-}" ]; then
        case "$name" in *"$TEST_FILTER"*) ;; *) continue ;; esac
    fi
    out=$(mktemp)
    t0=$(date +%s)
    # shellcheck disable=SC2086
    timeout -k 10 "$TIMEOUT" $prefix "$t" >"$out" 2>&1
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
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failures="$failures $name"
        echo "---- $name: FAILED (exit $rc, $((t1 - t0)) s)"
        cat "$out"
    else
        echo "---- $name: $p passed ($((t1 - t0)) s)"
    fi
    rm -f "$out"
done

end=$(date +%s)
[ -n "$failures" ] && echo "failed:$failures"
echo "tests took $((end - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
