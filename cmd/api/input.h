/*
 * cmd/api/input.h: the checks of request parameters the route files share.
 * Each returns 0 when the parameter is absent or good, or the status after
 * replying 400 naming it (reply_invalid()).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_INPUT_H
#define CMD_API_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct rec_list;
struct req;

/* Replies 400 for the first parameter not in allowed (NULL-terminated):
 * the admin API refuses what it does not know. */
int input_only_known(struct req *r, const char *const *allowed);

/* A printable text parameter of at most max bytes; *out NULL when absent. */
int input_text(struct req *r, const char *name, size_t max, const char **out);

/* As input_text(), but any bytes but NUL pass: passwords and tokens. */
int input_secret(struct req *r, const char *name, size_t max, const char **out);

/* As input_text(), an absolute http(s) URL with a host; "" is accepted (it
 * clears the URL). */
int input_url(struct req *r, const char *name, const char **out);

/* As input_url(), for a URL superimap itself will fetch (a webhook, an
 * OAuth2 endpoint): a host that is an IP address literal, in any encoding
 * (core/netguard.h), must be one the connect-time guard would allow, with
 * allow_private as SUPERIMAP_WEBHOOK_ALLOW_PRIVATE or
 * SUPERIMAP_OAUTH2_ALLOW_PRIVATE; else 400 naming the field. Host names pass:
 * the guard judges what they resolve to when it connects. */
int input_fetch_url(struct req *r, const char *name, int allow_private, const char **out);

/* An integer from min to max; *has 1 when present. */
int input_int(struct req *r, const char *name, int64_t min, int64_t max, int64_t *out, int *has);

/* A mailbox list (proto/mailboxes.h): a JSON array, or in a form its JSON
 * text. Absent: *has 0. null or "": *has 1 and *out "" (back to the
 * default). Else *has 1 and *out its canonical JSON, a new string (xfree()
 * it). A bad list is answered 400 with the reason naming the entry. */
int input_mailboxes(struct req *r, const char *name, char **out, int *has);

/* A page of an index search (store_user_search(), store_partner_page()). */
typedef int input_page_fn(struct req *r, const char *prefix, const char *after, int64_t limit,
                          struct rec_list *out, char **next);

/* Reads one page of the search of prefix with page: from the member the
 * parameter "cursor" names (params_cursor_decode(); 400 when it is not a
 * cursor of this search), limit entries. Returns 0 with *out and *next as
 * page sets them, or the status after replying (400, 503: *out empty,
 * *next NULL). */
int input_page(struct req *r, const char *prefix, int64_t limit, input_page_fn *page,
               struct rec_list *out, char **next);

/* 1 when code is a provider code: 1 to API_CODE_MAX of [A-Za-z0-9_-]. */
int input_is_code(const char *code);

/* 1 when pid is a partner id: decimal, no leading zero, 18 digits at most. */
int input_is_pid(const char *pid);

/* 1 when id is an event id: 1 to 200 of [A-Za-z0-9._-]. */
int input_is_event_id(const char *id);

#endif
