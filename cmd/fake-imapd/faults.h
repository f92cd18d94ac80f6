/*
 * Fault injection of superimap-fake-imapd: which misbehaviours are on, how
 * often, and a seeded generator deciding each time, so a run with the same
 * seed and the same sequence of commands meets the same faults.
 *
 * Each command (and the greeting, and each pushed EXISTS) asks faults_roll()
 * with the set of faults that make sense there; with probability `rate` one
 * of the enabled ones in that set is chosen, uniformly.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_FAULTS_H
#define CMD_FAKE_IMAPD_FAULTS_H

#include <stdint.h>

struct buf;

enum fault_kind {
    FAULT_NONE = 0,
    FAULT_BAD,       /* the command is answered BAD and not run */
    FAULT_NO,        /* the command is answered NO and not run */
    FAULT_GIBBERISH, /* a garbage untagged line first, then the normal answer */
    FAULT_BYE,       /* "* BYE" and close */
    FAULT_DROP,      /* close without a word */
    FAULT_HALFOPEN,  /* never answer again; the socket stays open until the peer closes */
    FAULT_NOINBOX,   /* EXAMINE/SELECT INBOX answered NO [NONEXISTENT] */
    FAULT_UIDSHIFT,  /* EXAMINE/SELECT first changes UIDVALIDITY and renumbers the UIDs */
    FAULT_TRICKLE,   /* the FETCH answer is written a few bytes per loop tick */
    FAULT_AUTHFAIL,  /* correct credentials answered NO [AUTHENTICATIONFAILED] */
    FAULT_LIMIT,     /* greeting "* BYE [UNAVAILABLE]", login "NO [LIMIT]" */
    FAULT_COUNT
};

#define FAULT_BIT(k) (1u << (k))

/* The faults any command may meet. */
#define FAULTS_GENERIC                                                         \
    (FAULT_BIT(FAULT_BAD) | FAULT_BIT(FAULT_NO) | FAULT_BIT(FAULT_GIBBERISH) | \
     FAULT_BIT(FAULT_BYE) | FAULT_BIT(FAULT_DROP) | FAULT_BIT(FAULT_HALFOPEN))
/* The faults of a connection's greeting and of a pushed EXISTS. */
#define FAULTS_UNSOLICITED                                                       \
    (FAULT_BIT(FAULT_GIBBERISH) | FAULT_BIT(FAULT_BYE) | FAULT_BIT(FAULT_DROP) | \
     FAULT_BIT(FAULT_HALFOPEN))

/* Plain data; change it through faults_configure(). */
struct faults {
    double rate;                              /* probability 0..1 per decision */
    uint64_t seed;                            /* as configured */
    uint64_t state;                           /* generator state, from seed */
    unsigned enabled;                         /* FAULT_BIT() set */
    unsigned long long injected[FAULT_COUNT]; /* faults met, by kind ([0] unused) */
};

/* Parses "bad,no,..." ("all" for every kind, "none" or "" for none) into a
 * FAULT_BIT() set. Returns 0 or -SIMAP_EINVAL (unknown kind; *mask untouched). */
int faults_parse_list(const char *list, unsigned *mask);

/* Sets rate, seed and kinds, and restarts the generator from seed; the
 * injected counters are kept. Returns 0 or -SIMAP_EINVAL (rate outside 0..1
 * or an unknown kind; f unchanged). */
int faults_configure(struct faults *f, double rate, uint64_t seed, const char *list);

/*
 * Decides whether the current step meets a fault: returns FAULT_NONE, or one
 * of the enabled kinds in applicable (a FAULT_BIT() set), counting it. When no
 * enabled kind applies the generator is not advanced.
 */
enum fault_kind faults_roll(struct faults *f, unsigned applicable);

/* A value from the generator below n (n > 0), for choices inside a fault. */
unsigned faults_pick(struct faults *f, unsigned n);

/* The kind's name ("bad"), or "none". */
const char *faults_name(enum fault_kind k);

/* Appends "rate=0.5 seed=7 list=bad,no bad=3 no=1 ..." to out. */
void faults_describe(const struct faults *f, struct buf *out);

/* Total faults met. */
unsigned long long faults_total(const struct faults *f);

/* Zeroes the injected counters. */
void faults_reset_counters(struct faults *f);

#endif
