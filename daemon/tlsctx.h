/*
 * tlsctx.h - OpenSSL client contexts built from TLS profiles.
 *
 * One SSL_CTX per profile is built at start-up (and on reload), so a
 * missing CA file or key is a start-up error.  Each connection then gets
 * an SSL with SNI and the profile's server-name check applied.
 */
#ifndef SMTPOOL_TLSCTX_H
#define SMTPOOL_TLSCTX_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

struct tlsctx_set;

/* Builds contexts for the default profile and every named one.  Returns
 * NULL with err naming the profile and the file or option at fault. */
struct tlsctx_set *tlsctx_set_new(const struct config *, char *err,
    size_t errlen);
void tlsctx_set_free(struct tlsctx_set *);
/* Returns the context for a profile name ("" = default), NULL if none. */
SSL_CTX *tlsctx_get(struct tlsctx_set *, const char *profile);

/* Creates an SSL for one connection to host: SNI (for DNS names), and the
 * certificate name check the profile asks for.  Returns NULL with err. */
SSL *tlsctx_new_ssl(SSL_CTX *, const struct tls_profile *,
    const char *host, int host_is_ip, char *err, size_t errlen);

/* Describes why verification of ssl's peer failed, or "" when it did not,
 * e.g. "certificate verify failed: unable to get local issuer
 * certificate". */
const char *tlsctx_verify_error(SSL *ssl);

#endif
