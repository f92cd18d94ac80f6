#!/usr/bin/env bash
# `make compose-check`: proves the container deployment works, on this
# machine, with docker-compose talking to podman as if it were Docker.
#
# What it does, each step with a deadline, counting checks:
#   1. installs what is missing (Debian packages: podman, runc, conmon,
#      netavark, aardvark-dns, catatonit, iptables, debootstrap,
#      docker-compose, curl, openssl, python3), with --no-remove;
#   2. writes a private podman configuration (containers.conf in a temporary
#      directory, through CONTAINERS_CONF: runtime runc, cgroupfs, netavark,
#      default ulimits within this host's hard limits) and starts
#      `podman system service` on a private unix socket (stopped by PID);
#   3. builds the base image debian:bookworm-slim with
#      `debootstrap --variant=minbase bookworm` from the mirror apt uses and
#      `podman import` (once: a tagged image is reused), stand-ins for
#      redis:7 and nginx:stable from Debian's redis-server and nginx
#      (tests/deploy/standin-*.Dockerfile; an existing real image of that
#      name is used instead), and superimap:latest (Dockerfile target
#      runtime) and superimap-test:latest (target test, with
#      superimap-fake-imapd), all with --pull=never --format docker;
#   4. runs docker-compose.yml plus tests/deploy/compose.test.yml (fake-imapd
#      and a webhook receiver) as project "sicheck<pid>" with DOCKER_HOST on
#      that socket, nginx published on free ports of 127.0.0.1; runs
#      `podman healthcheck run` in a loop (without systemd podman runs no
#      health checks, and depends_on: service_healthy would wait forever);
#   5. checks: every container healthy; /readyz through nginx's TLS with the
#      certificate verified; the plain-HTTP redirect; a provider, partner,
#      connection and user made through the public API; one mail appended to
#      fake-imapd becoming a signed new_mail webhook at the receiver and a
#      delivered event in /api/v2/events; `--scale watcher=3` giving 3
#      watchers in /admin/api/fleet;
#   6. always (trap) `docker-compose down -v`, then verifies nothing of the
#      project is left: containers, volumes, network, processes.
# Prints PASS/FAIL per check and ends with "N passed, N failed"; exits 1 on
# any failure.
#
# Needs: root (rootful podman), Debian 12, the Debian mirror (packages, the
# base image, apt-get inside the image builds). Nothing is pulled from a
# container registry. Images stay in podman's storage
# (/var/lib/containers/storage) as the cache of the next run; everything
# else is under a temporary directory, removed at the end
# (COMPOSE_CHECK_KEEP=1 keeps it). Settings: COMPOSE_CHECK_MIRROR (Debian
# mirror for debootstrap; default: the one apt uses), COMPOSE_CHECK_REBUILD_BASE=1
# (debootstrap again even when the base image exists).
#
# SPDX-License-Identifier: MIT
set -euo pipefail

cd "$(dirname "$0")/../.."
T0=$SECONDS
PROJECT="sicheck$$"
PASSED=0
FAILED=0
RESULTS=()
WORK=""
SVC_PID=""
HEALTH_PID=""
COMPOSE_UP=0
CONTAINER_IDS=()
AARDVARK_BEFORE=""
DN_BEFORE=""
BRIDGE=""

say() { printf '[compose-check %4ds] %s\n' $((SECONDS - T0)) "$*"; }
pass() {
    PASSED=$((PASSED + 1))
    RESULTS+=("PASS  $1")
    say "PASS: $1"
}
fail() {
    FAILED=$((FAILED + 1))
    RESULTS+=("FAIL  $1")
    say "FAIL: $1"
}
# A failure after which nothing else can be checked: the trap tears down.
die() {
    fail "$1"
    exit 1
}

# wait_for <seconds> <what> <command...>: runs the command once a second
# until it succeeds; on the deadline says what it was waiting for, returns 1.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    say "waiting (at most ${limit}s) for $what"
    while :; do
        if "$@"; then
            return 0
        fi
        if [ $SECONDS -ge $end ]; then
            say "gave up after ${limit}s waiting for $what"
            return 1
        fi
        sleep 1
    done
}

