#!/usr/bin/env bash
# `make run`: a private Redis (AOF on, data and socket under ./run/) and one
# api, one watcher and one dispatcher in the foreground, each log line
# prefixed with its role. The encryption key and admin token are generated
# into ./run/ (mode 600) on the first start and reused after. Ctrl-C stops
# everything this script started, by PID.
#
# Ports: api on SUPERIMAP_API_ADDR (default 127.0.0.1:8080), watcher metrics on
# 127.0.0.1:9101, dispatcher metrics on 127.0.0.1:9102.
# SPDX-License-Identifier: MIT
set -euo pipefail

O=${1:-build}
BIN="$O/bin"
RUN="$PWD/run"
API_ADDR=${SUPERIMAP_API_ADDR:-127.0.0.1:8080}
mkdir -p "$RUN"
chmod 700 "$RUN"

umask 077
[ -s "$RUN/encryption.key" ] || openssl rand -hex 32 > "$RUN/encryption.key"
[ -s "$RUN/admin.token" ] || openssl rand -hex 24 > "$RUN/admin.token"
umask 022

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping..."
    # Nodes first (they drain and deregister through Redis), Redis last.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    echo "stopped"
}
trap stop INT TERM EXIT

setsid redis-server --port 0 --unixsocket "$RUN/redis.sock" --unixsocketperm 700 \
    --dir "$RUN" --appendonly yes --appendfsync everysec --save '' \
    > >(sed -u 's/^/[redis] /') 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    redis-cli -s "$RUN/redis.sock" PING >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -s "$RUN/redis.sock" PING >/dev/null || { echo "redis-server did not start" >&2; exit 1; }

export SUPERIMAP_REDIS_URL="unix://$RUN/redis.sock"
export SUPERIMAP_ENCRYPTION_KEY="$(cat "$RUN/encryption.key")"
export SUPERIMAP_WEB_ROOT="${SUPERIMAP_WEB_ROOT:-$PWD/web}"

start() { # role addr
    local role=$1 addr=$2
    SUPERIMAP_NODE_ID="$role-1" SUPERIMAP_HTTP_ADDR="$addr" "$BIN/superimap-$role" \
        > >(sed -u "s/^/[$role] /") 2>&1 &
    pids+=($!)
}
SUPERIMAP_ADMIN_TOKEN="$(cat "$RUN/admin.token")" SUPERIMAP_PUBLIC_URL="http://$API_ADDR" \
    start api "$API_ADDR"
start watcher 127.0.0.1:9101
start dispatcher 127.0.0.1:9102

ready=0
for _ in $(seq 1 100); do
    ready=0
    for addr in "$API_ADDR" 127.0.0.1:9101 127.0.0.1:9102; do
        curl -fsS -o /dev/null "http://$addr/readyz" 2>/dev/null && ready=$((ready + 1))
    done
    [ "$ready" -eq 3 ] && break
    sleep 0.1
done

cat <<MSG

  superimap is running ($ready of 3 nodes ready).
    API:         http://$API_ADDR/api/v1/
    Admin token: $RUN/admin.token   (Authorization: Bearer \$(cat run/admin.token))
    Metrics:     http://$API_ADDR/metrics  http://127.0.0.1:9101/metrics  http://127.0.0.1:9102/metrics
    Redis:       redis-cli -s $RUN/redis.sock
  Ctrl-C stops everything.

MSG
wait
