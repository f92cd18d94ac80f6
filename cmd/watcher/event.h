/*
 * cmd/watcher/event: one new message becomes one new_mail event, through
 * scripts/lua/record_mail.lua (docs/architecture.md section 6).
 *
 * The payload is the webhook body (README, "Webhooks") without timestamp
 * and signature (the dispatcher adds both at each attempt), in this order:
 *
 *   {"event":"new_mail","id":"<uid>.<uidvalidity>.<message UID>",
 *    "sha1":"<hex SHA-1 of the exact raw message>","user_tag":"...",
 *    "imap_provider_code":"...","envelope":{...},"decoded":{...},
 *    "rfc822":"...",["rfc822_base64":"...",]
 *    "uid":<message UID>,"uidvalidity":<n>,"size":<RFC822.SIZE>,"too_large":false
 *    [,"mailbox":"<server's name>"[,"special_use":"\\Junk"]]
 *    [,"gmail_msgid":"<X-GM-MSGID>","gmail_thrid":"<X-GM-THRID>","gmail_labels":[...]]}
 *
 * Mail of INBOX has no "mailbox" member and its id is as above, as in the
 * original; mail of any other watched mailbox has "mailbox" (and
 * "special_use" when the user named it by its RFC 6154 attribute) and the
 * id "<uid>.<uidvalidity>.<message UID>.m<8 hex digits>", the digits the
 * start of the SHA-1 of the mailbox as configured (uidvalidity and UIDs are
 * per mailbox, so the same numbers recur in two mailboxes). On a Gmail
 * server (X-GM-EXT-1) the three gmail_ members carry the message's ids
 * (64-bit decimal text: beyond what a JSON number keeps) and labels.
 *
 * envelope, decoded, rfc822 and rfc822_base64 as proto/envelope.h says. A
 * message above SUPERIMAP_MAX_EMAIL_SIZE is not kept: "too_large":true,
 * "rfc822":null and "sha1" is the SHA-1 of its bytes, read in parts and
 * hashed as they come (cmd/watcher/session_mailbox.c); only when they could
 * not be read is it the SHA-1 of the event id, so the original's signature
 * scheme still works.
 *
 * The payload is encrypted with AAD "si:evt:<eid>" (core/schema.h) and the
 * event hash gets type, uid, code, tag, sha1 and payload; record_mail adds
 * id, pid, attempts, state and created_at, checks the lease and the cursor,
 * queues the id and advances the cursor, all at once.
 *
 * Tracer mail (README "Tracer mail"): a message whose ENVELOPE subject is
 * exactly "TRACER: <id>" (id: 1 to 64 of [A-Za-z0-9_-]; the original's
 * sender used 20 hex digits) carries that id to record_mail, which checks
 * the user's enable_tracer in the same call: for a tracer user it records
 * the detection instead of an event (tracers are not announced to the
 * partner); anyone else's mail with such a subject is announced as usual.
 *
 * Loop thread; pure except for the Redis call.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_EVENT_H
#define CMD_WATCHER_EVENT_H

#include <stddef.h>
#include <stdint.h>

struct callgate;
struct crypto_keys;
struct imap_envelope;
struct imap_fetch;
struct rconn;
struct redisReply;

/* One message to record. Everything is borrowed for the call. */
struct mail_event {
    const char *uid;                 /* user id */
    uint32_t k;                      /* its shard */
    const char *pid;                 /* partner id */
    const char *code;                /* provider code */
    const char *tag;                 /* user tag */
    uint32_t uidvalidity;            /* the mailbox's */
    uint32_t msg_uid;                /* the message's IMAP UID */
    uint32_t last_uid;               /* the caller's cursor: the last UID it saw recorded */
    uint64_t size;                   /* RFC822.SIZE (or the body's length) */
    const struct imap_envelope *env; /* NULL: every field NIL */
    const char *raw;                 /* exact bytes; NULL when too_large */
    size_t raw_len;
    int too_large;            /* size above SUPERIMAP_MAX_EMAIL_SIZE: no body */
    const char *sha1;         /* too_large: hex SHA-1 of the message, hashed in parts; NULL when it
                         could not be read (the event id's SHA-1 stands in) */
    const char *mailbox;      /* the mailbox as configured ("\\Junk", "Work"); NULL: INBOX */
    const char *mailbox_name; /* its name on the server; NULL: INBOX */
    int special_use;          /* mailbox is an RFC 6154 attribute */
    const struct imap_fetch *gm; /* Gmail: the FETCH with X-GM-MSGID, X-GM-THRID and
                                    X-GM-LABELS; NULL elsewhere */
    int gm_dedupe; /* announce the X-GM-MSGID once per user (several labels watched) */
};

/*
 * Builds the payload of m as described above into a new string *out (xfree()
 * it) of *outlen bytes, and the sha1 field into sha1. Returns 0 or a
 * negative code (-SIMAP_ETOOBIG, -SIMAP_EINVAL) with *out NULL.
 */
int event_payload(const struct mail_event *m, char sha1[41], char **out, size_t *outlen);

/* Writes into id the tracer id of a subject "TRACER: <id>" (as above) and
 * returns 1; returns 0 for any other subject (env NULL included). */
#define EVENT_TRACER_ID_MAX 64
int event_tracer_id(const struct imap_envelope *env, char id[EVENT_TRACER_ID_MAX + 1]);

/* Writes the event id (above) into out. */
void event_id(const struct mail_event *m, char *out, size_t outlen);

/*
 * Builds, encrypts and submits record_mail for m through the sessions'
 * gate (callgate.h) with the caller's lease token and alive key (borrowed,
 * copied by the gate). cb gets record_mail's reply ({1,'recorded'} or
 * {0,reason}) exactly once, as rconn_script_acked() says: with
 * SUPERIMAP_REDIS_MIN_REPLICAS_ACK, only once enough replicas have it, else
 * -SIMAP_EREPLICAS (the session fetches and records it again: record_mail
 * answers 'old' for what it has). Returns 0 (cb will
 * run), or a negative code without calling cb: payload or encryption
 * failure, or rconn refusing the command.
 */
int event_record(struct callgate *gate, const struct crypto_keys *keys, const struct mail_event *m,
                 const char *token, const char *alive_key,
                 void (*cb)(struct rconn *rc, struct redisReply *reply, int err, void *privdata),
                 void *privdata);

/* Outcome of a record_mail reply. */
enum event_result {
    EVENT_RECORDED,    /* {1, 'recorded'} */
    EVENT_TRACER,      /* {1, 'tracer', latency ms or ''}: a tracer detected, not announced */
    EVENT_DUPLICATE,   /* {1, 'duplicate'}: a Gmail message announced under another label */
    EVENT_OLD,         /* {0, 'old'}: already recorded (a replay) */
    EVENT_STALE,       /* {0, 'stale'}: the lease is not ours any more */
    EVENT_UIDVALIDITY, /* {0, 'uidvalidity'}: re-baseline */
    EVENT_NOCURSOR,    /* {0, 'nocursor'} */
    EVENT_BEHIND,      /* {0, 'behind'}: Redis lost writes it acknowledged */
    EVENT_UNWATCHED,   /* {0, 'unwatched'}: archived or disconnected meanwhile */
    EVENT_FAILED,      /* no reply, an error reply, or a reply of another shape */
};

/* Classifies a record_mail reply (err and reply as given to the callback). */
enum event_result event_result_of(const struct redisReply *reply, int err);

#endif
