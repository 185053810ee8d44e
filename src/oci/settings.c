#include "oci/settings.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/paths.h"
#include "oci/manifest.h"
#include "oci/ref.h"

static json_t *load_file(const char *path, bool *missing, struct msb_err *err)
{
	json_error_t je;
	*missing = false;
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		*missing = true;
		return NULL;
	}
	json_t *j = json_load_file(path, 0, &je);
	if (!j) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "%s is not valid JSON (line %d: %s); fix or remove it", path, je.line,
			    je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		msb_err_set(err, MSB_EK_USAGE, 0, "%s must hold a JSON object", path);
		return NULL;
	}
	return j;
}

static int strv_from(json_t *a, const char *path, const char *key, char ***out, struct msb_err *err)
{
	size_t n = json_is_array(a) ? json_array_size(a) : 0;
	if (a && !json_is_array(a))
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s: \"%s\" must be an array of strings",
				   path, key);
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_string(s)) {
			oci_strv_free(v);
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "%s: \"%s\" must be an array of strings", path, key);
		}
		v[i] = strdup(json_string_value(s));
		/* Mirrors are base URLs: no trailing slash. */
		size_t l = v[i] ? strlen(v[i]) : 0;
		while (l > 0 && v[i][l - 1] == '/')
			v[i][--l] = '\0';
	}
	*out = v;
	return 0;
}

int oci_settings_load(struct oci_settings *s, const char *home, struct msb_err *err)
{
	memset(s, 0, sizeof(*s));
	s->max_concurrent = 4;
	if (home)
		snprintf(s->home, sizeof(s->home), "%s", home);
	else if (msb_home(s->home, sizeof(s->home), err) < 0)
		return -1;
	char path[4200];
	snprintf(path, sizeof(path), "%s/config.json", s->home);
	bool missing;
	json_t *j = load_file(path, &missing, err);
	if (!j && !missing)
		return -1;
	int r = strv_from(j ? json_object_get(j, "registry-mirrors") : NULL, path,
			  "registry-mirrors", &s->mirrors, err);
	if (r == 0)
		r = strv_from(j ? json_object_get(j, "insecure-registries") : NULL, path,
			      "insecure-registries", &s->insecure, err);
	json_t *mc = j ? json_object_get(j, "max-concurrent-downloads") : NULL;
	if (r == 0 && mc) {
		if (!json_is_integer(mc) || json_integer_value(mc) < 1 ||
		    json_integer_value(mc) > 64)
			r = msb_err_set(err, MSB_EK_USAGE, 0,
					"%s: \"max-concurrent-downloads\" must be 1..64", path);
		else
			s->max_concurrent = (int)json_integer_value(mc);
	}
	if (j)
		json_decref(j);
	if (r < 0)
		oci_settings_release(s);
	return r;
}

void oci_settings_release(struct oci_settings *s)
{
	oci_strv_free(s->mirrors);
	oci_strv_free(s->insecure);
	s->mirrors = s->insecure = NULL;
}

bool oci_settings_insecure(const struct oci_settings *s, const char *registry)
{
	if (oci_registry_is_loopback(registry))
		return true;
	for (char **p = s->insecure; p && *p; p++) {
		char k[512];
		oci_registry_key(*p, k, sizeof(k));
		if (strcmp(k, registry) == 0)
			return true;
	}
	return false;
}

void oci_registry_key(const char *in, char *out, size_t len)
{
	const char *p = in;
	if (strncmp(p, "https://", 8) == 0)
		p += 8;
	else if (strncmp(p, "http://", 7) == 0)
		p += 7;
	snprintf(out, len, "%s", p);
	out[strcspn(out, "/")] = '\0';
	if (strcmp(out, "index.docker.io") == 0 || strcmp(out, "registry-1.docker.io") == 0)
		snprintf(out, len, "docker.io");
}

