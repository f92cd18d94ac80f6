#!/usr/bin/env bash
# `make demo`: the whole product on this machine, one mail end to end.
#
# Starts, each its own and stopped by PID on Ctrl-C: a private redis-server
# (unix socket), an IMAP server (a private Dovecot when it is installed and we
# are root, else superimap-fake-imapd; DEMO_IMAP=fake or DEMO_IMAP=dovecot
# chooses), a webhook receiver (demo-tool receiver, built from tests/demo/),
# superimap-api, two superimap-watchers and one superimap-dispatcher. Then,
# through the public HTTP API only (curl, each call shown), it creates a
# provider, a partner whose webhook URLs point at the receiver, the partner's
# connection and one user; delivers one message into the user's INBOX (IMAP
# APPEND with curl for Dovecot, the control channel for fake-imapd); prints the
# signed webhook as received, signatures checked; and prints commands to try
# next with the real key and token. Webhooks that arrive later are printed as
# they come.
#
# Everything is under DEMO_DIR (default ./run-demo, emptied at each start,
# kept after exit for its logs), except Dovecot's instance, which lives in a
# temporary directory under /tmp (its mail processes run as nobody) removed on
# exit. Ports: port 0 where a binary supports it (watchers, dispatcher,
# fake-imapd, receiver), else a port the kernel says is free, retried when
# taken (api, whose public URL names it; Dovecot), so it never collides with
# `make run`.
# SPDX-License-Identifier: MIT
set -euo pipefail

O=${1:-build}
BIN="$(cd "$O/bin" && pwd)"
TOOL="$(cd "$O/tools" && pwd)/demo-tool"
WEB="$PWD/web"
DIR=${DEMO_DIR:-$PWD/run-demo}
IMAP=${DEMO_IMAP:-auto}
TAG=demo@example.com
TAG_PATH=demo%40example.com

say() { printf '%s\n' "$*"; }
die() {
    printf 'demo: %s\n' "$*" >&2
    exit 1
}

# ---- The directory ----

if [ -e "$DIR" ]; then
    [ -e "$DIR/.superimap-demo" ] || die "$DIR exists and is not a demo directory; set DEMO_DIR"
    rm -rf "$DIR"
