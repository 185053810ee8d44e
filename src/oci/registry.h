/* A client for one repository on an OCI distribution (v2) registry, on libcurl.
 *
 * Authentication follows the registry's 401 challenge: `Bearer realm=...,service=...,
 * scope=...` gets a token from the realm (anonymously, or with Basic credentials when
 * some are known for the registry), `Basic` sends the credentials directly.  Tokens are
 * kept for the life of the client and refreshed on a later 401.  Redirects (blob storage
 * on another host, as Docker Hub does) are followed; libcurl never sends our
 * Authorization header to a host other than the one it was set for.  Transient failures
 * (connection errors, 429, 5xx) are retried with exponential backoff.
 *
 * For docker.io the configured mirrors are tried first, then registry-1.docker.io.
 * Loopback and insecure registries are tried over HTTPS without certificate checks first,
 * then over plain HTTP, as Docker does.
 */
#ifndef MSB_OCI_REGISTRY_H
#define MSB_OCI_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "oci/ref.h"
#include "oci/settings.h"

struct oci_registry {
	const struct oci_settings *settings; /* borrowed */
	char registry[OCI_NAME_MAX + 1];
	char repository[OCI_NAME_MAX + 1];
	char **endpoints;  /* base URLs to try, in order; owned */
	size_t endpoint;   /* index of the one in use */
	uint64_t noverify; /* bit i: endpoint i is the HTTPS attempt of an insecure registry */
	char *authz;	   /* "Authorization: ..." header line, or NULL; owned */
	char *user, *pass; /* credentials, or NULL; owned */
	bool creds_loaded;
	int max_attempts; /* per request; default 5 */
	long backoff_ms;  /* first retry delay; doubles; default 250 */
};

int oci_registry_open(struct oci_registry *r, const struct oci_settings *s,
		      const struct oci_ref *ref, struct msb_err *err);
void oci_registry_close(struct oci_registry *r);

/* The base URL in use ("http://127.0.0.1:5000"). */
const char *oci_registry_base(const struct oci_registry *r);

struct oci_doc {
	char *body; /* owned, NUL-terminated for convenience */
	size_t len;
	char content_type[128];
	char digest[OCI_DIGEST_MAX + 1]; /* sha256 of body, computed here */
};

/* GET /v2/<repo>/manifests/<target> with every manifest type in Accept.  When target is
 * a digest the body must hash to it (else MSB_EK_CORRUPT).  Not found is MSB_EK_NOT_FOUND,
 * auth refused MSB_EK_USAGE with a hint to `msb login`. */
int oci_registry_get_manifest(struct oci_registry *r, const char *target, struct oci_doc *out,
			      struct msb_err *err);
void oci_doc_release(struct oci_doc *d);

/* One blob to fetch. */
struct oci_fetch {
	char digest[OCI_DIGEST_MAX + 1];
	uint64_t size;
	const char *dest;    /* final path; written only once verified (rename) */
	const char *partial; /* where bytes land meanwhile; kept on failure to resume */
	/* Progress, updated by oci_registry_fetch(): */
	uint64_t done;
	bool finished, skipped, resumed;
};

typedef void (*oci_progress_fn)(void *ctx, const struct oci_fetch *items, size_t n);

/* Fetch the blobs concurrently (at most settings->max_concurrent at once), streaming each
 * into its partial file, verifying size and sha256, then renaming it to dest.  A partial
 * file left by an earlier attempt is resumed with a Range request.  `progress` (may be
 * NULL) is called now and then from this thread.  On a digest or size mismatch the
 * partial file is removed and nothing is written to dest (MSB_EK_CORRUPT). */
int oci_registry_fetch(struct oci_registry *r, struct oci_fetch *items, size_t n,
		       oci_progress_fn progress, void *ctx, struct msb_err *err);

/* Check credentials the way `docker login` does: GET /v2/ of the registry itself (not a
 * mirror), answering its challenge with them.  MSB_EK_USAGE when refused. */
int oci_registry_check_login(const struct oci_settings *s, const char *registry, const char *user,
			     const char *pass, struct msb_err *err);

/* Internal, shared by registry.c and blobs.c. */
/* The wait before retry number `attempt` (1-based): backoff_ms doubling, or what a 429/503
 * Retry-After (seconds) asks for, at most 60 s. */
long oci_retry_delay(const struct oci_registry *r, int attempt, long status,
		     const char *retry_after);
int oci_registry_authenticate(struct oci_registry *r, const char *challenge, struct msb_err *err);
struct curl_slist;
struct curl_slist *oci_registry_headers(const struct oci_registry *r, const char *accept);
/* Options every request shares; `url` decides whether TLS verification is skipped (an
 * https URL whose host is an insecure or loopback registry). */
void oci_registry_setup_easy(const struct oci_registry *r, void *curl, const char *url);

/* Parse one WWW-Authenticate challenge: scheme ("Bearer"/"Basic") and the realm, service
 * and scope parameters (each "" when absent).  Pure; fuzzable.  -1 when malformed. */
struct oci_challenge {
	char scheme[16];
	char realm[1024];
	char service[256];
	char scope[512];
};
int oci_parse_challenge(const char *header, struct oci_challenge *out);

#endif