/* Look `registry` up in one Docker-format file: 1 found, 0 not, -1 error. */
static int lookup_in(const char *path, const char *registry, char **user, char **pass,
		     struct msb_err *err)
{
	bool missing;
	json_t *j = load_file(path, &missing, err);
	if (!j)
		return missing ? 0 : -1;
	int found = 0;
	json_t *auths = json_object_get(j, "auths");
	const char *key;
	json_t *val;
	if (json_is_object(auths)) {
		json_object_foreach(auths, key, val)
		{
			char k[512];
			oci_registry_key(key, k, sizeof(k));
			if (strcmp(k, registry) != 0 || !json_is_object(val))
				continue;
			json_t *a = json_object_get(val, "auth");
			const char *b64 = json_string_value(a);
			if (!b64) {
				/* Some tools write username/password fields instead. */
				const char *u = json_string_value(json_object_get(val, "username"));
				const char *pw =
					json_string_value(json_object_get(val, "password"));
				if (u && pw) {
					*user = strdup(u);
					*pass = strdup(pw);
					found = 1;
					break;
				}
				continue;
			}
			size_t n = strlen(b64);
			unsigned char *dec = calloc(1, n + 4);
			if (!dec)
				break;
			int m = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
			if (m < 0) {
				free(dec);
				json_decref(j);
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "%s: the \"auth\" for %s is not base64", path,
						   key);
			}
			/* EVP_DecodeBlock counts '=' padding as zero bytes. */
			while (n > 0 && b64[n - 1] == '=' && m > 0) {
				m--;
				n--;
			}
			dec[m] = '\0';
			char *colon = strchr((char *)dec, ':');
			if (!colon) {
				free(dec);
				json_decref(j);
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "%s: the \"auth\" for %s is not user:password",
						   path, key);
			}
			*colon = '\0';
			*user = strdup((char *)dec);
			*pass = strdup(colon + 1);
			free(dec);
			found = 1;
			break;
		}
	}
	json_decref(j);
	if (found && (!*user || !*pass)) {
		free(*user);
		free(*pass);
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	}
	return found;
}

int oci_creds_lookup(const struct oci_settings *s, const char *registry, char **user, char **pass,
		     struct msb_err *err)
{
	*user = *pass = NULL;
	char path[4200];
	snprintf(path, sizeof(path), "%s/auth.json", s->home);
	int r = lookup_in(path, registry, user, pass, err);
	if (r != 0)
		return r;
	const char *dc = getenv("DOCKER_CONFIG");
	const char *home = getenv("HOME");
	if (dc && *dc)
		snprintf(path, sizeof(path), "%s/config.json", dc);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.docker/config.json", home);
	else
		return 0;
	return lookup_in(path, registry, user, pass, err);
}

static int write_auth(const char *home, json_t *j, struct msb_err *err)
{
	if (msb_mkdir_p(home, 0700, err) < 0)
		return -1;
	char path[4200], tmp[4300];
	snprintf(path, sizeof(path), "%s/auth.json", home);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return msb_err_sys(err, "creating %s", tmp);
	_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	if (msb_write_all(fd, text, strlen(text)) < 0) {
		msb_err_sys(err, "writing %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (fchmod(fd, 0600) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
		msb_err_sys(err, "saving %s", path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

static json_t *load_auth(const char *home, struct msb_err *err)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/auth.json", home);
	bool missing;
	json_t *j = load_file(path, &missing, err);
	if (!j && missing)
		j = json_object();
	if (j && !json_is_object(json_object_get(j, "auths")))
		json_object_set_new(j, "auths", json_object());
	return j;
}

int oci_creds_store(const char *home, const char *registry, const char *user, const char *pass,
		    struct msb_err *err)
{
	json_t *j = load_auth(home, err);
	if (!j)
		return -1;
	char key[512];
	oci_registry_key(registry, key, sizeof(key));
	size_t n = strlen(user) + 1 + strlen(pass);
	_cleanup_free_ char *plain = malloc(n + 1);
	_cleanup_free_ char *b64 = malloc(4 * (n + 2) / 3 + 4);
	if (!plain || !b64) {
		json_decref(j);
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	}
	snprintf(plain, n + 1, "%s:%s", user, pass);
	EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)plain, (int)n);
	json_t *entry = json_object();
	json_object_set_new(entry, "auth", json_string(b64));
	json_object_set_new(json_object_get(j, "auths"), key, entry);
	int r = write_auth(home, j, err);
	json_decref(j);
	return r;
}

int oci_creds_remove(const char *home, const char *registry, struct msb_err *err)
{
	json_t *j = load_auth(home, err);
	if (!j)
		return -1;
	char key[512];
	oci_registry_key(registry, key, sizeof(key));
	json_t *auths = json_object_get(j, "auths");
	int r;
	if (json_object_del(auths, key) < 0)
		r = msb_err_set(err, MSB_EK_NOT_FOUND, 0, "not logged in to %s", key);
	else
		r = write_auth(home, j, err);
	json_decref(j);
	return r;
}
