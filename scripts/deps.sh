#!/bin/sh
# Installs, with apt-get, the Debian packages that superimap's build, `make run`
# and `make test` need, and only those missing; runs `apt-get update` only when
# something is. A no-op on a machine that has them all.
# SPDX-License-Identifier: MIT
set -eu
PACKAGES="make gcc libc6-dev pkg-config git ca-certificates curl
libhiredis-dev libev-dev libssl-dev libcurl4-openssl-dev libyajl-dev libcivetweb-dev
libcmocka-dev redis-server redis-tools dovecot-imapd clang libclang-rt-14-dev valgrind
clang-format docker-compose openssl wrk gnuplot-nox"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "make deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "+ $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
