/*
 * The in-memory mail store of superimap-fake-imapd (see mailbox.h): a
 * core/strmap of mailboxes by user, each an array of messages in UID order.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/mailbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/fake-imapd/rfc822.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/strmap.h"

struct mbox_store {
    struct strmap *boxes; /* user -> struct mailbox */
    int users;            /* user1..userN exist */
};

struct mbox_store *mbox_store_new(int users)
{
    struct mbox_store *st = xcalloc(1, sizeof *st);
    st->boxes = strmap_new();
    st->users = users;
    return st;
}

static void message_free(struct message *m)
{
    xfree(m->data);
    xfree(m->envelope);
    xfree(m);
}

static void mailbox_free(void *p)
{
    struct mailbox *mb = p;
    for (size_t i = 0; i < mb->count; i++)
        message_free(mb->msgs[i]);
    xfree(mb->msgs);
    xfree(mb->user);
    xfree(mb->password);
    xfree(mb);
}

void mbox_store_free(struct mbox_store *st)
{
    if (st == NULL)
        return;
    strmap_free(st->boxes, mailbox_free);
    xfree(st);
}

int mbox_user_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MBOX_USER_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-' || c == '@'))
            return 0;
    }
    return 1;
}

/* Returns K when name is "user<K>" with K in 1..INT_MAX written without
 * leading zeros, else 0. */
static long user_number(const char *name)
{
    if (strncmp(name, "user", 4) != 0 || name[4] < '1' || name[4] > '9')
        return 0;
    char *end;
    long k = strtol(name + 4, &end, 10);
    return *end == '\0' && k > 0 && k < 2147483647L ? k : 0;
}

static struct mailbox *create(struct mbox_store *st, const char *user)
{
    struct mailbox *mb = xcalloc(1, sizeof *mb);
    mb->user = xstrdup(user);
    long k = user_number(user);
    char pw[MBOX_USER_MAX + 8];
    if (k > 0)
        snprintf(pw, sizeof pw, "pass%ld", k);
    else
        snprintf(pw, sizeof pw, "pass-%s", user);
    mb->password = xstrdup(pw);
    mb->uidvalidity = 1;
    mb->uidnext = 1;
    mb->sessions.prev = mb->sessions.next = &mb->sessions;
    strmap_put(st->boxes, user, mb);
    return mb;
}

struct mailbox *mbox_get(struct mbox_store *st, const char *user, int create_it)
{
    if (!mbox_user_valid(user))
        return NULL;
    struct mailbox *mb = strmap_get(st->boxes, user);
    if (mb != NULL)
        return mb;
    long k = user_number(user);
    if (create_it || (k > 0 && k <= st->users))
        return create(st, user);
    return NULL;
}

struct mailbox *mbox_login(struct mbox_store *st, const char *user, const char *password)
{
    struct mailbox *mb = mbox_get(st, user, 0);
    if (mb == NULL || strcmp(mb->password, password) != 0)
        return NULL;
    return mb;
}

int mbox_set_password(struct mbox_store *st, const char *user, const char *password)
{
    struct mailbox *mb = mbox_get(st, user, 1);
    if (mb == NULL)
        return -SIMAP_EINVAL;
    xfree(mb->password);
    mb->password = xstrdup(password);
    return 0;
}

int mbox_append(struct mailbox *mb, const void *data, size_t n, int64_t now_ms, uint32_t *uid)
{
    if (mb->uidnext == UINT32_MAX)
        return -SIMAP_ETOOBIG;
    if (mb->count == mb->cap) {
        mb->cap = mb->cap ? mb->cap * 2 : 8;
        mb->msgs = xrealloc(mb->msgs, mb->cap * sizeof *mb->msgs);
    }
    struct message *m = xcalloc(1, sizeof *m);
    m->uid = mb->uidnext++;
    m->flags = MSG_RECENT;
    m->internal_ms = now_ms;
    m->size = n;
    m->data = xmalloc(n + 1);
    memcpy(m->data, data, n);
    m->data[n] = '\0';
    m->header_len = rfc822_header_len(m->data, n);
    struct buf env;
    buf_init(&env, (size_t)-1 / 2);
    rfc822_envelope(m->data, n, &env); /* cannot fail: the bound is never reached */
    m->envelope_len = env.len;
    m->envelope = buf_steal(&env);
    mb->msgs[mb->count++] = m;
    mb->recent++;
    mb->unseen++;
    *uid = m->uid;
    return 0;
}

void mbox_renumber(struct mailbox *mb, uint32_t v)
{
    uint32_t shift = mb->uidnext - 1;
    if (shift > UINT32_MAX - mb->uidnext) /* keep UIDs in range: start again at 1 */
        shift = 0;
    mb->uidvalidity = v;
    for (size_t i = 0; i < mb->count; i++)
        mb->msgs[i]->uid += shift;
    mb->uidnext += shift;
}

size_t mbox_index_at_or_after(const struct mailbox *mb, uint32_t uid)
{
    size_t lo = 0, hi = mb->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mb->msgs[mid]->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int mbox_set_flag(struct mailbox *mb, size_t i, unsigned flag)
{
    struct message *m = mb->msgs[i];
    if (m->flags & flag)
        return 0;
    m->flags |= flag;
    if (flag == MSG_SEEN)
        mb->unseen--;
    if (flag == MSG_RECENT)
        mb->recent++;
    return 1;
}

void mbox_clear_recent(struct mailbox *mb)
{
    for (size_t i = 0; i < mb->count; i++)
        mb->msgs[i]->flags &= ~MSG_RECENT;
    mb->recent = 0;
}

static void reset_max(const char *user, void *p, void *data)
{
    (void)user;
    (void)data;
    struct mailbox *mb = p;
    mb->sessions_max = mb->sessions_now;
}

void mbox_store_reset_max(struct mbox_store *st)
{
    strmap_each(st->boxes, reset_max, NULL);
}

static void take_max(const char *user, void *p, void *data)
{
    (void)user;
    const struct mailbox *mb = p;
    int *max = data;
    if (mb->sessions_max > *max)
        *max = mb->sessions_max;
}

int mbox_store_max_sessions(const struct mbox_store *st)
{
    int max = 0;
    strmap_each(st->boxes, take_max, &max);
    return max;
}
