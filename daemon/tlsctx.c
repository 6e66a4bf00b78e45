/*
 * tlsctx.c - OpenSSL client contexts for the TLS profiles.
 *
 * tlsctx_set_new() builds one SSL_CTX per profile (the default one and
 * every named one): minimum protocol version, cipher list, certificate
 * verification against the profile's CA file or the system store, and an
 * optional client certificate.  It fails with NULL and a message naming the
 * profile, the file or option, and OpenSSL's reason.  tlsctx_new_ssl()
 * then makes the SSL for one connection with SNI and the server-name check
 * of the profile.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proto.h"
#include "tlsctx.h"

struct tlsctx_entry {
	char	*name;
	SSL_CTX	*ctx;
};

struct tlsctx_set {
	struct tlsctx_entry	entries[1 + CONFIG_MAX_PROFILES];
	size_t			nentries;	/* entries[0] is the default */
};

/* The names a connection accepts, for lists OpenSSL cannot check alone. */
struct tlsctx_names {
	size_t	 n;
	char	*names[CONFIG_MAX_VERIFY_NAMES];
};

static int tlsctx_names_index = -1;

/* Drains OpenSSL's error queue into buf as its reasons, oldest (the
 * innermost call) first, e.g. "no start line; PEM lib". */
static const char *
tlsctx_openssl_reason(char *buf, size_t len)
{
	unsigned long	 code;
	const char	*data, *reason;
	size_t		 used = 0;
	int		 flags, n;

	buf[0] = '\0';
	while ((code = ERR_get_error_all(NULL, NULL, NULL, &data,
	    &flags)) != 0) {
		/* Keep draining once buf is full, so the queue ends empty. */
		if (used >= len)
			continue;
		if ((reason = ERR_reason_error_string(code)) == NULL)
			reason = "unknown OpenSSL error";
		n = snprintf(buf + used, len - used, "%s%s%s%s%s",
		    used > 0 ? "; " : "", reason,
		    (flags & ERR_TXT_STRING) && data != NULL && *data != '\0' ?
		    " (" : "",
		    (flags & ERR_TXT_STRING) && data != NULL ? data : "",
		    (flags & ERR_TXT_STRING) && data != NULL && *data != '\0' ?
		    ")" : "");
		used = n < 0 ? len : used + (size_t)n;
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "unknown OpenSSL error");
	return buf;
}

/* Checks that a file named by a profile is readable, so the message can
 * give errno's reason rather than OpenSSL's less precise one. */
static int
tlsctx_check_file(const struct tls_profile *prof, const char *option,
    const char *path, char *err, size_t errlen)
{
	if (access(path, R_OK) == 0)
		return 0;
	proto_format_error(err, errlen, "TLS profile '%s': cannot read %s '%s': "
	    "%s", prof->name, option, path, strerror(errno));
	return -1;
}

/* Sets up verification of the server certificate. */
static int
tlsctx_setup_verify(SSL_CTX *ctx, const struct tls_profile *prof,
    char *err, size_t errlen)
{
	char	reason[256];

	if (!prof->verify_server) {
		/* Any certificate is accepted.  Warning about that is left
		 * to the daemon's start-up code. */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

	if (prof->ca_certificate == NULL) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			proto_format_error(err, errlen, "TLS profile '%s': cannot "
			    "load the system's trusted CA certificates: %s",
			    prof->name,
			    tlsctx_openssl_reason(reason, sizeof(reason)));
			return -1;
		}
		return 0;
	}
	if (tlsctx_check_file(prof, "ca_certificate", prof->ca_certificate,
	    err, errlen) == -1)
		return -1;
	if (SSL_CTX_load_verify_locations(ctx, prof->ca_certificate,
	    NULL) != 1) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot load "
		    "ca_certificate '%s': %s; it must contain PEM certificates",
		    prof->name, prof->ca_certificate,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		return -1;
	}
	return 0;
}

/* Loads the client certificate chain and its key, if the profile has
 * them, and checks that they belong together. */
static int
tlsctx_setup_client_cert(SSL_CTX *ctx, const struct tls_profile *prof,
    char *err, size_t errlen)
{
	char	reason[256];

	if (prof->client_certificate == NULL || prof->client_key == NULL)
		return 0;
	if (tlsctx_check_file(prof, "client_certificate",
	    prof->client_certificate, err, errlen) == -1 ||
	    tlsctx_check_file(prof, "client_key", prof->client_key,
	    err, errlen) == -1)
		return -1;

	if (SSL_CTX_use_certificate_chain_file(ctx,
	    prof->client_certificate) != 1) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot load "
		    "client_certificate '%s': %s", prof->name,
		    prof->client_certificate,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, prof->client_key,
	    SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL checks the key against the certificate while
		 * loading it, so a mismatch is reported here too. */
		proto_format_error(err, errlen, "TLS profile '%s': cannot load "
		    "client_key '%s': %s; it must be the unencrypted PEM key "
		    "of client_certificate '%s'", prof->name, prof->client_key,
		    tlsctx_openssl_reason(reason, sizeof(reason)),
		    prof->client_certificate);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		proto_format_error(err, errlen, "TLS profile '%s': client_key "
		    "'%s' does not match client_certificate '%s': %s",
		    prof->name, prof->client_key, prof->client_certificate,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		return -1;
	}
	return 0;
}

