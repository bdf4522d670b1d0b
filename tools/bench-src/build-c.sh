#!/bin/sh
# Builds the C benchmark programs (the GnuTLS echo-server floor and the TLS load generator).
# usage: tools/bench-src/build-c.sh [OUTPUT_DIR]     (default /tmp/bench-bin)
# Needs cc and the GnuTLS development files (Debian: libgnutls28-dev, pkg-config).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/tmp/bench-bin}
mkdir -p "$out"
cc_=${CC:-cc}
flags=$(pkg-config --cflags --libs gnutls)
for prog in gnutls_echo_server tls_loadgen; do
    # shellcheck disable=SC2086
    $cc_ -std=c11 -O2 -Wall -Wextra -o "$out/$prog" "$here/c/$prog.c" $flags
done
echo "built $out/gnutls_echo_server $out/tls_loadgen"