fi
mkdir -p "$DIR/logs" "$DIR/webhooks"
chmod 700 "$DIR"
touch "$DIR/.superimap-demo"
DIR="$(cd "$DIR" && pwd)"
LOGS="$DIR/logs"
[ ${#DIR} -le 90 ] || die "$DIR is too long for a unix socket path; set DEMO_DIR to a shorter one"
umask 077
ENC_KEY=$(openssl rand -hex 32)
ADMIN_TOKEN=$(openssl rand -hex 24)
umask 022

# ---- Processes ----

pids=()
names=()

# stop_pids SECONDS PID...: SIGTERM to each, then SIGKILL (said) to those
# still there after SECONDS, so a process that hangs in its own shutdown
# cannot keep the demo from stopping.
stop_pids() {
    local limit=$1 p left
    shift
    kill -TERM "$@" 2>/dev/null || true
    local deadline=$((SECONDS + limit))
    while [ "$SECONDS" -lt "$deadline" ]; do
        left=""
        for p in "$@"; do
            kill -0 "$p" 2>/dev/null && left=1
        done
        [ -n "$left" ] || break
        sleep 0.1
    done
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null; then
            say "demo: pid $p did not stop within $limit s of SIGTERM; killing it"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    wait "$@" 2>/dev/null || true
}
DV_DIR=""
stopping=""
stop() {
    [ -z "$stopping" ] || return 0
    stopping=1
    trap - EXIT
    say ""
    say "demo: stopping..."
    # The receiver tail and the nodes together (they drain through Redis,
    # each within SUPERIMAP_SHUTDOWN_TIMEOUT_SEC), then newest first the IMAP
    # server, the receiver, Redis last.
    local i first=() rest=()
    for i in "${!pids[@]}"; do
        case "${names[i]}" in
        tail | api | watcher-* | dispatcher-*) first+=("${pids[i]}") ;;
        *) rest=("${pids[i]}" "${rest[@]}") ;;
        esac
    done
    # The nodes drain within 30 s; the others stop at once.
    [ ${#first[@]} -eq 0 ] || stop_pids 40 "${first[@]}"
    for i in "${rest[@]}"; do
        stop_pids 10 "$i"
    done
    if [ -n "$DV_DIR" ]; then
        rm -rf "$DV_DIR"
    fi
    say "demo: stopped; logs are in $LOGS"
}
# Every way out stops once. A signal that arrives while stop() runs (Ctrl-C
# can land just as an error or the end of the script has started it) must not
# cut it short: then the signal traps do nothing.
trap stop EXIT
trap '[ -n "$stopping" ] || { stop; exit 130; }' INT
trap '[ -n "$stopping" ] || { stop; exit 143; }' TERM

# spawn NAME LOG COMMAND...: runs it in its own session (so that Ctrl-C
# reaches this script only, which stops everything in order) with output to
# LOG ("-": this script's output); its PID is the last of pids.
spawn() {
    local name=$1 log=$2
    shift 2
    if [ "$log" = - ]; then
        setsid "$@" </dev/null &
    else
        setsid "$@" >"$log" 2>&1 </dev/null &
    fi
    pids+=($!)
    names+=("$name")
}

# forget: stops the last spawned process and drops it.
forget() {
    kill -TERM "${pids[-1]}" 2>/dev/null || true
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]' 'names[-1]'
}

# log_value LOG SED_EXPR SECONDS: polls LOG until SED_EXPR (sed -n 's/../../p')
# prints something, and prints it; fails when the last spawned process exits
# or the time is up.
log_value() {
    local log=$1 expr=$2 deadline=$((SECONDS + $3)) v
    while [ "$SECONDS" -lt "$deadline" ]; do
        v=$(sed -n "$expr" "$log" 2>/dev/null | head -n 1)
        [ -n "$v" ] && {
            echo "$v"
            return 0
        }
        kill -0 "${pids[-1]}" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

HTTP_PORT='s/.*http listening.* port=\([0-9][0-9]*\).*/\1/p'

# ---- Redis ----

spawn redis "$LOGS/redis.log" redis-server --port 0 --unixsocket "$DIR/redis.sock" \
    --unixsocketperm 700 --dir "$DIR" --save '' --appendonly no
for _ in $(seq 1 100); do
    redis-cli -s "$DIR/redis.sock" PING >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -s "$DIR/redis.sock" PING >/dev/null 2>&1 || die "redis-server did not start; see $LOGS/redis.log"

# ---- IMAP server ----

if [ "$IMAP" = auto ]; then
    IMAP=fake
    if command -v dovecot >/dev/null 2>&1 && command -v doveadm >/dev/null 2>&1 &&
        [ "$(id -u)" -eq 0 ]; then
        IMAP=dovecot
    fi
fi

start_dovecot() {
    command -v dovecot >/dev/null 2>&1 || die "dovecot is not installed (Debian: dovecot-imapd)"
    [ "$(id -u)" -eq 0 ] || die "Dovecot's master must start as root; use DEMO_IMAP=fake"
    DV_DIR=$(mktemp -d /tmp/superimap-demo-dovecot.XXXXXX)
    chmod 755 "$DV_DIR"
    mkdir -m 755 "$DV_DIR/mail"
    chown 65534:65534 "$DV_DIR/mail" # Dovecot's mail processes run as nobody
    for i in 1 2 3 4 5; do
        echo "user$i:{PLAIN}pass$i::::::"
    done >"$DV_DIR/passwd"
    local attempt
    for attempt in 1 2 3 4 5; do
        IMAP_PORT=$("$TOOL" free-port)
        cat >"$DV_DIR/dovecot.conf" <<CONF
base_dir = $DV_DIR/run
state_dir = $DV_DIR/state
log_path = $LOGS/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:$DV_DIR/mail/%u
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DV_DIR/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$DV_DIR/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
}
CONF
        spawn dovecot "$LOGS/dovecot.out" dovecot -F -c "$DV_DIR/dovecot.conf"
        local deadline=$((SECONDS + 10))
        while [ "$SECONDS" -lt "$deadline" ] && kill -0 "${pids[-1]}" 2>/dev/null; do
            # A login and a LIST: the server is up and the users work.
            curl -s --max-time 2 "imap://127.0.0.1:$IMAP_PORT/" -u user1:pass1 >/dev/null 2>&1 &&
                return 0
            sleep 0.1
        done
        forget # most likely the port was taken meanwhile: another one
    done
    die "Dovecot did not start; see $LOGS/dovecot.log and $LOGS/dovecot.out"
}

start_fake() {
    spawn fake-imapd "$LOGS/fake-imapd.log" env SUPERIMAP_FAKE_PORT=0 \
        SUPERIMAP_FAKE_CONTROL="$DIR/fake-imapd.sock" SUPERIMAP_FAKE_USERS=5 \
        "$BIN/superimap-fake-imapd"
    IMAP_PORT=$(log_value "$LOGS/fake-imapd.log" \
        's/.*listening addr=127\.0\.0\.1:\([0-9][0-9]*\) tls=none.*/\1/p' 10) ||
        die "superimap-fake-imapd did not start; see $LOGS/fake-imapd.log"
}

case "$IMAP" in
dovecot) start_dovecot ;;
fake) start_fake ;;
*) die "DEMO_IMAP must be auto, dovecot or fake" ;;
esac

