/*
 * cmd/watcher/event: new_mail payloads and the record_mail call (see
 * event.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/watcher/callgate.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "proto/envelope.h"
#include "proto/imap_parse.h"

/* Room for the JSON around the message: envelope, decoded, keys. */
#define PAYLOAD_SLACK (2u << 20)

/* An event id: a user id (at most 64 bytes, users.h) and two 32-bit numbers. */
#define EID_MAX 128

void event_id(const struct mail_event *m, char *out, size_t outlen)
{
    char tag[CRYPTO_SHA1_HEX_LEN + 1] = "";
    if (m->mailbox != NULL && crypto_sha1_hex(m->mailbox, strlen(m->mailbox), tag) == 0)
        tag[8] = '\0';
    snprintf(out, outlen, "%s.%" PRIu32 ".%" PRIu32 "%s%s", m->uid, m->uidvalidity, m->msg_uid,
             tag[0] ? ".m" : "", tag);
}

/* ---- IMAP envelope to proto/envelope's borrowed view ---- */

static struct envelope_str str_of(const struct imap_str *s)
{
    struct envelope_str e = {s->data, s->len, s->data == NULL};
    return e;
}

static struct envelope_addrs addrs_of(const struct imap_addrlist *l, struct envelope_addr **owned)
{
    struct envelope_addrs a = {NULL, 0, l->is_nil};
    *owned = NULL;
    if (l->is_nil || l->n == 0)
        return a;
    struct envelope_addr *v = xcalloc(l->n, sizeof *v);
    for (size_t i = 0; i < l->n; i++) {
        v[i].name = str_of(&l->items[i].name);
        v[i].adl = str_of(&l->items[i].adl);
        v[i].mailbox = str_of(&l->items[i].mailbox);
        v[i].host = str_of(&l->items[i].host);
    }
    a.v = v;
    a.count = l->n;
    *owned = v;
    return a;
}

static int write_envelope(struct json_gen *g, const struct imap_envelope *ie)
{
    struct envelope e;
    struct envelope_addr *owned[6] = {NULL};
    memset(&e, 0, sizeof e);
    if (ie == NULL) {
        struct envelope_str nil = {NULL, 0, 1};
        struct envelope_addrs nil_list = {NULL, 0, 1};
        e.date = e.subject = e.in_reply_to = e.message_id = nil;
        e.from = e.sender = e.reply_to = e.to = e.cc = e.bcc = nil_list;
    } else {
        e.date = str_of(&ie->date);
        e.subject = str_of(&ie->subject);
        e.from = addrs_of(&ie->from, &owned[0]);
        e.sender = addrs_of(&ie->sender, &owned[1]);
        e.reply_to = addrs_of(&ie->reply_to, &owned[2]);
        e.to = addrs_of(&ie->to, &owned[3]);
        e.cc = addrs_of(&ie->cc, &owned[4]);
        e.bcc = addrs_of(&ie->bcc, &owned[5]);
        e.in_reply_to = str_of(&ie->in_reply_to);
        e.message_id = str_of(&ie->message_id);
    }
    int rc = envelope_json_fields(g, &e);
    for (int i = 0; i < 6; i++)
        xfree(owned[i]);
    return rc;
}

/* ---- Tracer mail ---- */