/* Builds the context of one profile. */
static SSL_CTX *
tlsctx_build(const struct tls_profile *prof, char *err, size_t errlen)
{
	SSL_CTX	*ctx;
	char	 reason[256];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot create "
		    "an OpenSSL context: %s", prof->name,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		return NULL;
	}

	if (SSL_CTX_set_min_proto_version(ctx, prof->min_tls_version) != 1) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot set "
		    "min_tls_version: %s", prof->name,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		goto fail;
	}
	if (prof->ciphers != NULL &&
	    SSL_CTX_set_cipher_list(ctx, prof->ciphers) != 1) {
		proto_format_error(err, errlen, "TLS profile '%s': ciphers '%s' "
		    "rejected: %s", prof->name, prof->ciphers,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		goto fail;
	}
	if (tlsctx_setup_verify(ctx, prof, err, errlen) == -1 ||
	    tlsctx_setup_client_cert(ctx, prof, err, errlen) == -1)
		goto fail;
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tlsctx_set *
tlsctx_set_new(const struct config *cfg, char *err, size_t errlen)
{
	struct tlsctx_set		*set;
	const struct tls_profile	*prof;
	size_t				 i;

	if ((set = calloc(1, sizeof(*set))) == NULL) {
		proto_format_error(err, errlen, "cannot build TLS contexts: out "
		    "of memory");
		return NULL;
	}
	for (i = 0; i <= cfg->nprofiles && i <= CONFIG_MAX_PROFILES; i++) {
		prof = i == 0 ? &cfg->tls_default : &cfg->profiles[i - 1];
		if ((set->entries[i].name = strdup(prof->name)) == NULL) {
			proto_format_error(err, errlen, "TLS profile '%s': out "
			    "of memory", prof->name);
			goto fail;
		}
		set->nentries++;
		if ((set->entries[i].ctx = tlsctx_build(prof, err,
		    errlen)) == NULL)
			goto fail;
	}
	return set;

fail:
	tlsctx_set_free(set);
	return NULL;
}

void
tlsctx_set_free(struct tlsctx_set *set)
{
	size_t	i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nentries; i++) {
		free(set->entries[i].name);
		SSL_CTX_free(set->entries[i].ctx);
	}
	free(set);
}

SSL_CTX *
tlsctx_get(struct tlsctx_set *set, const char *profile)
{
	size_t	i;

	if (set == NULL || set->nentries == 0)
		return NULL;
	if (profile == NULL || *profile == '\0')
		return set->entries[0].ctx;
	for (i = 0; i < set->nentries; i++)
		if (strcmp(set->entries[i].name, profile) == 0)
			return set->entries[i].ctx;
	return NULL;
}

/* Frees the name list attached to an SSL when the SSL goes. */
static void
tlsctx_names_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	struct tlsctx_names	*names = ptr;
	size_t			 i;

	if (names == NULL)
		return;
	for (i = 0; i < names->n; i++)
		free(names->names[i]);
	free(names);
}

/*
 * Checks the leaf certificate against a list of DNS and IP names, any one
 * of which may match.  OpenSSL's own parameters cannot express this: they
 * hold one IP address, and with both hosts and an IP set they require a
 * match of each.
 */
static int
tlsctx_verify_cb(int preverify_ok, X509_STORE_CTX *sctx)
{
	struct tlsctx_names	*names;
	SSL			*ssl;
	X509			*cert;
	size_t			 i;

	if (!preverify_ok || X509_STORE_CTX_get_error_depth(sctx) != 0)
		return preverify_ok;
	ssl = X509_STORE_CTX_get_ex_data(sctx,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl == NULL || (names = SSL_get_ex_data(ssl,
	    tlsctx_names_index)) == NULL)
		return preverify_ok;
	if ((cert = X509_STORE_CTX_get_current_cert(sctx)) == NULL) {
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_HOSTNAME_MISMATCH);
		return 0;
	}

	for (i = 0; i < names->n; i++) {
		const char	*n = names->names[i];

		if (strncmp(n, "DNS:", 4) == 0 &&
		    X509_check_host(cert, n + 4, 0,
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1)
			return 1;
		if (strncmp(n, "IP:", 3) == 0 &&
		    X509_check_ip_asc(cert, n + 3, 0) == 1)
			return 1;
	}
	X509_STORE_CTX_set_error(sctx, X509_V_ERR_HOSTNAME_MISMATCH);
	return 0;
}

