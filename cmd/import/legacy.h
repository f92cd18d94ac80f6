/*
 * cmd/import/legacy: the original SuperIMAP's encrypted columns. It sealed
 * them with Gibberish::AES (gibberish 1.4.0): AES-256-CBC in OpenSSL's
 * "Salted__" format ("Salted__", 8 bytes of salt, the ciphertext), key and
 * IV from EVP_BytesToKey with MD5 and one iteration, all in MIME base64 with
 * line breaks: exactly `openssl enc -aes-256-cbc -md md5 -a`. OpenSSL EVP
 * does all of it here (the base64 through proto/codec).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_IMPORT_LEGACY_H
#define CMD_IMPORT_LEGACY_H

#include <stddef.h>

/* What legacy_open() found in a column's value. */
enum legacy_kind {
    LEGACY_PLAIN,     /* not Gibberish's format: a row saved before encryption, taken as is */
    LEGACY_DECRYPTED, /* opened with the key */
    LEGACY_BROKEN,    /* Gibberish's format that does not open: wrong key or damaged */
};

/*
 * Opens value (NUL-terminated) with the original's ENCRYPTION_KEY password
 * (passlen bytes). Returns the kind, and in *out a new NUL-terminated string
 * (keys_wipe_free() it): the plaintext, or a copy of value for
 * LEGACY_PLAIN; NULL for LEGACY_BROKEN (also: a value starting as Gibberish's
 * base64 that does not decode, and a plaintext that is not UTF-8 text
 * without control characters but tab and line breaks: what a wrong key gives when the padding
 * happens to check out).
 */
enum legacy_kind legacy_open(const char *password, size_t passlen, const char *value, char **out);

#endif
