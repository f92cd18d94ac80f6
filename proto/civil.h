/*
 * proto/civil: calendar arithmetic on the proleptic Gregorian calendar, for
 * the wire formats that carry dates (HTTP-date in Retry-After, the
 * timestamps of SuperIMAP's export). Pure.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_CIVIL_H
#define PROTO_CIVIL_H

#include <stdint.h>

/* Days from 1970-01-01 to y-m-d (m 1..12, d 1..31; negative before 1970),
 * H. Hinnant's "chrono-Compatible Low-Level Date Algorithms". */
int64_t civil_days_from(int64_t y, int m, int d);

#endif