# ---- Packages ----

PKGS=(podman runc conmon netavark aardvark-dns catatonit iptables debootstrap docker-compose
    curl openssl ca-certificates python3 tar)

install_packages() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        pass "packages present (${PKGS[*]})"
        return 0
    fi
    say "installing ${missing[*]}"
    local try
    for try in 1 2 3; do
        if apt-get -o DPkg::Lock::Timeout=600 update -qq >"$WORK/apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
                --no-install-recommends --no-remove "${missing[@]}" >>"$WORK/apt.log" 2>&1; then
            pass "packages installed (${missing[*]})"
            return 0
        fi
        say "apt-get failed (try $try of 3):"
        tail -n 20 "$WORK/apt.log" | sed 's/^/    /'
        [ $try -lt 3 ] && sleep 10
    done
    die "install ${missing[*]}"
}

# ---- podman ----

# The hard limit of a resource (ulimit -H<flag>), at most cap.
hard_limit() {
    local v
    v=$(ulimit -H"$1")
    if [ "$v" = unlimited ] || [ "$v" -gt "$2" ]; then
        v=$2
    fi
    echo "$v"
}

write_podman_conf() {
    # Podman's default container ulimits (1048576) cannot be granted above
    # the hard limits podman itself runs with: ours, except nproc, which
    # podman lowers to kernel.pid_max (32768 on these machines) at start.
    local pid_max
    pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
    NOFILE=$(hard_limit n 1048576)
    NPROC=$(hard_limit u "$pid_max")
    # runc: crun refuses the hybrid cgroup v1/v2 layout of some kernels.
    # cgroupfs and a file event log: there is no systemd. netavark: the
    # package also installs a CNI configuration without CNI plugins, which
    # podman would otherwise pick.
    cat >"$WORK/containers.conf" <<EOF
# Written by tests/deploy/compose-check.sh for its own podman calls only.
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
EOF
    export CONTAINERS_CONF="$WORK/containers.conf"
}

service_answers() {
    curl -sf --max-time 2 --unix-socket "$WORK/podman.sock" http://d/_ping >/dev/null 2>&1
}

start_podman_service() {
    # Its own session: a Ctrl-C or timeout's SIGTERM to our process group
    # must not stop it before the trap's `docker-compose down -v` has run.
    setsid podman system service --time 0 "unix://$WORK/podman.sock" >"$WORK/podman-service.log" 2>&1 &
    SVC_PID=$!
    if ! wait_for 30 "podman system service on $WORK/podman.sock" service_answers; then
        tail -n 30 "$WORK/podman-service.log" | sed 's/^/    /'
        die "podman system service answers on a private socket"
    fi
    case "$(tr '\0' ' ' <"/proc/$SVC_PID/cmdline" 2>/dev/null)" in
    podman\ system\ service*) ;;
    *) die "podman system service runs as pid $SVC_PID (setsid forked?)" ;;
    esac
    pass "podman system service answers on a private socket (pid $SVC_PID)"
}

# ---- Images ----

image_exists() { podman image exists "$1"; }

# Debian's mirror for bookworm (and bookworm-security) as apt uses it.
find_mirrors() {
    MIRROR=${COMPOSE_CHECK_MIRROR:-}
    if [ -z "$MIRROR" ]; then
        MIRROR=$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:/ && $3 == "bookworm/main" { print $2; exit }')
    fi
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    SECURITY=$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:/ && $3 == "bookworm-security/main" { print $2; exit }')
    SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
}

