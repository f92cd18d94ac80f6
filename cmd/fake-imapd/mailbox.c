/*
 * The in-memory mail store of superimap-fake-imapd (see mailbox.h): a
 * core/strmap of accounts by user, each a list of folders, each an array of
 * messages in UID order.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/mailbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/fake-imapd/rfc822.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/strmap.h"

struct mbox_store {
    struct strmap *boxes;      /* user -> struct account */
    int users;                 /* user1..userN exist */
    uint32_t next_uidvalidity; /* of the next folder made */
    uint64_t gm_msgid;         /* the last X-GM-MSGID given */
};

struct mbox_store *mbox_store_new(int users)
{
    struct mbox_store *st = xcalloc(1, sizeof *st);
    st->boxes = strmap_new();
    st->users = users;
    st->next_uidvalidity = 1000;
    st->gm_msgid = 1500000000000000000ull; /* Gmail's ids are this large: 64 bits on the wire */
    return st;
}

static void message_free(struct message *m)
{
    xfree(m->data);
    xfree(m->envelope);
    xfree(m->labels);
    xfree(m);
}

static void folder_clear(struct folder *f)
{
    for (size_t i = 0; i < f->count; i++)
        message_free(f->msgs[i]);
    xfree(f->msgs);
    xfree(f->gone);
    xfree(f->name);
}

