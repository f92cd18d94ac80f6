/*
 * core/time: the two clocks. Monotonic time measures intervals and deadlines
 * (it never jumps); wall time is what goes into logs, events and Redis. Both
 * are functions so tests can --wrap them.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_TIME_H
#define CORE_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC; only differences mean anything. */
int64_t time_mono_ms(void);

/* Seconds on the same clock, to the nanosecond (Redis latencies are far
 * below a millisecond). */
double time_mono_sec(void);

/* Milliseconds since the Unix epoch on CLOCK_REALTIME. */
int64_t time_now_ms(void);

/* Writes wall time ms as "2025-01-31T12:00:00.123Z" (UTC) into out, which
 * holds at least TIME_ISO_LEN bytes. Returns out. */
#define TIME_ISO_LEN 32
char *time_format_iso(int64_t ms, char *out);

#endif
