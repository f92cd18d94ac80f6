/*
 * cmd/dispatcher/wake: a second Redis connection, SUBSCRIBEd to si:wake, so
 * an idle dispatcher claims a shard's first ready event at once instead of at
 * its next sweep (event_enqueue and record_mail PUBLISH the shard when it
 * gets its first ready partner). Pub/sub is a hint: a message lost while the
 * link is down only delays events to the next sweep, so on every
 * (re)subscription the caller is told to sweep all shards.
 *
 * hiredis 0.14 async on libev; reconnects every second while Redis is away.
 * Runs on the loop's thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_WAKE_H
#define CMD_DISPATCHER_WAKE_H

struct ev_loop;
struct wake;

/* Callbacks, on the loop: on_shard(k) for each message naming shard k;
 * on_subscribed() after each successful SUBSCRIBE. */
struct wake_opts {
    const char *redis_url;               /* SUPERIMAP_REDIS_URL */
    const char *redis_password;          /* NULL or "": the URL's */
    const char *redis_sentinel_password; /* redis+sentinel://: the sentinels' AUTH, or NULL */
    void (*on_shard)(int k, void *data);
    void (*on_subscribed)(void *data);
    void *data;
};

/* Starts connecting. Returns NULL (logged) when the URL does not parse. */
struct wake *wake_new(struct ev_loop *loop, const struct wake_opts *opts);

/* Closes the link; no callback runs afterwards. Accepts NULL. Must not be
 * called from a wake callback. */
void wake_free(struct wake *w);

#endif