# ---- Webhook receiver ----

spawn receiver "$LOGS/webhooks.log" "$TOOL" receiver "$DIR/webhooks"
RX_PORT=$(log_value "$LOGS/webhooks.log" 's/^listening port=\([0-9][0-9]*\)$/\1/p' 10) ||
    die "the webhook receiver did not start; see $LOGS/webhooks.log"

# ---- superimap nodes ----

node_env=(SUPERIMAP_REDIS_URL="unix://$DIR/redis.sock" SUPERIMAP_ENCRYPTION_KEY="$ENC_KEY"
    SUPERIMAP_SHUTDOWN_TIMEOUT_SEC=5)

for attempt in 1 2 3 4 5; do
    API_PORT=$("$TOOL" free-port)
    API="http://127.0.0.1:$API_PORT"
    spawn api "$LOGS/api.log" env "${node_env[@]}" SUPERIMAP_NODE_ID=api-1 \
        SUPERIMAP_HTTP_ADDR="127.0.0.1:$API_PORT" SUPERIMAP_PUBLIC_URL="$API" \
        SUPERIMAP_ADMIN_TOKEN="$ADMIN_TOKEN" SUPERIMAP_WEB_ROOT="$WEB" \
        SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1 "$BIN/superimap-api"
    log_value "$LOGS/api.log" "$HTTP_PORT" 10 >/dev/null && break
    forget # the port was taken meanwhile: another one
    [ "$attempt" -eq 5 ] && die "superimap-api did not start; see $LOGS/api.log"
done

declare -A node_port
for node in watcher-1 watcher-2 dispatcher-1; do
    role=${node%-*}
    spawn "$node" "$LOGS/$node.log" env "${node_env[@]}" SUPERIMAP_NODE_ID="$node" \
        SUPERIMAP_HTTP_ADDR=127.0.0.1:0 SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1 \
        "$BIN/superimap-$role"
    node_port[$node]=$(log_value "$LOGS/$node.log" "$HTTP_PORT" 10) ||
        die "superimap-$role did not start; see $LOGS/$node.log"
done
for port in "$API_PORT" "${node_port[@]}"; do
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" || die "a node on port $port is not ready"
done

say "superimap demo: Redis, $IMAP IMAP server on 127.0.0.1:$IMAP_PORT, webhook receiver on"
say "127.0.0.1:$RX_PORT, api on $API, watcher-1, watcher-2 and dispatcher-1 are running."
say "Logs: $LOGS/"
say ""

# ---- Set-up through the public API ----

# call LABEL AUTH_HEADER METHOD PATH [JSON]: shows the call, runs it, checks
# for a 2xx, leaves the answer in $DIR/answer.json.
call() {
    local label=$1 auth=$2 method=$3 path=$4 body=${5:-} code
    say "# $label"
    if [ -n "$body" ]; then
        say "curl -X $method $API$path -H '${auth%%:*}: ...' -d '$body'"
        code=$(curl -sS -o "$DIR/answer.json" -w '%{http_code}' -X "$method" "$API$path" \
            -H "$auth" -H 'Content-Type: application/json' -d "$body")
    else
        say "curl -X $method $API$path -H '${auth%%:*}: ...'"
        code=$(curl -sS -o "$DIR/answer.json" -w '%{http_code}' -X "$method" "$API$path" \
            -H "$auth")
    fi
    say "  -> $code $(head -c 300 "$DIR/answer.json")"
    case "$code" in 2??) ;; *) die "$method $path answered $code" ;; esac
}

# json_str KEY: a string member of $DIR/answer.json (none of ours hold quotes).
json_str() {
    sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$DIR/answer.json" | sed 's,\\/,/,g'
}

ADMIN="Authorization: Bearer $ADMIN_TOKEN"
call "an IMAP provider in front of the $IMAP server (admin API)" "$ADMIN" POST \
    /admin/api/providers \
    "{\"code\":\"DEMO\",\"imap_host\":\"127.0.0.1\",\"imap_port\":$IMAP_PORT,\"tls\":\"none\",\"auth\":\"plain\"}"
HOOK="http://127.0.0.1:$RX_PORT/hook"
call "a partner whose webhooks go to the receiver (admin API)" "$ADMIN" POST /admin/api/partners \
    "{\"name\":\"Demo partner\",\"new_mail_webhook_url\":\"$HOOK/new_mail\",\"user_connected_webhook_url\":\"$HOOK/user_connected\",\"user_disconnected_webhook_url\":\"$HOOK/user_disconnected\"}"
