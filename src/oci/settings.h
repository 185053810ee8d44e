/* Registry settings and credentials.
 *
 * $MICROSANDBOX_HOME/config.json (optional; all keys optional):
 *   {
 *     "registry-mirrors":    ["https://mirror.example.com", "http://127.0.0.1:5000"],
 *     "insecure-registries": ["registry.lan:5000"],
 *     "max-concurrent-downloads": 4
 *   }
 * Mirrors serve docker.io images (as Docker's registry-mirrors): each is tried in order
 * before registry-1.docker.io.  Insecure registries, and loopback ones (localhost,
 * 127.0.0.0/8, [::1]) always, are tried over HTTPS without certificate checks, then over
 * plain HTTP, as Docker does.
 *
 * Credentials: $MICROSANDBOX_HOME/auth.json (written by `msb login`, mode 0600), then
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json; both in Docker's format
 * {"auths": {"<host>": {"auth": base64("user:password")}}}.  Docker credential helpers
 * (credsStore) are not consulted.
 */
#ifndef MSB_OCI_SETTINGS_H
#define MSB_OCI_SETTINGS_H

#include <stdbool.h>

#include "common/error.h"

struct oci_settings {
	char home[4096]; /* $MICROSANDBOX_HOME */
	char **mirrors;	 /* NULL-terminated base URLs, owned */
	char **insecure; /* NULL-terminated host[:port], owned */
	int max_concurrent;
};

/* Load config.json under `home` (NULL: msb_home()).  A missing file is not an error; a
 * malformed one is (MSB_EK_USAGE naming the file). */
int oci_settings_load(struct oci_settings *s, const char *home, struct msb_err *err);
void oci_settings_release(struct oci_settings *s);

/* True for a registry reached without TLS guarantees: loopback, or listed in
 * insecure-registries (HTTPS without certificate checks, then plain HTTP). */
bool oci_settings_insecure(const struct oci_settings *s, const char *registry);

/* Credentials for `registry`: 1 and user, pass (caller frees both) when found, 0 when none,
 * -1 with err when a credentials file is unreadable or malformed. */
int oci_creds_lookup(const struct oci_settings *s, const char *registry, char **user, char **pass,
		     struct msb_err *err);

/* Record or forget credentials in $MICROSANDBOX_HOME/auth.json (0600, replaced
 * atomically).  Removing credentials that are not there is MSB_EK_NOT_FOUND. */
int oci_creds_store(const char *home, const char *registry, const char *user, const char *pass,
		    struct msb_err *err);
int oci_creds_remove(const char *home, const char *registry, struct msb_err *err);

/* Normalise a registry name as typed by a user ("https://index.docker.io/v1/", "docker.io",
 * "localhost:5000/") to the key used in credential files. */
void oci_registry_key(const char *in, char *out, size_t len);

#endif
