#!/bin/sh
# Entry point of the redis:7 stand-in (standin-redis.Dockerfile): like the
# official image, redis-server runs with protected mode off unless the
# command says otherwise, so containers on the compose network may connect.
# SPDX-License-Identifier: MIT
set -eu
if [ "${1:-}" = redis-server ]; then
    case " $* " in
    *" --protected-mode "*) ;;
    *) set -- "$@" --protected-mode no ;;
    esac
fi
exec "$@"