API_KEY=$(json_str api_key)
WHSEC=$(json_str webhook_secret)
{ [ -n "$API_KEY" ] && [ -n "$WHSEC" ]; } || die "the partner's answer has no api_key or webhook_secret"
(
    umask 077
    printf '%s\n%s\n' "$API_KEY" "$WHSEC" >"$DIR/webhooks/credentials"
)
KEY="x-api-key: $API_KEY"
call "the partner's connection to the provider (partner API)" "$KEY" POST /api/v2/connections \
    '{"imap_provider_code":"DEMO"}'
call "a user, IMAP login user1 (partner API)" "$KEY" POST /api/v2/connections/DEMO/users \
    "{\"tag\":\"$TAG\",\"email\":\"$TAG\",\"login_username\":\"user1\",\"login_password\":\"pass1\"}"

state=""
for _ in $(seq 1 200); do
    curl -sS -o "$DIR/answer.json" "$API/api/v2/connections/DEMO/users/$TAG_PATH" -H "$KEY"
    state=$(json_str state)
    [ "$state" = watching ] && break
    sleep 0.1
done
[ "$state" = watching ] || die "the user is '$state', not watching, after 20 s; see $LOGS/watcher-*.log"
say "# the user is watched: state \"watching\""
say ""

# ---- One message ----

printf '%s\r\n' "From: Alice Example <alice@example.org>" "To: Demo User <$TAG>" \
    "Subject: Hello from the superimap demo" "Message-ID: <demo.$$.$RANDOM@example.org>" \
    "Date: $(LC_ALL=C date -R)" "MIME-Version: 1.0" "Content-Type: text/plain; charset=utf-8" \
    "" "This message was put into user1's INBOX by make demo." >"$DIR/mail.eml"
if [ "$IMAP" = dovecot ]; then
    DELIVER="curl -sS imap://127.0.0.1:$IMAP_PORT/INBOX -u user1:pass1 -T $DIR/mail.eml"
else
    DELIVER="$TOOL fake-append $DIR/fake-imapd.sock user1 $DIR/mail.eml"
fi
say "# one message into user1's INBOX"
say "$DELIVER"
$DELIVER >/dev/null || die "cannot deliver the message"

hook=""
for _ in $(seq 1 300); do
    hook=$(find "$DIR/webhooks" -name '*-new_mail.http' | sort | head -n 1)
    [ -n "$hook" ] && break
    sleep 0.1
done
[ -n "$hook" ] || die "no new_mail webhook after 30 s; see $LOGS/dispatcher-1.log and $LOGS/watcher-*.log"
say ""
say "==== the new_mail webhook, as the receiver got it ($hook):"
cat "$hook"

for i in "${!names[@]}"; do
    [ "${names[i]}" = watcher-1 ] && W1=${pids[i]}
done
cat <<MSG

==== try next (webhooks keep being printed below as they arrive; Ctrl-C stops everything)

  API=$API
  KEY='$API_KEY'
  ADMIN_TOKEN='$ADMIN_TOKEN'

  # another message, then watch it arrive here
  $DELIVER
  # the user, and the partner's delivery log
  curl -s \$API/api/v2/connections/DEMO/users/$TAG_PATH -H "x-api-key: \$KEY"
  curl -s "\$API/api/v2/events?limit=5" -H "x-api-key: \$KEY"
  # a signed test event to the new-mail URL
  curl -s -X POST \$API/api/v2/webhook-test -H "x-api-key: \$KEY"
  # archive the user: its new mail is no longer announced
  curl -s -X DELETE \$API/api/v2/connections/DEMO/users/$TAG_PATH -H "x-api-key: \$KEY"
  # the fleet and the queues (admin API)
  curl -s \$API/admin/api/fleet -H "Authorization: Bearer \$ADMIN_TOKEN"
  curl -s \$API/admin/api/queues -H "Authorization: Bearer \$ADMIN_TOKEN"
  # metrics of watcher-1, watcher-2, dispatcher-1
  curl -s http://127.0.0.1:${node_port[watcher-1]}/metrics | grep ^superimap_watcher
  curl -s http://127.0.0.1:${node_port[watcher-2]}/metrics | grep ^superimap_watcher
  curl -s http://127.0.0.1:${node_port[dispatcher-1]}/metrics | grep ^superimap_webhook
  # kill watcher-1: watcher-2 takes its users over once its alive keys expire (about 15 s)
  kill -9 $W1
  # Redis, the logs
  redis-cli -s $DIR/redis.sock
  tail -f $LOGS/*.log

MSG

# Later webhooks, as they come (from the line after the ones already read).
lines=$(wc -l <"$LOGS/webhooks.log")
spawn tail - tail -n +"$((lines + 1))" -f "$LOGS/webhooks.log"
wait