build_base_image() {
    if image_exists docker.io/library/debian:bookworm-slim && [ "${COMPOSE_CHECK_REBUILD_BASE:-0}" != 1 ]; then
        image_exists localhost/debian:bookworm-slim ||
            podman tag docker.io/library/debian:bookworm-slim localhost/debian:bookworm-slim
        pass "base image debian:bookworm-slim present (reused)"
        return 0
    fi
    find_mirrors
    say "debootstrap --variant=minbase bookworm from $MIRROR (once; the image is reused later)"
    local rootfs="$WORK/rootfs"
    if ! timeout 900 debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" | sed 's/^/    /'
        die "debootstrap of the base image"
    fi
    # As the official image: the release, its updates and security sources;
    # no package lists or downloaded packages in the image.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOF
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/bootstrap.log
    if ! tar --numeric-owner --xattrs -C "$rootfs" -c . |
        podman import --change 'CMD ["bash"]' \
            --change 'LABEL org.superimap.standin=debian:bookworm-slim' \
            - docker.io/library/debian:bookworm-slim >"$WORK/import.log" 2>&1; then
        sed 's/^/    /' "$WORK/import.log"
        die "podman import of the base image"
    fi
    podman tag docker.io/library/debian:bookworm-slim localhost/debian:bookworm-slim
    rm -rf --one-file-system "$rootfs"
    pass "base image debian:bookworm-slim built by debootstrap from $MIRROR"
}

# podman_build <log name> <podman build args...>
podman_build() {
    local log="$WORK/build-$1.log"
    shift
    if ! timeout 1200 podman build --pull=never --format docker "$@" >"$log" 2>&1; then
        tail -n 40 "$log" | sed 's/^/    /'
        return 1
    fi
}

# build_standin <name:tag> <dockerfile>: a stand-in built from Debian
# packages, unless a real image of that name is there (then used as is).
build_standin() {
    local ref="docker.io/library/$1" label=""
    if image_exists "$ref"; then
        label=$(podman image inspect --format '{{index .Labels "org.superimap.standin"}}' "$ref" 2>/dev/null || true)
        if [ -z "$label" ] || [ "$label" = "<no value>" ]; then
            pass "$1: the real image is present, used as is"
            return 0
        fi
    fi
    podman_build "$2" -f "tests/deploy/$2" -t "$ref" -t "localhost/$1" tests/deploy ||
        die "stand-in $1 from tests/deploy/$2"
    pass "stand-in $1 built from Debian packages (tests/deploy/$2)"
}

build_superimap() {
    local rev
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    # Tagged localhost/ only, as `docker-compose build` through podman does:
    # the name "superimap:latest" of the compose file resolves to it first.
    say "podman build docker/Dockerfile (target runtime, then test; GIT_REV=$rev)"
    podman_build superimap -f docker/Dockerfile --target runtime --build-arg "GIT_REV=$rev" \
        -t localhost/superimap:latest . ||
        die "superimap:latest builds (docker/Dockerfile, target runtime)"
    local hc
    hc=$(podman image inspect --format '{{.HealthCheck}}' superimap:latest 2>/dev/null || true)
    case "$hc" in
    *healthz*) pass "superimap:latest built, HEALTHCHECK kept (--format docker)" ;;
    *) fail "superimap:latest has no HEALTHCHECK (got '$hc')" ;;
    esac
    local bins
    bins=$(podman run --rm --network none --entrypoint /bin/ls superimap:latest /usr/local/bin 2>&1 | tr '\n' ' ')
    case "$bins" in
    *superimap-fake-imapd*) fail "runtime image ships superimap-fake-imapd (/usr/local/bin: $bins)" ;;
    *superimap-api*superimap-dispatcher*superimap-watcher*)
        pass "runtime image ships the three nodes, not superimap-fake-imapd" ;;
    *) fail "runtime image lacks a node binary (/usr/local/bin: $bins)" ;;
    esac
    podman_build superimap-test -f docker/Dockerfile --target test --build-arg "GIT_REV=$rev" \
        -t localhost/superimap-test:latest . ||
        die "superimap-test:latest builds (docker/Dockerfile, target test)"
    pass "superimap-test:latest built (target test, with superimap-fake-imapd)"
    # Untagged images of this Dockerfile (labelled so; nothing else is
    # touched) older than a week: earlier builds' leftovers. Newer ones stay
    # as the build cache (apt layers, unchanged sources).
    podman image prune -f --filter label=org.superimap.image=superimap --filter until=168h \
        >/dev/null 2>&1 || true
}

