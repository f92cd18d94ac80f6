#!/bin/sh
# Installs, with apt-get, the Debian packages superimap needs, and only those
# missing. Never removes a package: apt is asked first, in simulation, what the
# installation would do; when it would remove anything (another IMAP server
# conflicting with Dovecot, say) nothing is installed and this script says
# which package is in the way and how to proceed.
#
#   scripts/deps.sh [--dry-run] [GROUP | PACKAGE]...
#
# GROUP run:  what `make`, `make run` and `make demo` need (compiler, libraries,
#             redis-server, the tools scripts/run.sh calls); `make run-deps`
# GROUP test: run, plus what the tests, sanitizers, fuzzers and benchmarks need
#             (Dovecot, Postfix for the tracer mail test, clang, valgrind,
#             Chromium and Node for the browser test, ...); `make deps`. The
#             default. Postfix is installed with debconf's "No configuration":
#             no system MTA is set up or started (the test runs its own).
# Any other word is a package name, installed the same way.
# --dry-run:  say what would be installed, or why it cannot be; change nothing.
#
# `apt-get update` runs only when something is missing. Exit 0 when everything
# is there, 1 when an installation would remove packages or apt fails, 2 on
# bad arguments.
# SPDX-License-Identifier: MIT
set -eu

RUN_PACKAGES="make gcc libc6-dev pkg-config git ca-certificates curl openssl
libhiredis-dev libev-dev libssl-dev libcurl4-openssl-dev libyajl-dev libcivetweb-dev
redis-server redis-tools"
TEST_PACKAGES="$RUN_PACKAGES libcmocka-dev dovecot-imapd dovecot-lmtpd postfix clang
libclang-rt-14-dev valgrind clang-format wrk gnuplot-nox docker-compose chromium nodejs
heaptrack iproute2"
# npm: Debian's package, unless a Node.js that bundles its own (NodeSource's,
# which conflicts with Debian's npm) already provides the command.
command -v npm >/dev/null 2>&1 || TEST_PACKAGES="$TEST_PACKAGES npm"

say() { printf 'make deps: %s\n' "$*"; }

dry_run=0
wanted=""
for arg in "$@"; do
    case "$arg" in
    --dry-run) dry_run=1 ;;
    run) wanted="$wanted $RUN_PACKAGES" ;;
    test) wanted="$wanted $TEST_PACKAGES" ;;
    -*)
        echo "usage: scripts/deps.sh [--dry-run] [run | test | PACKAGE]..." >&2
        exit 2
        ;;
    *) wanted="$wanted $arg" ;;
    esac
done
[ -n "$wanted" ] || wanted=$TEST_PACKAGES

missing=""
for p in $wanted; do
    case " $missing " in *" $p "*) continue ;; esac
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
if [ -z "$missing" ]; then
    [ "$dry_run" -eq 0 ] || say "nothing to install"
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Another apt (unattended-upgrades, a second make) may hold the lock: wait.
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300"

say "missing:$missing"
$APT update -qq

# What would apt do? "Remv" lines name the packages it would remove.
sim=$($APT install -s -y --no-install-recommends $missing 2>&1) || {
    printf '%s\n' "$sim" >&2
    say "apt cannot install:$missing (its answer is above); nothing was changed" >&2
    exit 1
}
removed=$(printf '%s\n' "$sim" | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' ')
removed=${removed% }
if [ -n "$removed" ]; then
    {
        say "installing$missing would remove: $removed"
        say "nothing was changed: a set-up command never removes a package you have."
        say "To proceed, remove them yourself if you no longer need them"
        say "(apt-get remove $removed) and run this again. If one is another IMAP"
        say "server, which conflicts with dovecot-imapd, or another MTA (exim4, ...),"
        say "which conflicts with postfix: 'make run-deps' installs only what building"
        say "and running need (no Dovecot, no Postfix); run the tests on another machine."
    } >&2
    exit 1
fi
if [ "$dry_run" -eq 1 ]; then
    say "would install:$missing (nothing removed)"
    exit 0
fi

case " $missing " in
*" postfix "*)
    # No main.cf, no system service: the tracer test runs a private instance.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    ;;
esac
echo "+ $APT install -y --no-install-recommends --no-remove$missing"
# --no-remove: even if the simulation above were wrong, apt aborts rather than remove.
$APT install -y -qq --no-install-recommends --no-remove $missing
