#!/bin/sh
# Runs every benchmark of build dir $1 (make bench): each executable
# <build dir>/bench/bench_* in name order, after a header naming the machine,
# its load, the versions of what superimap runs on and the date, so tables
# from different runs can be compared. The benchmarks print their own
# Markdown tables to stdout, as before; nothing here fails on the numbers
# (timing is never a failure). Exits 1 only if a benchmark itself exits
# non-zero, after running the others. BENCH_FILTER runs only those whose
# name contains it, or one of its words ("watcher dispatcher").
#
# It also writes the report docs/benchmarks.md (BENCH_DOCS=<dir> writes it
# elsewhere) with the plots docs/bench-*.svg:
#   1. the header table;
#   2. docs/architecture.md section 7's budget, each row's target, the figure measured
#      and whether it is met ("-" when no benchmark of this run measured it), then
#      the next targets (issue #20) the same way; the targets are written here,
#      beside the keys they are read from, and section 7 says them in words;
#   3. the plots, drawn with gnuplot (tests/bench/plot_*.gp) from the data
#      the benchmarks wrote, or "not measured in this run";
#   4. every benchmark's full output.
# A run with BENCH_FILTER writes the report too, since a full run is long:
# its header says which benchmarks ran, and what the others measure shows as
# not measured. Plots of an earlier run are removed, never left beside a
# report that does not come from them. Nothing hand-written goes into the
# report: what bounds a target not met is in docs/performance.md, which the
# report links to.
#
# bench_mailboxes compares this tree's watcher with the one of BENCH_OLD_REV
# (71722af, the revision before a reconnect skipped the UID FETCH when
# UIDNEXT shows nothing new): when bench_mailboxes is to run and
# BENCH_OLD_WATCHER (that binary's path) is unset, its tree is exported
# (git archive) into a temporary directory, its watcher built there and the
# directory removed at exit. Without git or if the build fails, that
# column is left out.
#
# Benchmarks report through BENCH_DATA_DIR, a temporary directory made and
# removed here unless the caller sets one (then it is kept, to look at the
# data; tests/bench/bench.h): they append "key value" lines to results.txt (the
# last line of a key wins) and write plot data files there. Keys read here:
#   bench_watcher    watcher_sessions_per_watcher, watcher_session_bytes_plain,
#                    watcher_session_bytes_tls, watcher_sessions_tls,
#                    watcher_sessions_fleet, watcher_fleet_size (3 watchers),
#                    watcher_sessions_100k, watcher_100k_watchers,
#                    watcher_100k_established_s, watcher_100k_fences,
#                    watcher_100k_session_bytes (six watchers from a cold
#                    start), redis_bytes_per_user, redis_users,
#                    mail_rate, mail_appended, mail_webhooks,
#                    mail_webhook_p50_ms, mail_webhook_p99_ms (the 1,000/s
#                    round of the rate sweep, or the one BENCH_MAIL_RATE),
#                    mail_<rate>_rate (achieved), mail_<rate>_appended,
#                    mail_<rate>_webhooks, mail_<rate>_webhook_p99_ms (each
#                    round of the sweep: 500, 1000, 2000, 3000, 5000)
#   bench_dispatcher dispatcher_webhooks_per_s
#   bench_api        api_get_user_per_s
#   bench_failover   failover_rewatch_1k_s, failover_victims_1k, failover_victims_10k,
#                    failover_rewatch_s (kill to all of the dead watcher's
#                    users watched again; without it, the time until the
#                    watchers of failover.dat hold as many sessions as
#                    before the kill), failover_mail_sent,
#                    failover_mail_lost, failover_mail_duplicated (mail
#                    appended through both kills' windows: not announced by a
#                    webhook, announced twice), failover_overlap_s
#                    (longest time a user had two IMAP sessions),
#                    failover_sigstop_s (SIGSTOP to its users back in IDLE),
#                    failover_sigstop_users, failover_sigstop_victims,
#                    failover_sigstop_cont_s, failover_sigstop_fences,
#                    failover_sigstop_reaped, failover_sigstop_mail_sent,
#                    failover_sigstop_mail_lost,
#                    failover_sigstop_mail_duplicated,
#                    failover_sigstop_overlap_s, failover_sigstop_overlap_users
#   bench_import     import_users, import_seconds (superimap-import's first
#                    run over an export of that many users)
#   bench_dashboard  dashboard_users, dashboard_partners, dashboard_fill_s,
#                    dashboard_worst_p99_ms (the slowest p99 of the
#                    dashboard's requests)
#   bench_sentinel   sentinel_pause_s, sentinel_pause_acked_s (kill -9 of the
#                    Redis primary to the first webhook of a mail delivered
#                    after it, without and with MIN_REPLICAS_ACK=1),
#                    sentinel_steady_p50_ms, sentinel_steady_p50_acked_ms
#   bench_mailboxes  mailboxes_users, and for each way <w> (inbox: INBOX
#                    only; notify: INBOX+Junk with NOTIFY; status: INBOX+Junk
#                    with STATUS polling) mailboxes_<w>_sessions,
#                    _established_s, _session_bytes, _imap_per_user,
#                    _imap_per_user_min, _redis_per_user, _redis_per_user_min,
#                    and for notify and status _junk_p50_ms, _junk_p99_ms;
#                    per reconnect of a storm, for <r> skip (this watcher),
#                    fetch (the watcher of BENCH_OLD_REV), examine and
#                    qresync (a raw client reconnecting with a plain EXAMINE,
#                    and with ENABLE QRESYNC and EXAMINE (QRESYNC ...)):
#                    storm_<r>_imap, storm_<r>_bytes, and for skip and fetch
#                    storm_<r>_redis, storm_<r>_rewatch_s
# and data files: watcher_rss_plain.dat, watcher_rss_tls.dat, latency.dat,
# latency_rates.dat, sessions_100k.dat (bench_watcher),
# dispatcher_concurrency.dat (bench_dispatcher), failover.dat (the kill -9
# at 10,000 users), failover_sigstop.dat (bench_failover), each described in
# its plot_*.gp.
# SPDX-License-Identifier: MIT
set -eu
O=${1:-build}
src=$(cd "$(dirname "$0")/../.." && pwd)
docs=${BENCH_DOCS:-$src/docs}

