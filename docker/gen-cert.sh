#!/bin/sh
# Makes a self-signed TLS certificate for "localhost" (SAN DNS:localhost,
# IP:127.0.0.1, IP:::1) for the nginx of docker-compose.yml:
#
#   sh docker/gen-cert.sh [dir]      (default dir: docker/certs)
#
# writes dir/cert.pem (mode 644) and dir/key.pem (RSA 2048, mode 600). Does
# nothing when both already exist, so re-running never replaces a certificate
# (nor one you put there yourself); refuses when only one of them exists.
# Browsers will warn about the self-signed certificate: use a real one for
# anything but a local trial.
# SPDX-License-Identifier: MIT
set -eu

dir=${1:-docker/certs}
cert="$dir/cert.pem"
key="$dir/key.pem"
days=${GEN_CERT_DAYS:-825}

if [ -e "$cert" ] && [ -e "$key" ]; then
    echo "gen-cert: $cert and $key already exist; nothing to do"
    exit 0
fi
if [ -e "$cert" ] || [ -e "$key" ]; then
    echo "gen-cert: only one of $cert and $key exists; remove it or add the other" >&2
    exit 1
fi
command -v openssl >/dev/null 2>&1 || {
    echo "gen-cert: openssl not found: install the Debian package openssl" >&2
    exit 1
}

mkdir -p "$dir"
# Write beside the final names and rename, so an interrupted run never leaves
# a half-written key that the existence check above would then accept. umask
# makes the key 600 from its creation, never briefly readable by others.
tmpkey="$dir/.key.pem.$$"
tmpcert="$dir/.cert.pem.$$"
trap 'rm -f "$tmpkey" "$tmpcert"' EXIT
if ! out=$(
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
        -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
        -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
        -addext "extendedKeyUsage=serverAuth" \
        -keyout "$tmpkey" -out "$tmpcert" 2>&1
); then
    echo "gen-cert: openssl req failed:" >&2
    echo "$out" >&2
    exit 1
fi
chmod 600 "$tmpkey"
chmod 644 "$tmpcert"
mv "$tmpkey" "$key"
mv "$tmpcert" "$cert"
trap - EXIT
echo "gen-cert: wrote $cert and $key (CN=localhost, $days days)"
