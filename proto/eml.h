/*
 * proto/eml: the raw message back out of a new_mail event's payload, for the
 * dashboard's .eml download of a dead letter (GET
 * /admin/api/dead-letters/{id}/eml). The payload is the webhook body's JSON
 * object (README "Webhooks"), whose "rfc822" member proto/envelope wrote:
 * the message as a JSON string when it is UTF-8, plus "rfc822_base64" with
 * the exact bytes when it is not.
 *
 * Reads with yajl's event parser rather than core/json's tree, because the
 * message may hold NUL bytes (\u0000), which the tree parser refuses. Pure
 * code: no I/O, no global state; any thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_EML_H
#define PROTO_EML_H

#include <stddef.h>

/*
 * The message of payload json[0..len): the bytes of its top-level
 * "rfc822_base64" when present, else those of its "rfc822" string. Returns 0
 * with a new buffer in *out (xfree() it; NUL-terminated past *outlen), or,
 * with *out NULL: -SIMAP_ENOTFOUND when the object holds no message
 * ("rfc822" null or absent: a message over SUPERIMAP_MAX_EMAIL_SIZE, or an
 * event of another type), -SIMAP_EPROTO when json is not a JSON object or
 * the base64 is not canonical.
 */
int eml_from_payload(const char *json, size_t len, char **out, size_t *outlen);

#endif
