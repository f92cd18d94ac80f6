#!/usr/bin/env bash
# `make run`: a private Redis (AOF on, data and socket under ./run/) and one
# api, one watcher and one dispatcher in the foreground, each log line
# prefixed with its role. The encryption key, the admin token and the
# password of the dashboard's first account (admin) are generated into ./run/
# (mode 600) on the first start and reused after. Ctrl-C stops
# everything this script started, by PID: the nodes first (each drains), Redis
# last.
#
#   bash scripts/run.sh [build dir]          (default: build)
#
# Addresses (host:port), each overridable:
#   SUPERIMAP_API_ADDR         the api                  (default 127.0.0.1:8080)
#   SUPERIMAP_WATCHER_ADDR     the watcher's metrics    (default 127.0.0.1:9101)
#   SUPERIMAP_DISPATCHER_ADDR  the dispatcher's metrics (default 127.0.0.1:9102)
# Exits 1 when a node does not become ready within 30 s (its log says why),
# or when another `make run` already uses ./run/.
# SPDX-License-Identifier: MIT
set -euo pipefail

O=${1:-build}
BIN="$O/bin"
RUN="$PWD/run"
API_ADDR=${SUPERIMAP_API_ADDR:-127.0.0.1:8080}
WATCHER_ADDR=${SUPERIMAP_WATCHER_ADDR:-127.0.0.1:9101}
DISPATCHER_ADDR=${SUPERIMAP_DISPATCHER_ADDR:-127.0.0.1:9102}

die() {
    echo "make run: $*" >&2
    exit 1
}

mkdir -p "$RUN"
chmod 700 "$RUN"
# Redis would take over the socket of a running one: one `make run` per ./run/.
exec 9>"$RUN/lock"
flock -n 9 || die "another make run is using $RUN (stop it first)"

umask 077
[ -s "$RUN/encryption.key" ] || openssl rand -hex 32 > "$RUN/encryption.key"
[ -s "$RUN/admin.token" ] || openssl rand -hex 24 > "$RUN/admin.token"
umask 022

pids=()
roles=()
stopping=""
stop() {
    [ -z "$stopping" ] || return 0
    stopping=1
    trap - EXIT
    echo "stopping..."
    # The nodes together (each drains and deregisters through Redis), then
    # Redis, which is pids[0].
    local nodes=("${pids[@]:1}")
    if [ ${#nodes[@]} -gt 0 ]; then
        kill -TERM "${nodes[@]}" 2>/dev/null || true
        wait "${nodes[@]}" 2>/dev/null || true
    fi
    if [ ${#pids[@]} -gt 0 ]; then
        kill -TERM "${pids[0]}" 2>/dev/null || true
        wait "${pids[0]}" 2>/dev/null || true
    fi
    echo "stopped"
}
# Every way out stops once. A signal that arrives while stop() runs (Ctrl-C
# can land just as an error or the end of the script has started it) must not
# cut it short: then the signal traps do nothing.
trap stop EXIT
trap '[ -n "$stopping" ] || { stop; exit 130; }' INT
trap '[ -n "$stopping" ] || { stop; exit 143; }' TERM

# spawn ROLE COMMAND...: runs it in its own session, so that Ctrl-C reaches
# this script only and stops everything in order, with its output prefixed
# by [ROLE]; the prefixing sed ignores the signals too and ends when ROLE
# closes its output.
spawn() {
    local role=$1
    shift
    setsid "$@" </dev/null > >(trap '' INT TERM; exec sed -u "s/^/[$role] /") 2>&1 &
    pids+=($!)
    roles+=("$role")
}

spawn redis redis-server --port 0 --unixsocket "$RUN/redis.sock" --unixsocketperm 700 \
    --dir "$RUN" --appendonly yes --appendfsync everysec --save ''
for _ in $(seq 1 100); do
    redis-cli -s "$RUN/redis.sock" PING >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || die "redis-server exited; its lines above say why"
    sleep 0.1
done
redis-cli -s "$RUN/redis.sock" PING >/dev/null 2>&1 || die "redis-server did not answer within 10 s"

export SUPERIMAP_REDIS_URL="unix://$RUN/redis.sock"
export SUPERIMAP_ENCRYPTION_KEY="$(cat "$RUN/encryption.key")"
export SUPERIMAP_WEB_ROOT="${SUPERIMAP_WEB_ROOT:-$PWD/web}"
# A local fleet: webhooks may go to this machine (the README's first partner
# posts to 127.0.0.1:5000); the api and the dispatcher both need it.
export SUPERIMAP_WEBHOOK_ALLOW_PRIVATE="${SUPERIMAP_WEBHOOK_ALLOW_PRIVATE:-1}"

node() { # role addr [VAR=value...]
    local role=$1 addr=$2
    shift 2
    spawn "$role" env "$@" SUPERIMAP_NODE_ID="$role-1" SUPERIMAP_HTTP_ADDR="$addr" \
        "$BIN/superimap-$role"
}
node api "$API_ADDR" SUPERIMAP_ADMIN_TOKEN="$(cat "$RUN/admin.token")" \
    SUPERIMAP_PUBLIC_URL="${SUPERIMAP_PUBLIC_URL:-http://$API_ADDR}"
node watcher "$WATCHER_ADDR"
node dispatcher "$DISPATCHER_ADDR"

# Every node ready within 30 s, or a clear stop.
addrs=("" "$API_ADDR" "$WATCHER_ADDR" "$DISPATCHER_ADDR")
deadline=$((SECONDS + 30))
for i in 1 2 3; do
    until curl -fsS -o /dev/null -m 2 "http://${addrs[i]}/readyz" 2>/dev/null; do
        kill -0 "${pids[i]}" 2>/dev/null ||
            die "${roles[i]} exited before it was ready; its lines above say why"
        [ "$SECONDS" -lt "$deadline" ] ||
            die "${roles[i]} was not ready on http://${addrs[i]}/readyz within 30 s"
        sleep 0.1
    done
done

# The dashboard's first account, once: user admin, its password in
# run/admin.password (kept, like the key and the token, for the next start).
if [ ! -s "$RUN/admin.password" ]; then
    umask 077
    openssl rand -hex 16 > "$RUN/admin.password.new"
    umask 022
    if "$BIN/superimap-api" admin-user add admin < "$RUN/admin.password.new" >/dev/null; then
        mv "$RUN/admin.password.new" "$RUN/admin.password"
    else
        rm -f "$RUN/admin.password.new"
        echo "make run: no dashboard account made (see above); make one with" \
            "$BIN/superimap-api admin-user add NAME" >&2
    fi
fi

cat <<MSG

  superimap is running (api, watcher and dispatcher ready).
    API:         http://$API_ADDR/api/v1/
    Dashboard:   http://$API_ADDR/admin/   (user admin, password in run/admin.password)
    Admin token: $RUN/admin.token   (Authorization: Bearer \$(cat run/admin.token))
    Metrics:     http://$API_ADDR/metrics  http://$WATCHER_ADDR/metrics  http://$DISPATCHER_ADDR/metrics
    Redis:       redis-cli -s $RUN/redis.sock
  Ctrl-C stops everything.

MSG
wait
