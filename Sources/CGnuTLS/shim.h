// The GnuTLS headers Swift sees, and static inline wrappers for what Swift cannot import
// (function-like macros, the gnutls_free function-pointer variable, cast-expression constants).
// No logic lives here.
#ifndef CGNUTLS_SHIM_H
#define CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <gnutls/x509-ext.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/ocsp.h>
#include <gnutls/pkcs11.h>
#include <gnutls/socket.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

/// gnutls_free is a macro over an exported function-pointer variable.
static inline void cgnutls_free(void *p) { gnutls_free(p); }

/// gnutls_malloc is a function-pointer variable too: memory GnuTLS frees (a session-cache answer) comes from it.
static inline void *cgnutls_malloc(size_t size) { return gnutls_malloc(size); }

/// GNUTLS_CURVE_TO_BITS is a function-like macro (used with gnutls_x509_privkey_generate2).
static inline unsigned int cgnutls_curve_to_bits(gnutls_ecc_curve_t curve) { return GNUTLS_CURVE_TO_BITS(curve); }

/// Cast-expression constants.
static const unsigned int CGNUTLS_INDEFINITE_TIMEOUT = GNUTLS_INDEFINITE_TIMEOUT;
static const unsigned int CGNUTLS_DEFAULT_HANDSHAKE_TIMEOUT = GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT;

#endif