int event_tracer_id(const struct imap_envelope *env, char id[EVENT_TRACER_ID_MAX + 1])
{
    static const char prefix[] = "TRACER: ";
    const size_t plen = sizeof prefix - 1;
    if (env == NULL || env->subject.data == NULL)
        return 0;
    const char *v = env->subject.data;
    size_t n = env->subject.len;
    if (n <= plen || n - plen > EVENT_TRACER_ID_MAX || memcmp(v, prefix, plen) != 0)
        return 0;
    for (size_t i = plen; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    memcpy(id, v + plen, n - plen);
    id[n - plen] = '\0';
    return 1;
}

/* ---- Payload ---- */

static void write_gmail(struct json_gen *g, const struct imap_fetch *f)
{
    char n[24];
    snprintf(n, sizeof n, "%" PRIu64, f->gm_msgid);
    json_gen_key_str(g, "gmail_msgid", n);
    snprintf(n, sizeof n, "%" PRIu64, f->gm_thrid);
    json_gen_key_str(g, "gmail_thrid", n);
    json_gen_key(g, "gmail_labels");
    json_gen_array_open(g);
    for (size_t i = 0; i < f->gm_labels.n; i++)
        json_gen_strn(g, f->gm_labels.items[i].data, f->gm_labels.items[i].len);
    json_gen_array_close(g);
}

int event_payload(const struct mail_event *m, char sha1[41], char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    char eid[EID_MAX];
    event_id(m, eid, sizeof eid);
    int rc = 0;
    if (m->too_large && m->sha1 != NULL && strlen(m->sha1) == CRYPTO_SHA1_HEX_LEN)
        memcpy(sha1, m->sha1, CRYPTO_SHA1_HEX_LEN + 1);
    else if (m->too_large || m->raw == NULL)
        rc = crypto_sha1_hex(eid, strlen(eid), sha1);
    else
        rc = crypto_sha1_hex(m->raw, m->raw_len, sha1);
    if (rc < 0)
        return rc;
    /* Worst case: every byte escaped as \u00XX (6), plus base64 (4/3). */
    size_t n = m->too_large ? 0 : m->raw_len;
    if (n > (SIZE_MAX - PAYLOAD_SLACK) / 8)
        return -SIMAP_ETOOBIG;
    struct json_gen *g = json_gen_new(n * 6 + n / 3 * 4 + 8 + PAYLOAD_SLACK);
    json_gen_object_open(g);
    json_gen_key_str(g, "event", "new_mail");
    json_gen_key_str(g, "id", eid);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", m->tag);
    json_gen_key_str(g, "imap_provider_code", m->code);
    write_envelope(g, m->env);
    if (m->too_large || m->raw == NULL)
        json_gen_key_null(g, "rfc822");
    else
        envelope_json_rfc822(g, m->raw, m->raw_len);
    json_gen_key_int(g, "uid", m->msg_uid);
    json_gen_key_int(g, "uidvalidity", m->uidvalidity);
    json_gen_key_int(g, "size", (int64_t)m->size);
    json_gen_key_bool(g, "too_large", m->too_large);
    if (m->mailbox_name != NULL) {
        json_gen_key_str(g, "mailbox", m->mailbox_name);
        if (m->special_use)
            json_gen_key_str(g, "special_use", m->mailbox);
    }
    if (m->gm != NULL)
        write_gmail(g, m->gm);
    json_gen_object_close(g);
    rc = json_gen_finish(g, out, outlen);
    json_gen_free(g);
    return rc;
}

/* ---- record_mail ---- */

int event_record(struct callgate *gate, const struct crypto_keys *keys, const struct mail_event *m,
                 const char *token, const char *alive_key,
                 void (*cb)(struct rconn *rc, struct redisReply *reply, int err, void *privdata),
                 void *privdata)
{
    char sha1[41];
    char *payload;
    size_t len;
    int r = event_payload(m, sha1, &payload, &len);
    if (r < 0)
        return r;
    char eid[EID_MAX], aad[SCHEMA_KEY_MAX + 16];
    event_id(m, eid, sizeof eid);
    schema_aad_event(aad, eid);
    char *sealed;
    r = crypto_encrypt(keys, payload, len, aad, &sealed);
    crypto_wipe(payload, len);
    xfree(payload);
    if (r < 0)
        return r;

    char k_lease[SCHEMA_KEY_MAX], k_cur[SCHEMA_KEY_MAX], k_evt[SCHEMA_KEY_MAX],
        k_ready[SCHEMA_KEY_MAX], k_partners[SCHEMA_SHARD_KEY_MAX], k_user[SCHEMA_KEY_MAX];
    char uv[16], muid[16], last[16];
    schema_key_lease(k_lease, m->k, m->uid);
    schema_key_cur(k_cur, m->k, m->uid);
    schema_key_event(k_evt, m->k, eid);
    schema_key_ready(k_ready, m->k, m->pid);
    schema_key_ready_partners(k_partners, m->k);
    schema_key_user(k_user, m->k, m->uid);
    snprintf(uv, sizeof uv, "%" PRIu32, m->uidvalidity);
    snprintf(muid, sizeof muid, "%" PRIu32, m->msg_uid);
    snprintf(last, sizeof last, "%" PRIu32, m->last_uid);
    char tracer[EVENT_TRACER_ID_MAX + 1], gm[24];
    const char *argv[33] = {k_lease,    alive_key, k_cur,     k_evt,  k_ready, k_partners, k_user,
                            token,      uv,        muid,      eid,    m->pid,  last,       "type",
                            "new_mail", "uid",     m->uid,    "code", m->code, "tag",      m->tag,
                            "sha1",     sha1,      "payload", sealed};
    int argc = 25;
    if (event_tracer_id(m->env, tracer)) {
        argv[argc++] = "tracer";
        argv[argc++] = tracer;
    }
    if (m->mailbox != NULL) {
        argv[argc++] = "mailbox";
        argv[argc++] = m->mailbox;
    }
    if (m->gm != NULL && m->gm_dedupe && (m->gm->has & IMAP_FETCH_GM_MSGID)) {
        snprintf(gm, sizeof gm, "%" PRIu64, m->gm->gm_msgid);
        argv[argc++] = "gm_msgid";
        argv[argc++] = gm;
    }
    r = callgate_script_acked(gate, cb, privdata, "record_mail", 7, argc, argv, NULL);
    xfree(sealed);
    return r;
}

enum event_result event_result_of(const struct redisReply *reply, int err)
{
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return EVENT_FAILED;
    const redisReply *a = reply->element[0], *b = reply->element[1];
    if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_STRING)
        return EVENT_FAILED;
    if (a->integer == 1 && strcmp(b->str, "duplicate") == 0)
        return EVENT_DUPLICATE;
    if (a->integer == 1)
        return strcmp(b->str, "tracer") == 0 ? EVENT_TRACER : EVENT_RECORDED;
    if (strcmp(b->str, "old") == 0)
        return EVENT_OLD;
    if (strcmp(b->str, "stale") == 0)
        return EVENT_STALE;
    if (strcmp(b->str, "uidvalidity") == 0)
        return EVENT_UIDVALIDITY;
    if (strcmp(b->str, "nocursor") == 0)
        return EVENT_NOCURSOR;
    if (strcmp(b->str, "behind") == 0)
        return EVENT_BEHIND;
    if (strcmp(b->str, "unwatched") == 0)
        return EVENT_UNWATCHED;
    return EVENT_FAILED;
}
