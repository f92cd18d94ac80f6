/*
 * proto/envelope: the new_mail event's "envelope" (RFC 3501 ENVELOPE, raw, as
 * the original serialized it), "decoded" (RFC 2047 via proto/mime_words) and
 * "rfc822"/"rfc822_base64" (RFC 3629 UTF-8 check, RFC 4648 base64) JSON
 * members. The shapes are documented in the header.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/envelope.h"

#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "proto/codec.h"
#include "proto/mime_words.h"

/* ---- Argument checks ---- */

static int str_ok(const struct envelope_str *s)
{
    return s->is_nil || s->ptr != NULL || s->len == 0;
}

static int addrs_ok(const struct envelope_addrs *l)
{
    if (l->is_nil)
        return 1;
    if (l->v == NULL)
        return l->count == 0;
    for (size_t i = 0; i < l->count; i++) {
        const struct envelope_addr *a = &l->v[i];
        if (!str_ok(&a->name) || !str_ok(&a->adl) || !str_ok(&a->mailbox) || !str_ok(&a->host))
            return 0;
    }
    return 1;
}

static int envelope_ok(const struct envelope *e)
{
    return str_ok(&e->date) && str_ok(&e->subject) && addrs_ok(&e->from) && addrs_ok(&e->sender) &&
           addrs_ok(&e->reply_to) && addrs_ok(&e->to) && addrs_ok(&e->cc) && addrs_ok(&e->bcc) &&
           str_ok(&e->in_reply_to) && str_ok(&e->message_id);
}

/* ---- Strings ---- */

/* Writes raw bytes as a string, sanitized to UTF-8 when they are not. */
static int gen_text(struct json_gen *g, const char *p, size_t n)
{
    if (json_utf8_valid(p, n))
        return json_gen_strn(g, p, n);
    size_t len;
    char *t = json_utf8_sanitize(p, n, &len);
    int rc = json_gen_strn(g, t, len);
    xfree(t);
    return rc;
}

static int gen_raw_str(struct json_gen *g, const struct envelope_str *s)
{
    if (s->is_nil)
        return json_gen_null(g);
    return gen_text(g, s->ptr, s->len);
}

/* Writes s with its RFC 2047 words decoded; NIL is null. The decoder's
 * output fits the bound below, so its -SIMAP_ETOOBIG cannot happen; were it
 * to, the raw text is written rather than leaving the generator a value
 * short. */
static int gen_decoded_str(struct json_gen *g, const struct envelope_str *s)
{
    if (s->is_nil)
        return json_gen_null(g);
    if (s->len > (SIZE_MAX - 16) / MIME_WORDS_MAX_GROWTH)
        return gen_raw_str(g, s);
    struct buf b;
    buf_init(&b, s->len * MIME_WORDS_MAX_GROWTH + 16);
    int rc = mime_words_decode(s->ptr, s->len, &b);
    rc = rc == 0 ? json_gen_strn(g, b.data, b.len) : gen_raw_str(g, s);
    buf_free(&b);
    return rc;
}

/* ---- "envelope" ---- */

static int gen_raw_addrs(struct json_gen *g, const char *key, const struct envelope_addrs *l)
{
    json_gen_key(g, key);
    if (l->is_nil)
        return json_gen_null(g);
    json_gen_array_open(g);
    for (size_t i = 0; i < l->count; i++) {
        const struct envelope_addr *a = &l->v[i];
        json_gen_object_open(g);
        json_gen_key(g, "name");
        gen_raw_str(g, &a->name);
        json_gen_key(g, "route");
        gen_raw_str(g, &a->adl);
        json_gen_key(g, "mailbox");
        gen_raw_str(g, &a->mailbox);
        json_gen_key(g, "host");
        gen_raw_str(g, &a->host);
        json_gen_object_close(g);
    }
    return json_gen_array_close(g);
}

static int gen_raw_key(struct json_gen *g, const char *key, const struct envelope_str *s)
{
    json_gen_key(g, key);
    return gen_raw_str(g, s);
}

/* The generator's errors are sticky, so the calls below are checked once, by
 * the last one. */
static int gen_envelope(struct json_gen *g, const struct envelope *e)
{
    json_gen_object_open(g);
    gen_raw_key(g, "date", &e->date);
    gen_raw_key(g, "subject", &e->subject);
    gen_raw_addrs(g, "from", &e->from);
    gen_raw_addrs(g, "sender", &e->sender);
    gen_raw_addrs(g, "reply_to", &e->reply_to);
    gen_raw_addrs(g, "to", &e->to);
    gen_raw_addrs(g, "cc", &e->cc);
    gen_raw_addrs(g, "bcc", &e->bcc);
    gen_raw_key(g, "in_reply_to", &e->in_reply_to);
    gen_raw_key(g, "message_id", &e->message_id);
    return json_gen_object_close(g);
}