# ---- The compose project ----

# docker-compose with the project's files; an array, so `timeout` can run it.
COMPOSE=()

project_containers() {
    podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null
}

dump_logs() {
    local id name
    say "containers of $PROJECT:"
    podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
        --format '    {{.Names}}  {{.Status}}' 2>/dev/null || true
    for id in $(project_containers); do
        name=$(podman inspect --format '{{.Name}}' "$id" 2>/dev/null || echo "$id")
        say "last log lines of $name:"
        podman logs --tail 40 "$id" 2>&1 | sed 's/^/    /' || true
    done
}

# Runs `podman healthcheck run` for every container of the project every
# 2 s until $WORK/health.stop exists.
health_loop() {
    local id
    while [ ! -e "$WORK/health.stop" ]; do
        for id in $(project_containers); do
            podman healthcheck run "$id" >/dev/null 2>&1 || true
        done
        sleep 2
    done
}

stop_health_loop() {
    [ -n "$HEALTH_PID" ] || return 0
    touch "$WORK/health.stop"
    local end=$((SECONDS + 20))
    while kill -0 "$HEALTH_PID" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
        sleep 0.5
    done
    kill "$HEALTH_PID" 2>/dev/null || true
    wait "$HEALTH_PID" 2>/dev/null || true
    HEALTH_PID=""
}

# "<service> <status>" per container, e.g. "watcher Up 20 seconds (healthy)".
container_states() {
    podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
        --format '{{index .Labels "com.docker.compose.service"}} {{.Status}}' 2>/dev/null
}

