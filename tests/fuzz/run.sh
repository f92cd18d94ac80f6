#!/bin/sh
# Builds and runs each libFuzzer driver for a bounded time (make fuzz):
#
#   run.sh <build dir> <seconds> "<pkg-config cflags>" "<libs>" fuzz_<name>.c...
#
# <build dir> holds libsuperimap.a built with clang and
# -fsanitize=fuzzer-no-link,address,undefined (the Makefile's fuzz target).
# Each driver is linked with -fsanitize=fuzzer,address,undefined into
# <build dir>/fuzzers/fuzz_<name>, then run on a temporary copy of its seed
# corpus tests/fuzz/corpus_<name>/ (so the inputs libFuzzer adds never land in
# the repository) with -max_total_time=<seconds>. One summary line per
# driver; the full log is <build dir>/fuzzers/fuzz_<name>.log and crashing
# inputs are kept in <build dir>/fuzzers/artifacts/fuzz_<name>/. Exits 1 if any
# driver fails to build, crashes, leaks, times out or reports undefined
# behaviour. FUZZ_CC picks another clang.
# SPDX-License-Identifier: MIT
set -u

if [ $# -lt 4 ]; then
    echo "usage: $0 <build dir> <seconds> \"<pkg cflags>\" \"<libs>\" fuzz_<name>.c..." >&2
    exit 2
fi
O=$1
seconds=$2
pkg_cflags=$3
libs=$4
shift 4

case "$seconds" in
'' | *[!0-9]*)
    echo "fuzz: seconds must be a whole number, got '$seconds'" >&2
    exit 2
    ;;
esac
CLANG=${FUZZ_CC:-clang}
command -v "$CLANG" >/dev/null 2>&1 || {
    echo "fuzz: $CLANG not found: install the Debian packages clang and libclang-rt-14-dev (make deps)" >&2
    exit 1
}
if [ ! -f "$O/libsuperimap.a" ]; then
    echo "fuzz: $O/libsuperimap.a not found (run through: make fuzz)" >&2
    exit 1
fi
if [ $# -eq 0 ]; then
    echo "fuzz: no drivers (tests/fuzz/fuzz_*.c)"
    exit 0
fi

out="$O/fuzzers"
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/superimap-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# UBSan checks in the library are compiled recoverable: halt_on_error turns
# each report into a crash that libFuzzer saves. A leak fails the run too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

failed=0
for src in "$@"; do
    drv=$(basename "$src" .c)
    name=${drv#fuzz_}
    bin="$out/$drv"
    log="$out/$drv.log"
    artifacts="$out/artifacts/$drv"

    # shellcheck disable=SC2086 # the cflags and libs are word lists
    if ! "$CLANG" -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror \
        -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
        -I. -I"$O/gen" $pkg_cflags -o "$bin" "$src" "$O/libsuperimap.a" $libs >"$log" 2>&1; then
        echo "$drv: BUILD FAILED"
        cat "$log"
        failed=$((failed + 1))
        continue
    fi

    corpus="$tmp/corpus_$name"
    mkdir -p "$corpus" "$artifacts"
    seeds="tests/fuzz/corpus_$name"
    nseeds=0
    if [ -d "$seeds" ]; then
        cp -R "$seeds/." "$corpus/"
        nseeds=$(find "$corpus" -type f | wc -l)
    else
        echo "$drv: warning: no seed corpus $seeds/, starting empty"
    fi

    start=$(date +%s)
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))

    runs=$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    cov=$(sed -n 's/.*cov: \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    ncorpus=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -ne 0 ] || grep -q -e 'runtime error:' -e 'ERROR: AddressSanitizer' \
        -e 'ERROR: LeakSanitizer' -e 'ERROR: libFuzzer' "$log"; then
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "$drv: FAILED (exit $rc after $took s; input: ${crash:-none saved}; log: $log)"
        grep -m 1 -e 'runtime error:' -e 'ERROR: ' "$log"
        failed=$((failed + 1))
    else
        echo "$drv: ok, ${runs:-?} runs in $took s, cov ${cov:-?}, corpus $nseeds -> $ncorpus"
    fi
done

[ "$failed" -eq 0 ] || {
    echo "fuzz: $failed driver(s) failed"
    exit 1
}