/* Attaches the profile's name list to ssl and installs the callback that
 * checks it. */
static int
tlsctx_set_name_list_cb(SSL *ssl, const struct tls_profile *prof)
{
	struct tlsctx_names	*names;
	size_t			 i;

	if (tlsctx_names_index == -1 &&
	    (tlsctx_names_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
	    tlsctx_names_free_cb)) == -1)
		return -1;
	if ((names = calloc(1, sizeof(*names))) == NULL)
		return -1;
	for (i = 0; i < prof->nverify_names; i++) {
		if ((names->names[i] = strdup(prof->verify_names[i])) == NULL) {
			tlsctx_names_free_cb(NULL, names, NULL, 0, 0, NULL);
			return -1;
		}
		names->n++;
	}
	if (SSL_set_ex_data(ssl, tlsctx_names_index, names) != 1) {
		tlsctx_names_free_cb(NULL, names, NULL, 0, 0, NULL);
		return -1;
	}
	SSL_set_verify(ssl, SSL_get_verify_mode(ssl), tlsctx_verify_cb);
	return 0;
}

/* Applies a verify_server_name list to ssl. */
static int
tlsctx_set_name_list(SSL *ssl, const struct tls_profile *prof)
{
	X509_VERIFY_PARAM	*param = SSL_get0_param(ssl);
	size_t			 i, ndns = 0, nip = 0;
	const char		*ip = NULL;

	for (i = 0; i < prof->nverify_names; i++) {
		if (strncmp(prof->verify_names[i], "IP:", 3) == 0) {
			nip++;
			ip = prof->verify_names[i] + 3;
		} else
			ndns++;
	}

	/* Mixed lists and several IPs need the callback, see above. */
	if (nip > 1 || (nip == 1 && ndns > 0))
		return tlsctx_set_name_list_cb(ssl, prof);
	if (nip == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(param, ip) == 1 ? 0 : -1;
	for (i = 0; i < prof->nverify_names; i++)
		if (X509_VERIFY_PARAM_add1_host(param,
		    prof->verify_names[i] + 4, 0) != 1)
			return -1;
	return 0;
}

SSL *
tlsctx_new_ssl(SSL_CTX *ctx, const struct tls_profile *prof,
    const char *host, int host_is_ip, char *err, size_t errlen)
{
	X509_VERIFY_PARAM	*param;
	SSL			*ssl;
	char			 reason[256];
	int			 rc = 0;

	if (ctx == NULL || prof == NULL || host == NULL) {
		proto_format_error(err, errlen, "no TLS context for this "
		    "connection");
		return NULL;
	}
	if ((ssl = SSL_new(ctx)) == NULL) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot create "
		    "a connection: %s", prof->name,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		return NULL;
	}

	/* SNI carries host names only (RFC 6066, section 3). */
	if (!host_is_ip && *host != '\0' &&
	    SSL_set_tlsext_host_name(ssl, host) != 1) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot set "
		    "server name '%s': %s", prof->name, host,
		    tlsctx_openssl_reason(reason, sizeof(reason)));
		goto fail;
	}

	/* Without chain verification a name check proves nothing, and its
	 * result would be ignored anyway. */
	if (!prof->verify_server)
		return ssl;

	param = SSL_get0_param(ssl);
	X509_VERIFY_PARAM_set_hostflags(param,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	switch (prof->name_check) {
	case TLS_NAME_HOST:
		if (*host == '\0') {
			proto_format_error(err, errlen, "TLS profile '%s': no "
			    "host name to check the certificate against",
			    prof->name);
			goto fail;
		}
		if (host_is_ip)
			rc = X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ?
			    0 : -1;
		else
			rc = SSL_set1_host(ssl, host) == 1 ? 0 : -1;
		break;
	case TLS_NAME_LIST:
		rc = tlsctx_set_name_list(ssl, prof);
		break;
	case TLS_NAME_OFF:
		break;
	}
	if (rc == -1) {
		proto_format_error(err, errlen, "TLS profile '%s': cannot set "
		    "the certificate name check for '%s': %s", prof->name,
		    host, tlsctx_openssl_reason(reason, sizeof(reason)));
		goto fail;
	}
	return ssl;

fail:
	SSL_free(ssl);
	return NULL;
}

const char *
tlsctx_verify_error(SSL *ssl)
{
	static char	buf[256];
	long		result;

	if (ssl == NULL)
		return "";
	result = SSL_get_verify_result(ssl);
	if (result == X509_V_OK)
		return "";
	snprintf(buf, sizeof(buf), "certificate verify failed: %s",
	    X509_verify_cert_error_string(result));
	return buf;
}
