#!/bin/sh
# Entry point of the nginx service of docker-compose.yml (mounted as
# /etc/nginx/superimap-entrypoint.sh): writes /etc/nginx/superimap-resolver.conf,
# the "resolver" directive that docker/nginx.conf includes, naming the first
# nameserver of this container's own /etc/resolv.conf, then runs its
# arguments (nginx -g 'daemon off;').
#
# Why: nginx resolves the api's name at request time only through a resolver
# named in its configuration, and that address depends on the engine. Docker
# gives containers on a compose network its embedded DNS, 127.0.0.11; podman
# (netavark) gives them aardvark-dns on the network's gateway address (e.g.
# 10.89.0.1), and 127.0.0.11 answers nothing there (nginx then answers 502).
# Both write their server into the container's /etc/resolv.conf, first, so
# reading it works on both. Only that first server is named: podman lists the
# host's servers after aardvark-dns, and nginx would ask them in turn, which
# do not know "api" (every other request a 502); the compose network's
# server forwards other names itself. An IPv6 server is bracketed as nginx
# wants; link-local ones with a zone (fe80::1%eth0) are skipped, nginx
# cannot use them.
#
# SPDX-License-Identifier: MIT
set -eu

conf=/etc/nginx/superimap-resolver.conf
server=""
while read -r key value _rest; do
    [ "$key" = nameserver ] || continue
    case "$value" in
    *%*) continue ;;
    *:*) value="[$value]" ;;
    esac
    server=$value
    break
done </etc/resolv.conf

if [ -z "$server" ]; then
    echo "superimap-entrypoint: no usable nameserver in /etc/resolv.conf" >&2
    exit 1
fi
printf 'resolver %s valid=10s ipv6=off;\n' "$server" >"$conf"
echo "superimap-entrypoint: $conf: resolver $server"

exec "$@"