static void mailbox_free(void *p)
{
    struct account *mb = p;
    for (struct folder *f = mb->inbox.next, *next; f != NULL; f = next) {
        next = f->next;
        folder_clear(f);
        xfree(f);
    }
    folder_clear(&mb->inbox);
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

static struct account *create(struct mbox_store *st, const char *user)
{
    struct account *mb = xcalloc(1, sizeof *mb);
    mb->user = xstrdup(user);
    long k = user_number(user);
    char pw[MBOX_USER_MAX + 8];
    if (k > 0)
        snprintf(pw, sizeof pw, "pass%ld", k);
    else
        snprintf(pw, sizeof pw, "pass-%s", user);
    mb->password = xstrdup(pw);
    mb->inbox.uidvalidity = 1;
    mb->inbox.uidnext = 1;
    mb->sessions.prev = mb->sessions.next = &mb->sessions;
    strmap_put(st->boxes, user, mb);
    return mb;
}

struct account *mbox_get(struct mbox_store *st, const char *user, int create_it)
{
    if (!mbox_user_valid(user))
        return NULL;
    struct account *mb = strmap_get(st->boxes, user);
    if (mb != NULL)
        return mb;
    long k = user_number(user);
    if (create_it || (k > 0 && k <= st->users))
        return create(st, user);
    return NULL;
}

struct account *mbox_login(struct mbox_store *st, const char *user, const char *password)
{
    struct account *mb = mbox_get(st, user, 0);
    if (mb == NULL || strcmp(mb->password, password) != 0)
        return NULL;
    return mb;
}

int mbox_set_password(struct mbox_store *st, const char *user, const char *password)
{
    struct account *mb = mbox_get(st, user, 1);
    if (mb == NULL)
        return -SIMAP_EINVAL;
    xfree(mb->password);
    mb->password = xstrdup(password);
    return 0;
}

int mbox_append(struct folder *f, const void *data, size_t n, int64_t now_ms, uint32_t *uid)
{
    if (f->uidnext == UINT32_MAX)
        return -SIMAP_ETOOBIG;
    if (f->count == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->msgs = xrealloc(f->msgs, f->cap * sizeof *f->msgs);
    }
    struct message *m = xcalloc(1, sizeof *m);
    m->uid = f->uidnext++;
    m->flags = MSG_RECENT;
    m->modseq = ++f->highestmodseq;
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
    f->msgs[f->count++] = m;
    f->recent++;
    f->unseen++;
    *uid = m->uid;
    return 0;
}

void mbox_renumber(struct folder *f, uint32_t v)
{
    uint32_t shift = f->uidnext - 1;
    if (shift > UINT32_MAX - f->uidnext) /* keep UIDs in range: start again at 1 */
        shift = 0;
    f->uidvalidity = v;
    for (size_t i = 0; i < f->count; i++)
        f->msgs[i]->uid += shift;
    f->uidnext += shift;
}

size_t mbox_index_at_or_after(const struct folder *f, uint32_t uid)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->msgs[mid]->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int mbox_set_flag(struct folder *f, size_t i, unsigned flag)
{
    struct message *m = f->msgs[i];
    if (m->flags & flag)
        return 0;
    m->flags |= flag;
    if (flag == MSG_SEEN)
        m->modseq = ++f->highestmodseq;
    if (flag == MSG_SEEN)
        f->unseen--;
    if (flag == MSG_RECENT)
        f->recent++;
    return 1;
}

void mbox_clear_recent(struct folder *f)
{
    for (size_t i = 0; i < f->count; i++)
        f->msgs[i]->flags &= ~MSG_RECENT;
    f->recent = 0;
}

static void reset_max(const char *user, void *p, void *data)
{
    (void)user;
    (void)data;
    struct account *mb = p;
    mb->sessions_max = mb->sessions_now;
}

void mbox_store_reset_max(struct mbox_store *st)
{
    strmap_each(st->boxes, reset_max, NULL);
}

static void take_max(const char *user, void *p, void *data)
{
    (void)user;
    const struct account *mb = p;
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

int mbox_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MBOX_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    return 1;
}

struct folder *mbox_folder(struct account *a, const char *name)
{
    if (strcasecmp(name, "INBOX") == 0)
        return &a->inbox;
    for (struct folder *f = a->inbox.next; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

struct folder *mbox_folder_create(struct mbox_store *st, struct account *a, const char *name,
                                  unsigned special)
{
    if (!mbox_name_valid(name) || special >= FS_COUNT || mbox_folder(a, name) != NULL)
        return NULL;
    struct folder *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name);
    f->special = special;
    f->uidvalidity =
        st->next_uidvalidity++; /* a folder made again is a new one (RFC 3501 2.3.1.1) */
    f->uidnext = 1;
    struct folder **tail = &a->inbox.next;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = f;
    return f;
}

int mbox_folder_rename(struct account *a, struct folder *f, const char *name)
{
    if (f == &a->inbox || !mbox_name_valid(name) || mbox_folder(a, name) != NULL)
        return -SIMAP_EINVAL;
    xfree(f->name);
    f->name = xstrdup(name);
    return 0;
}

void mbox_folder_delete(struct account *a, struct folder *f)
{
    for (struct folder **pp = &a->inbox.next; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            folder_clear(f);
            xfree(f);
            return;
        }
    }
}

long mbox_expunge(struct folder *f, uint32_t uid)
{
    size_t i = mbox_index_at_or_after(f, uid);
    if (i == f->count || f->msgs[i]->uid != uid)
        return -1;
    struct message *m = f->msgs[i];
    if (m->flags & MSG_RECENT)
        f->recent--;
    if (!(m->flags & MSG_SEEN))
        f->unseen--;
    message_free(m);
    memmove(f->msgs + i, f->msgs + i + 1, (f->count - i - 1) * sizeof *f->msgs);
    f->count--;
    f->gone = xrealloc(f->gone, (f->ngone + 1) * sizeof *f->gone);
    f->gone[f->ngone].uid = uid;
    f->gone[f->ngone].modseq = ++f->highestmodseq;
    f->ngone++;
    return (long)i;
}

uint64_t mbox_next_gm_msgid(struct mbox_store *st)
{
    return ++st->gm_msgid;
}

static const char *const special_names[FS_COUNT] = {
    NULL, "\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash",
};

const char *mbox_special_name(unsigned special)
{
    return special < FS_COUNT ? special_names[special] : NULL;
}

unsigned mbox_special_of(const char *attr)
{
    for (unsigned i = 1; i < FS_COUNT; i++)
        if (strcasecmp(attr, special_names[i]) == 0)
            return i;
    return FS_NONE;
}

const char *mbox_folder_name(const struct folder *f)
{
    return f->name != NULL ? f->name : "INBOX";
}