# all_healthy <n watchers>: redis, api, dispatcher and n watchers healthy,
# every other container up.
all_healthy() {
    local states want=$1
    states=$(container_states) || return 1
    [ "$(grep -c '^watcher .*(healthy)' <<<"$states")" -eq "$want" ] || return 1
    local s
    for s in redis api dispatcher; do
        grep -q "^$s .*(healthy)" <<<"$states" || return 1
    done
    for s in nginx imapd receiver; do
        grep -q "^$s Up" <<<"$states" || return 1
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- HTTP through nginx ----

BASE_URL=""
# api <method> <path> [curl args...]: HTTPS through nginx, certificate
# verified; body in $WORK/resp, status in $STATUS.
STATUS=""
api() {
    local method=$1 path=$2
    shift 2
    STATUS=$(curl -sS --max-time 15 --cacert "$WORK/certs/cert.pem" -o "$WORK/resp" \
        -w '%{http_code}' -X "$method" "$BASE_URL$path" "$@" 2>"$WORK/curl.err") || STATUS="curl:$(cat "$WORK/curl.err")"
}
admin() { api "$@" -H "Authorization: Bearer $SUPERIMAP_ADMIN_TOKEN"; }
partner() { api "$@" -H "x-api-key: $API_KEY"; }

# json <expression over the value j>: evaluates it on $WORK/resp.
json() {
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$WORK/resp" "$1" 2>/dev/null
}

readyz_ok() {
    api GET /readyz
    [ "$STATUS" = 200 ]
}

user_watching() {
    partner GET "/api/v2/connections/FAKE/users/user1%40example.com"
    [ "$STATUS" = 200 ] && [ "$(json 'j["state"]')" = watching ]
}

control_socket_ready() { [ -S "$WORK/control/fake.sock" ]; }

# The receiver's log lines "WEBHOOK {...}" into $WORK/webhooks.
webhook_arrived() {
    local id
    id=$(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=receiver" | head -n 1)
    [ -n "$id" ] || return 1
    podman logs "$id" 2>/dev/null | sed -n 's/^WEBHOOK //p' >"$WORK/webhooks"
    grep -q "$SUBJECT" "$WORK/webhooks"
}

event_delivered() {
    partner GET "/api/v2/events?type=new_mail"
    [ "$STATUS" = 200 ] || return 1
    python3 -c '
import json, sys
events = json.load(open(sys.argv[1]))
if isinstance(events, dict):
    events = events.get("events") or events.get("data") or []
sys.exit(0 if any(e.get("type") == "new_mail" and e.get("result") == "delivered" and
                  e.get("event_state") == "delivered" for e in events) else 1)' "$WORK/resp" 2>/dev/null
}

fleet_watchers() {
    admin GET /admin/api/fleet
    [ "$STATUS" = 200 ] && [ "$(json 'j["counts"]["watcher"]')" = "$1" ]
}

# ---- Teardown ----

teardown_project() {
    [ "$COMPOSE_UP" = 1 ] || return 0
    COMPOSE_UP=0
    mapfile -t CONTAINER_IDS < <(project_containers)
    say "docker-compose down -v"
    if timeout 300 "${COMPOSE[@]}" down -v --remove-orphans >"$WORK/down.log" 2>&1; then
        pass "docker-compose down -v"
    else
        sed 's/^/    /' "$WORK/down.log"
        fail "docker-compose down -v"
    fi
    stop_health_loop
    # Whatever down left is counted below, then removed by podman itself.
    local left
    left=$(project_containers | tr '\n' ' ')
    local vols nets
    vols=$(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | tr '\n' ' ')
    nets=$(podman network ls --format '{{.Name}}' 2>/dev/null | grep "^${PROJECT}_" | tr '\n' ' ' || true)
    if [ -z "${left// /}${vols// /}${nets// /}" ]; then
        pass "nothing of $PROJECT left: no container, volume or network"
    else
        fail "left behind: containers [$left] volumes [$vols] networks [$nets]"
        # shellcheck disable=SC2086 # lists of names
        [ -z "${left// /}" ] || podman rm -f -t 5 $left >/dev/null 2>&1 || true
        # shellcheck disable=SC2086
        [ -z "${vols// /}" ] || podman volume rm -f $vols >/dev/null 2>&1 || true
        # shellcheck disable=SC2086
        [ -z "${nets// /}" ] || podman network rm -f $nets >/dev/null 2>&1 || true
    fi
}

# Processes: conmon of any of the project's containers, the health loop.
processes_left() {
    local id out=""
    for id in "${CONTAINER_IDS[@]}"; do
        out+=$(pgrep -a -f -- "$id" || true)
    done
    [ -n "$HEALTH_PID" ] && kill -0 "$HEALTH_PID" 2>/dev/null && out+=" health loop $HEALTH_PID"
    # netavark starts aardvark-dns for the project's network and stops it
    # with the network's last container, unless another network needs it.
    [ -z "$AARDVARK_BEFORE" ] && pgrep -x aardvark-dns >/dev/null && out+=" aardvark-dns $(pgrep -x aardvark-dns | tr '\n' ' ')"
    printf '%s' "$out"
}

no_processes_left() { [ -z "$(processes_left)" ]; }

stop_podman_service() {
    [ -n "$SVC_PID" ] || return 0
    kill "$SVC_PID" 2>/dev/null || true
    local end=$((SECONDS + 20))
    while kill -0 "$SVC_PID" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
        sleep 0.5
    done
    if kill -0 "$SVC_PID" 2>/dev/null; then
        say "podman system service (pid $SVC_PID) still running after 20 s: SIGKILL"
        kill -9 "$SVC_PID" 2>/dev/null || true
    fi
    wait "$SVC_PID" 2>/dev/null || true
    SVC_PID=""
}

# netavark 1.4 leaves, after the network is gone, an empty NAT chain
# NETAVARK-DN-<hash> per published container and the isolation rules of the
# network's bridge. Removed here: chains that appeared during this run and
# are empty and unreferenced, and isolation rules naming our bridge once it
# no longer exists.
netavark_chains() {
    iptables -t nat -S 2>/dev/null | sed -n 's/^-N \(NETAVARK-DN-[0-9A-Fa-f]*\)$/\1/p' | sort
}

cleanup_firewall() {
    command -v iptables >/dev/null 2>&1 || return 0
    local c rule n=0
    for c in $(netavark_chains); do
        grep -qxF "$c" <<<"$DN_BEFORE" && continue
        [ "$(iptables -t nat -S "$c" 2>/dev/null | wc -l)" = 1 ] || continue
        iptables -t nat -S 2>/dev/null | grep -q -- "-j $c\$" && continue
        iptables -t nat -X "$c" 2>/dev/null && n=$((n + 1))
    done
    if [ -n "$BRIDGE" ] && [ ! -e "/sys/class/net/$BRIDGE" ]; then
        while read -r rule; do
            # shellcheck disable=SC2086 # the rule's own words
            iptables -D ${rule#-A } 2>/dev/null && n=$((n + 1))
        done < <(iptables -S 2>/dev/null | grep -E "^-A NETAVARK_ISOLATION_[12] .*-[io] $BRIDGE( |\$)" || true)
    fi
    [ "$n" -eq 0 ] || say "removed $n firewall chains/rules netavark left behind (bridge ${BRIDGE:-?})"
}

on_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ "$COMPOSE_UP" = 1 ] && [ "$FAILED" -gt 0 ]; then
        dump_logs
    fi
    teardown_project
    stop_health_loop
    if [ ${#CONTAINER_IDS[@]} -gt 0 ]; then
        if wait_for 30 "the containers' processes (conmon) to end" no_processes_left; then
            pass "no process of $PROJECT left"
        else
            fail "processes left: $(processes_left)"
        fi
    fi
    stop_podman_service
    cleanup_firewall
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${COMPOSE_CHECK_KEEP:-0}" = 1 ]; then
            say "kept $WORK"
        else
            grep -q " $WORK/" /proc/mounts 2>/dev/null &&
                awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount -l
            rm -rf --one-file-system "$WORK"
        fi
    fi
    echo
    echo "compose-check summary ($((SECONDS - T0)) s):"
    local r
    for r in "${RESULTS[@]}"; do
        echo "  $r"
    done
    if [ "$FAILED" -eq 0 ] && [ "$rc" -ne 0 ]; then
        FAILED=1
        echo "  FAIL  interrupted (exit status $rc)"
    fi
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && exit 0
    exit 1
}

# ---- Main ----

[ "$(id -u)" = 0 ] || {
    echo "compose-check: needs root (rootful podman, apt-get, debootstrap)" >&2
    echo "0 passed, 1 failed"
    exit 1
}

WORK=$(mktemp -d /tmp/superimap-compose-check.XXXXXX)
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
: >"$WORK/empty.env"
COMPOSE=(docker-compose --env-file "$WORK/empty.env" -f docker-compose.yml -f tests/deploy/compose.test.yml)
say "project $PROJECT, work directory $WORK"

install_packages
write_podman_conf
say "podman: runtime runc, cgroupfs, netavark, ulimits nofile=$NOFILE nproc=$NPROC ($CONTAINERS_CONF)"
start_podman_service

build_base_image
build_standin redis:7 standin-redis.Dockerfile
build_standin nginx:stable standin-nginx.Dockerfile
build_superimap

# Secrets, ports and paths of this run only; nothing from the caller's
# environment or a .env file changes the project.
for v in $(compgen -e | grep '^SUPERIMAP_' || true); do
    unset "$v"
done
HTTPS_PORT=$(free_port)
HTTP_PORT=$(free_port)
while [ "$HTTP_PORT" = "$HTTPS_PORT" ]; do
    HTTP_PORT=$(free_port)
done
WATCHER_NOFILE=$(hard_limit n 65536)
export DOCKER_HOST="unix://$WORK/podman.sock"
export COMPOSE_PROJECT_NAME=$PROJECT
export COMPOSE_HTTP_TIMEOUT=300
export COMPOSE_CHECK_DIR=$WORK
export SUPERIMAP_ENCRYPTION_KEY
SUPERIMAP_ENCRYPTION_KEY=$(openssl rand -hex 32)
export SUPERIMAP_ADMIN_TOKEN
SUPERIMAP_ADMIN_TOKEN=$(openssl rand -hex 24)
export SUPERIMAP_HTTPS_PORT="127.0.0.1:$HTTPS_PORT"
export SUPERIMAP_HTTP_PORT="127.0.0.1:$HTTP_PORT"
export SUPERIMAP_WATCHER_NOFILE=$WATCHER_NOFILE
BASE_URL="https://127.0.0.1:$HTTPS_PORT"

sh docker/gen-cert.sh "$WORK/certs" >/dev/null
mkdir -m 777 "$WORK/control" # fake-imapd runs as uid 10001

AARDVARK_BEFORE=$(pgrep -x aardvark-dns || true)
DN_BEFORE=$(netavark_chains)
health_loop &
HEALTH_PID=$!

say "docker-compose up -d (https on 127.0.0.1:$HTTPS_PORT, http on 127.0.0.1:$HTTP_PORT, watcher nofile $WATCHER_NOFILE)"
COMPOSE_UP=1
if ! timeout 600 "${COMPOSE[@]}" up -d --no-build >"$WORK/up.log" 2>&1; then
    sed 's/^/    /' "$WORK/up.log"
    die "docker-compose up -d"
fi
pass "docker-compose up -d: redis, api, 2 watchers, dispatcher, nginx, imapd, receiver"
BRIDGE=$(podman network inspect --format '{{.NetworkInterface}}' "${PROJECT}_default" 2>/dev/null || true)

if ! wait_for 240 "redis, api, 2 watchers and dispatcher healthy, the others up" all_healthy 2; then
    container_states | sed 's/^/    /'
    die "every container healthy"
fi
pass "every container healthy (podman healthcheck run)"

if ! wait_for 60 "200 from $BASE_URL/readyz (TLS, certificate verified)" readyz_ok; then
    say "last answer: $STATUS $(cat "$WORK/resp" 2>/dev/null)"
    die "/readyz through nginx TLS"
fi
pass "/readyz through nginx on $BASE_URL: 200, certificate verified"

redirect=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' \
    "http://127.0.0.1:$HTTP_PORT/readyz?x=1" 2>&1 || true)
if [ "$redirect" = "308 https://127.0.0.1/readyz?x=1" ]; then
    pass "plain HTTP redirects: $redirect"
else
    fail "plain HTTP redirect: got '$redirect', want '308 https://127.0.0.1/readyz?x=1'"
fi

api GET /metrics
if [ "$STATUS" = 404 ]; then
    pass "/metrics is not published through nginx (404)"
else
    fail "/metrics through nginx answered $STATUS, want 404"
fi

# Provider, partner, connection, user: the admin and partner APIs.
admin POST /admin/api/providers -H 'Content-Type: application/json' \
    -d '{"code":"FAKE","imap_host":"imapd","imap_port":1143,"tls":"none","auth":"plain"}'
[ "$STATUS" = 201 ] || die "create provider: $STATUS $(cat "$WORK/resp")"
pass "provider FAKE created (imapd:1143)"

admin POST /admin/api/partners -H 'Content-Type: application/json' \
    -d '{"name":"Compose check","new_mail_webhook_url":"http://receiver:8080/new_mail"}'
[ "$STATUS" = 201 ] || die "create partner: $STATUS $(cat "$WORK/resp")"
API_KEY=$(json 'j["api_key"]')
WEBHOOK_SECRET=$(json 'j["webhook_secret"]')
if [ -z "$API_KEY" ] || [ -z "$WEBHOOK_SECRET" ]; then
    die "partner answer lacks api_key/webhook_secret: $(cat "$WORK/resp")"
fi
pass "partner created (webhooks to http://receiver:8080/new_mail)"

partner POST /api/v2/connections -d imap_provider_code=FAKE
[ "$STATUS" = 201 ] || die "create connection: $STATUS $(cat "$WORK/resp")"
partner POST /api/v2/connections/FAKE/users \
    -d 'tag=user1@example.com&email=user1@example.com&login_username=user1&login_password=pass1'
[ "$STATUS" = 201 ] || die "create user: $STATUS $(cat "$WORK/resp")"
pass "connection FAKE and user user1@example.com created"

if ! wait_for 90 "user1@example.com in state watching" user_watching; then
    say "last answer: $STATUS $(cat "$WORK/resp" 2>/dev/null)"
    die "a watcher watches the user"
fi
pass "a watcher watches user1@example.com"

# One mail into user1's INBOX through fake-imapd's control socket.
SUBJECT="compose-check $PROJECT $(date +%s)"
printf 'From: Sender <sender@example.com>\r\nTo: user1@example.com\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@example.com>\r\n\r\nOne mail, one webhook.\r\n' \
    "$SUBJECT" "$(date -R)" "$PROJECT.$(date +%s)" >"$WORK/mail.eml"
wait_for 20 "fake-imapd's control socket" control_socket_ready || die "fake-imapd control socket"
reply=$(python3 - "$WORK/control/fake.sock" user1 "$WORK/mail.eml" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
data = open(sys.argv[3], "rb").read()
s.sendall(b"APPEND %s %d\n" % (sys.argv[2].encode(), len(data)) + data)
reply = b""
while not reply.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode().strip())
EOF
) || reply="python3 failed"
case "$reply" in
OK*) say "appended the mail to user1's INBOX: $reply" ;;
*) die "append through fake-imapd's control socket: $reply" ;;
esac