/* ---- "decoded" ---- */

static int gen_address(struct json_gen *g, const struct envelope_addr *a)
{
    json_gen_key(g, "address");
    if (a->mailbox.is_nil || a->host.is_nil)
        return json_gen_null(g);
    if (a->mailbox.len > SIZE_MAX - 1 - a->host.len) /* not in one address space */
        return json_gen_null(g);
    size_t n = a->mailbox.len + 1 + a->host.len;
    char *t = xmalloc(n);
    if (a->mailbox.len > 0)
        memcpy(t, a->mailbox.ptr, a->mailbox.len);
    t[a->mailbox.len] = '@';
    if (a->host.len > 0)
        memcpy(t + a->mailbox.len + 1, a->host.ptr, a->host.len);
    int rc = gen_text(g, t, n);
    xfree(t);
    return rc;
}

static int gen_decoded_addrs(struct json_gen *g, const char *key, const struct envelope_addrs *l)
{
    json_gen_key(g, key);
    if (l->is_nil)
        return json_gen_null(g);
    json_gen_array_open(g);
    for (size_t i = 0; i < l->count; i++) {
        const struct envelope_addr *a = &l->v[i];
        /* RFC 3501: NIL host marks a group's start or end, not a mailbox. */
        if (a->host.is_nil)
            continue;
        json_gen_object_open(g);
        json_gen_key(g, "name");
        gen_decoded_str(g, &a->name);
        json_gen_key(g, "mailbox");
        gen_raw_str(g, &a->mailbox);
        json_gen_key(g, "host");
        gen_raw_str(g, &a->host);
        gen_address(g, a);
        json_gen_object_close(g);
    }
    return json_gen_array_close(g);
}

static int gen_decoded(struct json_gen *g, const struct envelope *e)
{
    json_gen_object_open(g);
    json_gen_key(g, "subject");
    gen_decoded_str(g, &e->subject);
    gen_decoded_addrs(g, "from", &e->from);
    gen_decoded_addrs(g, "sender", &e->sender);
    gen_decoded_addrs(g, "reply_to", &e->reply_to);
    gen_decoded_addrs(g, "to", &e->to);
    gen_decoded_addrs(g, "cc", &e->cc);
    gen_decoded_addrs(g, "bcc", &e->bcc);
    return json_gen_object_close(g);
}

/* ---- Public: envelope ---- */

int envelope_json_envelope(struct json_gen *g, const struct envelope *env)
{
    if (g == NULL || env == NULL || !envelope_ok(env))
        return -SIMAP_EINVAL;
    return gen_envelope(g, env);
}

int envelope_json_decoded(struct json_gen *g, const struct envelope *env)
{
    if (g == NULL || env == NULL || !envelope_ok(env))
        return -SIMAP_EINVAL;
    return gen_decoded(g, env);
}

int envelope_json_fields(struct json_gen *g, const struct envelope *env)
{
    if (g == NULL || env == NULL || !envelope_ok(env))
        return -SIMAP_EINVAL;
    json_gen_key(g, "envelope");
    gen_envelope(g, env);
    json_gen_key(g, "decoded");
    return gen_decoded(g, env);
}

/* ---- Public: raw message ---- */

int envelope_rfc822_fields(const char *raw, size_t n, struct envelope_rfc822 *r)
{
    if (r == NULL || (raw == NULL && n > 0))
        return -SIMAP_EINVAL;
    memset(r, 0, sizeof *r);
    if (json_utf8_valid(raw, n)) {
        r->is_utf8 = 1;
        r->text = n > 0 ? raw : "";
        r->text_len = n;
        return 1;
    }
    size_t b64_len;
    char *b64 = codec_b64_encode(raw, n, &b64_len);
    if (b64 == NULL)
        return -SIMAP_ETOOBIG;
    r->base64 = b64;
    r->base64_len = b64_len;
    r->owned = json_utf8_sanitize(raw, n, &r->text_len);
    r->text = r->owned;
    return 0;
}

void envelope_rfc822_release(struct envelope_rfc822 *r)
{
    if (r == NULL)
        return;
    xfree(r->owned);
    xfree(r->base64);
    memset(r, 0, sizeof *r);
}

int envelope_json_rfc822(struct json_gen *g, const char *raw, size_t n)
{
    if (g == NULL)
        return -SIMAP_EINVAL;
    struct envelope_rfc822 r;
    int rc = envelope_rfc822_fields(raw, n, &r);
    if (rc < 0)
        return rc;
    json_gen_key(g, "rfc822");
    rc = json_gen_strn(g, r.text, r.text_len);
    if (!r.is_utf8) {
        json_gen_key(g, "rfc822_base64");
        rc = json_gen_strn(g, r.base64, r.base64_len);
    }
    envelope_rfc822_release(&r);
    return rc;
}
