#!/bin/sh
# Puts promtool, Prometheus' checking tool, into DIR (make deps: build/tools),
# taken from Debian's prometheus package without installing that package:
# installing it would start a Prometheus server on this machine, and the
# tests need only promtool (check metrics, check rules, test rules).
#
#   scripts/promtool.sh DIR
#
# Does nothing when DIR/promtool runs already. Runs `apt-get update` only
# when apt does not know the package yet. Exit 0, or 1 with the reason.
# SPDX-License-Identifier: MIT
set -eu

[ $# -eq 1 ] || {
    echo "usage: scripts/promtool.sh DIR" >&2
    exit 2
}
dir=$1
if "$dir/promtool" --version >/dev/null 2>&1; then
    exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The download runs as root into our own directory, not apt's sandbox user.
get() {
    (cd "$work" && apt-get -q -o APT::Sandbox::User=root download prometheus >/dev/null 2>&1)
}
if ! get; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    get || {
        echo "make deps: cannot download Debian's prometheus package (for promtool)" >&2
        exit 1
    }
fi
deb=$(ls "$work"/prometheus_*.deb)
dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./usr/bin/promtool >"$work/promtool"
chmod 755 "$work/promtool"
"$work/promtool" --version >/dev/null
mv "$work/promtool" "$dir/promtool"
echo "make deps: promtool from $(basename "$deb") in $dir"