if ! wait_for 60 "the new_mail webhook at the receiver" webhook_arrived; then
    die "one mail becomes a webhook"
fi
if verdict=$(python3 - "$WORK/webhooks" "$WORK/mail.eml" "$SUBJECT" "$WEBHOOK_SECRET" <<'EOF'
import base64, hashlib, hmac, json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if sys.argv[3] in l]
raw = open(sys.argv[2], "rb").read()
secret = base64.b64decode(sys.argv[4].removeprefix("whsec_"))
if len(lines) != 1:
    sys.exit("%d webhooks carry the subject, want 1" % len(lines))
w = lines[0]
body = json.loads(w["body"])
problems = []
if not w["request"].startswith("POST /new_mail "):
    problems.append("request " + w["request"])
if body.get("event") != "new_mail":
    problems.append("event %r" % body.get("event"))
if body.get("user_tag") != "user1@example.com":
    problems.append("user_tag %r" % body.get("user_tag"))
if body.get("sha1") != hashlib.sha1(raw).hexdigest():
    problems.append("sha1 is not the SHA-1 of the mail")
signed = ("%s.%s." % (w["webhook_id"], w["webhook_timestamp"])).encode() + w["body"].encode()
mac = "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
if mac not in w["webhook_signature"].split(" "):
    problems.append("webhook-signature does not verify")