BENCH_OLD_REV=${BENCH_OLD_REV:-71722af}
tmpdata=""
oldtree=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [ -n "$tmpdata" ]; then rm -rf "$tmpdata"; fi
    if [ -n "$oldtree" ]; then rm -rf "$oldtree"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "${BENCH_DATA_DIR:-}" ]; then
    data=$BENCH_DATA_DIR # the caller's: kept, emptied of an earlier run's results
    mkdir -p "$data"
    rm -f "$data/results.txt" "$data"/*.dat
else
    data=$(mktemp -d)
    tmpdata=$data
    BENCH_DATA_DIR=$data
    export BENCH_DATA_DIR
fi

# 0 when benchmark $1 (a name, bench_x) is among those BENCH_FILTER selects.
selected() {
    [ -z "${BENCH_FILTER:-}" ] && return 0
    for f in $BENCH_FILTER; do
        case "$1" in *"$f"*) return 0 ;; esac
    done
    return 1
}

# ---- Header: machine, load, versions ----

pkgver() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown
}
# The first line of a command's output, or nothing when it is not installed.
first_line() {
    if command -v "$1" >/dev/null 2>&1; then
        "$@" 2>&1 | head -n 1
    fi
}

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
load=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo unknown)
# shellcheck disable=SC3045 # dash, bash and busybox sh all have ulimit -n
nofile=$(ulimit -n 2>/dev/null || echo unknown)
# shellcheck disable=SC3045
nofile_hard=$(ulimit -Hn 2>/dev/null || echo unknown)
rev=$(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown)
redis_v=$(first_line redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
dovecot_v=$(first_line dovecot --version)
gcc_v=$(first_line gcc -dumpfullversion)
openssl_v=$(first_line openssl version)
gnuplot_v=$(first_line gnuplot --version)

{
    echo "| | |"
    echo "|---|---|"
    echo "| date | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
    echo "| revision | $rev |"
    echo "| CPU | ${cpu:-unknown} |"
    echo "| cores (nproc) | $(nproc 2>/dev/null || echo unknown) |"
    echo "| RAM | ${ram:-unknown} |"
    echo "| kernel | $(uname -srm) |"
    echo "| open files limit (soft / hard) | $nofile / $nofile_hard |"
    echo "| load average at start (1, 5, 15 min) | $load |"
    echo "| redis-server | ${redis_v:-unknown} |"
    echo "| dovecot | ${dovecot_v:-unknown} |"
    echo "| gcc | ${gcc_v:-unknown} |"
    echo "| OpenSSL | ${openssl_v:-unknown} |"
    echo "| libcurl | $(pkgver libcurl4-openssl-dev) |"
    echo "| hiredis | $(pkgver libhiredis-dev) |"
    echo "| libev | $(pkgver libev-dev) |"
    echo "| yajl | $(pkgver libyajl-dev) |"
    echo "| civetweb | $(pkgver libcivetweb-dev) |"
    echo "| gnuplot | ${gnuplot_v:-not installed} |"
} >"$data/header.md"

echo "# superimap benchmarks"
echo
cat "$data/header.md"
echo

# ---- The watcher of BENCH_OLD_REV, for bench_mailboxes ----

if [ -x "$O/bench/bench_mailboxes" ] && selected bench_mailboxes && [ -z "${BENCH_OLD_WATCHER:-}" ]; then
    oldtree=$(mktemp -d)
    if git -C "$src" archive "$BENCH_OLD_REV" 2>"$data/old-watcher.log" | tar -x -C "$oldtree" &&
        env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$oldtree" -j"$(nproc 2>/dev/null || echo 2)" \
            O=build GIT_REV="$BENCH_OLD_REV" build/bin/superimap-watcher >>"$data/old-watcher.log" 2>&1; then
        BENCH_OLD_WATCHER=$oldtree/build/bin/superimap-watcher
        export BENCH_OLD_WATCHER
    else
        echo "The watcher of $BENCH_OLD_REV could not be built (bench_mailboxes leaves it out):"
        tail -n 5 "$data/old-watcher.log"
        echo
    fi
fi

# ---- Run the benchmarks ----

ran=""
failed=""
for b in "$O"/bench/bench_*; do
    if [ ! -f "$b" ] || [ ! -x "$b" ]; then
        continue
    fi
    case "$b" in *.d | *.o) continue ;; esac
    name=$(basename "$b")
    selected "$name" || continue
    echo "## $name"
    echo
    start=$(date +%s)
    # The output goes to stdout and to the report; the status through a file.
    {
        rc=0
        "$b" || rc=$?
        echo "$rc" >"$data/$name.rc"
    } | tee "$data/$name.out"
    rc=$(cat "$data/$name.rc")
    echo
    if [ "$rc" -ne 0 ]; then
        echo "**$name exited with status $rc**" | tee -a "$data/$name.out"
        echo
        failed="$failed $name"
    fi
    echo "_$name took $(($(date +%s) - start)) s_" | tee "$data/$name.took"
    echo
    ran="$ran $name"
done

if [ -z "$ran" ]; then
    echo "No benchmarks built yet: $O/bench/bench_* (from tests/bench/bench_*.c) is empty."
    exit 0
fi

# ---- Summary against docs/architecture.md section 7 ----

# The last value of key in results.txt, or nothing.
val() {
    [ -f "$data/results.txt" ] || return 0
    awk -v k="$1" '$1 == k { v = $2 } END { if (v != "") print v }' "$data/results.txt"
}
# holds <awk condition on a, b, c, d> <a> [<b> [<c> [<d>]]]: exit status 0
# when it holds.
holds() {
    awk -v a="$2" -v b="${3:-0}" -v c="${4:-0}" -v d="${5:-0}" "BEGIN { exit !($1) }"
}
# A row: what, target, measured (empty: not measured), met ("yes"/"no").
row() {
    if [ -z "$3" ]; then
        echo "| $1 | $2 | not measured in this run | - |"
    else
        echo "| $1 | $2 | $3 | $4 |"
    fi
}
yesno() {
    if holds "$@"; then echo yes; else echo "**no**"; fi
}
# Thousands separators for a whole number: 19000 -> 19,000.
num() {
    printf '%s' "$1" | awk '{ n = sprintf("%.0f", $1); s = ""
        while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) }
        print n s }'
}
kib() {
    awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'
}

# Seconds from the kill until the watchers of failover.dat ("t_s watcher1
# watcher2 watcher3 ...", t_s from the kill) hold as many sessions as before
# it, after a dip; nothing if they never do.
timeline_rewatch_s() {
    awk '!/^#/ && NF > 1 {
            s = 0
            for (i = 2; i <= 4; i++) s += $i
            if ($1 < 0) before = s
            else if (s < before) dipped = 1
            else if (dipped && t == "") t = $1
        }
        END { if (t != "") print t }' "$data/failover.dat"
}

# memory_rows <plain budget> <TLS budget> [<plain key> <its sessions key>
# <where> <more>]: the rows of RSS per idle session against budgets in
# bytes; the plain figure is watcher_session_bytes_plain (one watcher) unless
# other keys are named.
memory_rows() {
    v=$(val "${3:-watcher_session_bytes_plain}")
    n=$(val "${4:-watcher_sessions_per_watcher}")
    row "memory per idle session, plain (RSS delta / sessions${5:-})" "≤ $(($1 / 1024)) KiB" \
        "${v:+$(kib "$v") at $(num "${n:-0}") sessions${6:-}}" "$(yesno "a <= $1" "${v:-99999}")"
    v=$(val watcher_session_bytes_tls)
    n=$(val watcher_sessions_tls)
    row "memory per idle session, TLS (RSS delta / sessions)" "≤ $(($2 / 1024)) KiB" \
        "${v:+$(kib "$v") at $(num "${n:-0}") sessions}" "$(yesno "a <= $2" "${v:-0}")"
}

# mail_at <prefix>: from <prefix>_rate, _appended and _webhooks, sets lost
# (appended, not delivered) and at (the rate and the delivery, in words).
mail_at() {
    rate=$(val "$1_rate")
    sent=$(val "$1_appended")
    got=$(val "$1_webhooks")
    lost=$(awk -v a="${sent:-0}" -v b="${got:-0}" 'BEGIN { print a - b }')
    at="at $(num "${rate:-0}") mails/s, $(num "${got:-0}") of $(num "${sent:-0}") delivered"
}

# mail_row <what> <prefix>: the row of <prefix>_mail_sent, _lost and
# _duplicated against 0 lost, 0 twice.
mail_row() {
    sent=$(val "$2_mail_sent")
    lost=$(val "$2_mail_lost")
    dup=$(val "$2_mail_duplicated")
    row "$1" "0 lost, 0 twice" "${lost:+$(num "${sent:-0}") sent, $lost lost, ${dup:-?} twice}" \
        "$(yesno 'a == 0 && b == 0' "${lost:-1}" "${dup:-1}")"
}

summary() {
    echo "| budget (docs/architecture.md section 7) | target | measured | met? |"
    echo "|---|---|---|---|"
    v=$(val watcher_sessions_per_watcher)
    row "idle IMAP sessions per watcher process" "≥ 19,000 (open-files limit $(num "$nofile_hard"))" \
        "${v:+$(num "$v") sessions held by one watcher}" "$(yesno 'a >= 19000' "${v:-0}")"
    v=$(val watcher_sessions_fleet)
    n=$(val watcher_fleet_size)
    row "idle IMAP sessions, one machine" "≥ 57,000 with 3 watchers" \
        "${v:+$(num "$v") sessions held by ${n:-?} watchers}" "$(yesno 'a >= 57000' "${v:-0}")"
    memory_rows 4096 24576
    mail_at mail
    v=$(val mail_webhook_p50_ms)
    row "new mail → webhook received, p50" "≤ 5 ms at 1,000 mails/s" "${v:+$v ms ($at)}" \
        "$(yesno 'a <= 5 && b == 0' "${v:-0}" "$lost")"
    v=$(val mail_webhook_p99_ms)
    row "new mail → webhook received, p99" "≤ 50 ms at 1,000 mails/s" "${v:+$v ms ($at)}" \
        "$(yesno 'a <= 50 && b == 0' "${v:-0}" "$lost")"
    v=$(val dispatcher_webhooks_per_s)
    row "dispatcher throughput" "≥ 10,000 signed webhooks/s per process, keep-alive receiver" \
        "${v:+$(num "$v") webhooks/s (~1 KiB bodies)}" "$(yesno 'a >= 10000' "${v:-0}")"
    v=$(val api_get_user_per_s)
    row "API" "≥ 5,000 GET user/s" "${v:+$(num "$v") GET user/s}" "$(yesno 'a >= 5000' "${v:-0}")"
    v=$(val failover_rewatch_s)
    how=""
    if [ -z "$v" ] && [ -s "$data/failover.dat" ]; then
        v=$(timeline_rewatch_s)
        how=", every session back, from the timeline below"
    fi
    row "failover: users of a killed watcher watched again" "≤ 45 s" "${v:+$v s after the kill$how}" \
        "$(yesno 'a <= 45' "${v:-0}")"
    mail_row "failover: mail sent meanwhile delivered, none twice" failover
    v=$(val import_seconds)
    n=$(val import_users)
    row "import of 100,000 users from SuperIMAP (superimap-import)" "< 60 s" \
        "${v:+$v s for $(num "${n:-0}") users}" "$(yesno 'a < 60 && b >= 100000' "${v:-0}" "${n:-0}")"
    v=$(val dashboard_worst_p99_ms)
    n=$(val dashboard_users)
    p=$(val dashboard_partners)
    row "admin dashboard: every page's requests, worst p99" "≤ 300 ms at 10,000 partners and 1,000,000 users" \
        "${v:+$v ms at $(num "${p:-0}") partners and $(num "${n:-0}") users}" \
        "$(yesno 'a <= 300 && b >= 1000000' "${v:-0}" "${n:-0}")"
    v=$(val redis_bytes_per_user)
    n=$(val redis_users)
    row "Redis memory per idle user (used_memory delta / users)" "≤ 1 KiB" \
        "${v:+$(num "$v") bytes at $(num "${n:-0}") users}" "$(yesno 'a <= 1024' "${v:-0}")"
}

# Issue #20's targets (docs/architecture.md section 7, "next targets").
summary20() {
    echo "| next target (issue #20) | target | measured | met? |"
    echo "|---|---|---|---|"
    for n in 1k 10k; do
        v=$(val "failover_rewatch_${n}_s")
        [ "$n" = 10k ] && v=$(val failover_rewatch_s)
        k=$(val "failover_victims_$n")
        row "kill -9 of 1 of 3 watchers, $n users: its users back in IDLE" \
            "≤ 3 s + its users / 20,000 logins/s" "${v:+$v s for $(num "${k:-0}") users}" \
            "$(yesno 'a <= 3 + b / 20000' "${v:-99}" "${k:-0}")"
    done
    v=$(val failover_sigstop_s)
    k=$(val failover_sigstop_victims)
    n=$(val failover_sigstop_users)
    f=$(val failover_sigstop_fences)
    r=$(val failover_sigstop_reaped)
    row "SIGSTOP of 1 of 3 watchers, $(num "${n:-0}") users: its users back in IDLE; after SIGCONT it fences itself, no peer reaps it" \
        "≤ 15 s (alive keys' life) + 3 s + its users / 20,000 logins/s; ≥ 1 fence, 0 reaped" \
        "${v:+$v s for $(num "${k:-0}") users; SIGCONT at $(val failover_sigstop_cont_s) s: ${f:-?} fence(s), ${r:-?} reaped}" \
        "$(yesno 'a <= 18 + b / 20000 && c >= 1 && d == 0' "${v:-99}" "${k:-0}" "${f:-0}" "${r:-1}")"
    v=$(val failover_overlap_s)
    o=$(val failover_sigstop_overlap_s)
    u=$(val failover_sigstop_overlap_users)
    row "two IMAP sessions for one user at once" \
        "none after a kill -9; across a SIGSTOP never longer than the alive keys' life (15 s)" \
        "${v:+kill -9: $v s; SIGSTOP: ${o:-?} s (at most $(num "${u:-0}") users)}" \
        "$(yesno 'a == 0 && b <= 15' "${v:-1}" "${o:-99}")"
    mail_row "SIGSTOP: mail appended through it announced, none twice" failover_sigstop
    v=$(val watcher_sessions_100k)
    n=$(val watcher_100k_watchers)
    e=$(val watcher_100k_established_s)
    f=$(val watcher_100k_fences)
    row "idle IMAP sessions, one machine" "100,000 with 6 watchers (≤ 19,500 each), no fencing" \
        "${v:+$(num "$v") sessions held by ${n:-?} watchers, all in IDLE $e s from a cold start, ${f:-?} fences}" \
        "$(yesno 'a >= 100000 && b == 0' "${v:-0}" "${f:-1}")"
    # Target 2 is the six watchers' figure; one watcher taking 19,000 at once is shown beside.
    v=$(val watcher_session_bytes_plain)
    n=$(val watcher_sessions_per_watcher)
    memory_rows 1024 18432 watcher_100k_session_bytes watcher_sessions_100k ", six watchers" \
        "${v:+ (one watcher at $(num "${n:-0}"): $(kib "$v"))}"
    mail_at mail_5000
    v=$(val mail_5000_webhook_p99_ms)
    row "new mail → webhook received, p99" "≤ 20 ms at 5,000 mails/s" "${v:+$v ms ($at)}" \
        "$(yesno 'a <= 20 && b == 0' "${v:-99}" "$lost")"
}

# Issue #21's figures (bench_mailboxes): the three ways side by side, and a
# reconnect's cost by resync.
summary21() {
    u=$(val mailboxes_users)
    echo "| ${u:+$(num "$u") users: }per way | INBOX only | INBOX+Junk, NOTIFY | INBOX+Junk, STATUS every 10 s |"
    echo "|---|---:|---:|---:|"
    for r in "IMAP sessions (fake-imapd)|sessions" "all watching, s from the users written|established_s" \
        "watcher RSS per session, bytes|session_bytes" "IMAP commands per user to watching|imap_per_user" \
        "IMAP commands per user per minute, steady|imap_per_user_min" \
        "Redis commands per user to watching (scripts and their commands)|redis_per_user" \
        "Redis commands per user per minute, steady|redis_per_user_min" \
        "new mail in Junk to event recorded, p50 ms|junk_p50_ms" "the same, p99 ms|junk_p99_ms"; do
        printf '| %s |' "${r%%|*}"
        for w in inbox notify status; do
            v=$(val "mailboxes_${w}_${r##*|}")
            printf ' %s |' "${v:--}"
        done
        echo
    done
    echo
    n=$(val mailboxes_notify_sessions)
    p=$(val mailboxes_status_sessions)
    echo "| issue #21 | target | measured | met? |"
    echo "|---|---|---|---|"
    t=${u:-10000} # bench_mailboxes' users at BENCH_SCALE 1
    row "INBOX and Junk watched for $(num "$t") users" "$(num "$t") IMAP connections, not $(num "$((t * 2))")" \
        "${n:+NOTIFY: $(num "$n"), STATUS: $(num "${p:-0}")}" \
        "$(yesno 'a <= c && b <= c' "${n:-99999999}" "${p:-99999999}" "$t")"
    echo
    echo "| per reconnect of a storm (no new mail) | IMAP commands | IMAP bytes | Redis commands | all watching again in s |"
    echo "|---|---:|---:|---:|---:|"
    for r in "UIDNEXT skip (this watcher)|skip" "UID FETCH always (watcher of $BENCH_OLD_REV)|fetch" \
        "EXAMINE, no FETCH (raw client)|examine" "QRESYNC (raw client)|qresync"; do
        printf '| %s |' "${r%%|*}"
        for what in imap bytes redis rewatch_s; do
            v=$(val "storm_${r##*|}_$what")
            printf ' %s |' "${v:--}"
        done
        echo
    done
}

# ---- Plots ----

# plot <svg name> <title> <script> <gnuplot -e assignments>: makes
# docs/<svg name> and prints the report's line for it.
plot() {
    if ! command -v gnuplot >/dev/null 2>&1; then
        echo "$2: not drawn, gnuplot is not installed (make deps)."
    elif gnuplot -e "$4; out='$docs/$1'" "$src/tests/bench/$3" 2>"$data/$1.err"; then
        echo "<img src=\"$1\" alt=\"$2\" width=\"800\">"
    else
        echo "$2: gnuplot failed: $(head -n 3 "$data/$1.err" | tr '\n' ' ')"
        cat "$data/$1.err" >&2
        rm -f "$docs/$1"
    fi
    echo
}
# missing <title>: the report's line for a plot without data.
missing() {
    echo "$1: not measured in this run."
    echo
}

plots() {
    plain=""
    tls=""
    [ -s "$data/watcher_rss_plain.dat" ] && plain="$data/watcher_rss_plain.dat"
    [ -s "$data/watcher_rss_tls.dat" ] && tls="$data/watcher_rss_tls.dat"
    echo "### Sessions vs watcher RSS, plain and TLS (bench_watcher)"
    echo
    if [ -n "$plain$tls" ]; then
        plot bench-sessions-rss.svg "Sessions vs watcher RSS" plot_sessions_rss.gp \
            "plain='$plain'; tls='$tls'"
    else
        missing "Sessions vs watcher RSS"
    fi
    echo "### New mail → webhook latency histogram at 1,000 mails/s (bench_watcher)"
    echo
    if [ -s "$data/latency.dat" ]; then
        plot bench-latency.svg "New mail to webhook latency histogram" plot_latency.gp \
            "in='$data/latency.dat'"
    else
        missing "Latency histogram"
    fi
    echo "### Dispatcher throughput vs concurrency (bench_dispatcher)"
    echo
    if [ -s "$data/dispatcher_concurrency.dat" ]; then
        plot bench-dispatcher-concurrency.svg "Dispatcher webhooks/s by concurrency" \
            plot_concurrency.gp "in='$data/dispatcher_concurrency.dat'"
    else
        missing "Dispatcher throughput vs concurrency"
    fi
    echo "### Failover timeline around a kill -9: sessions per watcher, mail per second (bench_failover)"
    echo
    if [ -s "$data/failover.dat" ]; then
        k=$(val failover_victims_10k)
        plot bench-failover.svg "Failover timeline around a kill -9" plot_failover.gp \
            "in='$data/failover.dat'; event='kill -9'; cont=-1; target=$(awk -v k="${k:-0}" 'BEGIN { print 3 + k / 20000 }')"
    else
        missing "Failover timeline around a kill -9"
    fi
    echo "### Failover timeline around a SIGSTOP: sessions per watcher, mail per second (bench_failover)"
    echo
    if [ -s "$data/failover_sigstop.dat" ]; then
        k=$(val failover_sigstop_victims)
        c=$(val failover_sigstop_cont_s)
        plot bench-failover-sigstop.svg "Failover timeline around a SIGSTOP" plot_failover.gp \
            "in='$data/failover_sigstop.dat'; event='SIGSTOP'; cont=${c:--1}; target=$(awk -v k="${k:-0}" 'BEGIN { print 18 + k / 20000 }')"
    else
        missing "Failover timeline around a SIGSTOP"
    fi
    echo "### Six watchers from a cold start to 100,000 sessions: sessions and RSS (bench_watcher)"
    echo
    if [ -s "$data/sessions_100k.dat" ]; then
        plot bench-sessions-100k.svg "Sessions and RSS from 0 to 100,000" plot_sessions_100k.gp \
            "in='$data/sessions_100k.dat'"
    else
        missing "Sessions and RSS from 0 to 100,000"
    fi
    echo "### New mail → webhook latency percentiles against mail rate (bench_watcher)"
    echo
    if [ -s "$data/latency_rates.dat" ] && [ "$(grep -vc '^#' "$data/latency_rates.dat")" -gt 0 ]; then
        plot bench-latency-rates.svg "Latency percentiles against mail rate" plot_latency_rates.gp \
            "in='$data/latency_rates.dat'"
    else
        missing "Latency percentiles against mail rate"
    fi
}

# ---- The report ----

mkdir -p "$docs"
rm -f "$docs"/bench-*.svg
report="$docs/benchmarks.md"
{
    echo "# superimap benchmarks"
    echo
    echo "Written by \`make bench\` (tests/bench/run.sh): the performance budget of docs/architecture.md"
    echo "section 7 measured on this machine, plots, and every benchmark's tables. Timing"
    echo "figures depend on the machine and its load at the time: read them with the header."
    echo "The soak (\`make soak\`, not run here) has its own report: [soak.md](soak.md). What bounds"
    echo "a target not met, and the next step, is in the hand-written [performance.md](performance.md)."
    echo
    cat "$data/header.md"
    if [ -n "${BENCH_FILTER:-}" ]; then
        echo "| benchmarks run | partial run (BENCH_FILTER=$BENCH_FILTER):$ran |"
    else
        echo "| benchmarks run |$ran |"
    fi
    if [ -n "$failed" ]; then
        echo "| benchmarks that failed |$failed |"
    fi
    echo
    echo "## Performance budget (docs/architecture.md section 7)"
    echo
    summary
    echo
    echo "## Next targets (issue #20)"
    echo
    summary20
    echo
    echo "## Several mailboxes per user (issue #21)"
    echo
    summary21
    echo
    echo "Where a target is not met: [performance.md](performance.md) says what bounds it, from the"
    echo "runs it names."
    echo
    echo "## Plots"
    echo
    plots
    echo "## Every benchmark's tables"
    echo
    for name in $ran; do
        echo "### $name"
        echo
        # Headings of a benchmark's own go under its heading.
        sed 's/^##* /#### /' "$data/$name.out"
        echo
        cat "$data/$name.took"
        echo
    done
} >"$report.tmp"
mv "$report.tmp" "$report"

if [ -n "$failed" ]; then
    echo "benchmarks that failed:$failed"
    echo "report: $report"
    exit 1
fi
echo "$(echo "$ran" | wc -w) benchmark(s) ran; report: $report"
