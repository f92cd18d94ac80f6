/*
 * core/time: monotonic and wall clocks.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/time.h"

#include <stdio.h>
#include <time.h>

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

double time_mono_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t time_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

char *time_format_iso(int64_t ms, char *out)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, TIME_ISO_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, TIME_ISO_LEN - n, ".%03uZ", (unsigned)(((ms % 1000) + 1000) % 1000));
    return out;
}