if problems:
    sys.exit("; ".join(problems))
print("webhook-id %s, sha1 and webhook-signature verified" % w["webhook_id"])
EOF
); then
    pass "one mail became one signed new_mail webhook ($verdict)"
else
    fail "the webhook: $verdict"
    sed 's/^/    /' "$WORK/webhooks"
fi

if wait_for 30 "a delivered new_mail event in /api/v2/events" event_delivered; then
    pass "/api/v2/events shows the new_mail event delivered"
else
    fail "/api/v2/events: $STATUS $(head -c 600 "$WORK/resp")"
fi

# Three watchers.
say "docker-compose up -d --scale watcher=3"
if ! timeout 300 "${COMPOSE[@]}" up -d --no-build --scale watcher=3 >"$WORK/scale.log" 2>&1; then
    sed 's/^/    /' "$WORK/scale.log"
    die "docker-compose up -d --scale watcher=3"
fi
if wait_for 90 "3 watchers in /admin/api/fleet" fleet_watchers 3; then
    pass "scaled to 3 watchers: /admin/api/fleet counts 3"
else
    fail "/admin/api/fleet after --scale watcher=3: $STATUS $(head -c 600 "$WORK/resp")"
fi
if wait_for 120 "the third watcher healthy" all_healthy 3; then
    pass "3 watcher containers healthy"
else
    container_states | sed 's/^/    /'
    fail "3 watcher containers healthy"
fi

# The trap tears down, checks what is left and prints the summary.
exit 0
