#include "project/pairs.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "oci/ref.h"

static int oom(struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
}

int msb_env_pair_parse(const char *s, struct msb_env_pair *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *eq = strchr(s, '=');
	if (!eq || eq == s)
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"'%.120s' is not an environment variable; write NAME=VALUE, e.g. "
			"DEBUG=1",
			s);
	out->name = strndup(s, (size_t)(eq - s));
	out->value = strdup(eq + 1);
	if (!out->name || !out->value) {
		msb_env_pair_clear(out);
		return oom(err);
	}
	return 0;
}

void msb_env_pair_clear(struct msb_env_pair *p)
{
	free(p->name);
	free(p->value);
	memset(p, 0, sizeof(*p));
}

int msb_path_pair_parse(const char *s, struct msb_path_pair *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *colon = strchr(s, ':');
	if (!*s || (colon && (colon == s || colon[1] == '\0')))
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"'%.120s' is not a volume; write HOST_PATH:GUEST_PATH or PATH, e.g. "
			"./data:/data",
			s);
	if (colon) {
		out->host = strndup(s, (size_t)(colon - s));
		out->guest = strdup(colon + 1);
	} else {
		out->host = strdup(s);
		out->guest = strdup(s);
	}
	if (!out->host || !out->guest) {
		msb_path_pair_clear(out);
		return oom(err);
	}
	if (out->guest[0] != '/') {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "the volume '%s' mounts at '%s', which is not an absolute path; the "
			    "guest side must start with '/', e.g. ./data:/data",
			    s, out->guest);
		msb_path_pair_clear(out);
		return -1;
	}
	return 0;
}

int msb_path_pair_resolve(struct msb_path_pair *p, const char *project_dir, struct msb_err *err)
{
	free(p->host_abs);
	p->host_abs = NULL;
	const char *h = p->host;
	if (h[0] == '/') {
		p->host_abs = strdup(h);
	} else {
		while (h[0] == '.' && h[1] == '/')
			for (h += 2; *h == '/'; h++)
				;
		if (strcmp(h, ".") == 0 || *h == '\0')
			p->host_abs = strdup(project_dir);
		else if (asprintf(&p->host_abs, "%s/%s", project_dir, h) < 0)
			p->host_abs = NULL;
	}
	return p->host_abs ? 0 : oom(err);
}

void msb_path_pair_clear(struct msb_path_pair *p)
{
	free(p->host);
	free(p->guest);
	free(p->host_abs);
	memset(p, 0, sizeof(*p));
}

int msb_port_parse(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5)
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int msb_port_pair_parse(const char *s, struct msb_port_pair *out, struct msb_err *err)
{
	const char *colon = strchr(s, ':');
	int rc;
	if (colon)
		rc = msb_port_parse(s, (size_t)(colon - s), &out->host) < 0 ||
				     msb_port_parse(colon + 1, strlen(colon + 1), &out->guest) < 0
			     ? -1
			     : 0;
	else if ((rc = msb_port_parse(s, strlen(s), &out->host)) == 0)
		out->guest = out->host;
	if (rc < 0)
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"'%.120s' is not a port mapping; write HOST_PORT:GUEST_PORT or PORT "
			"(0-65535), e.g. 8080:80",
			s);
	return 0;
}

bool msb_path_segment_valid(const char *s)
{
	return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bool is_alnum_ascii(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool msb_sandbox_name_valid(const char *s)
{
	if (!s || !is_alnum_ascii(s[0]))
		return false;
	size_t n = 0;
	for (; s[n]; n++)
		if (!is_alnum_ascii(s[n]) && s[n] != '_' && s[n] != '-')
			return false;
	return n <= 63;
}

static const char *const scope_names[] = {"none", "group", "public", "any"};

int msb_scope_parse(const char *s, bool ignore_case, enum msb_scope *out)
{
	for (unsigned i = 0; i < MSB_ARRAY_SIZE(scope_names); i++) {
		if (ignore_case ? strcasecmp(s, scope_names[i]) == 0
				: strcmp(s, scope_names[i]) == 0) {
			*out = (enum msb_scope)i;
			return 0;
		}
	}
	return -1;
}

const char *msb_scope_name(enum msb_scope s)
{
	return (unsigned)s < MSB_ARRAY_SIZE(scope_names) ? scope_names[s] : "?";
}

bool msb_image_is_path(const char *image)
{
	return image && (image[0] == '.' || image[0] == '/');
}

int msb_image_ref_check(const char *ref, struct msb_err *err)
{
	size_t n = strlen(ref);
	if (n == 0 || n > 512)
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"'%.100s' is not an image reference (it is %s); write e.g. "
			"python, alpine:3.19, ghcr.io/owner/image:tag, or ./rootfs for a "
			"local directory",
			ref, n ? "longer than 512 characters" : "empty");
	/* The store's parser is the one definition of a reference. */
	struct oci_ref parsed;
	if (oci_ref_parse(ref, &parsed, err) < 0) {
		char why[MSB_ERR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", err->msg);
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"%s; write e.g. python, alpine:3.19, ghcr.io/owner/image:tag, or "
			"./rootfs for a local directory",
			why);
	}
	return 0;
}

/* A numeric identifier: digits, no leading zero unless it is "0". */
static const char *semver_num(const char *s)
{
	if (!isdigit((unsigned char)*s))
		return NULL;
	if (*s == '0' && isdigit((unsigned char)s[1]))
		return NULL;
	while (isdigit((unsigned char)*s))
		s++;
	return s;
}

/* Dot-separated [0-9A-Za-z-]+ identifiers. */
static const char *semver_idents(const char *s)
{
	for (;;) {
		const char *start = s;
		while (is_alnum_ascii(*s) || *s == '-')
			s++;
		if (s == start)
			return NULL;
		if (*s != '.')
			return s;
		s++;
	}
}

bool msb_semver_valid(const char *s)
{
	for (int i = 0; i < 3; i++) {
		if (!(s = semver_num(s)))
			return false;
		if (i < 2 && *s++ != '.')
			return false;
	}
	if (*s == '-' && !(s = semver_idents(s + 1)))
		return false;
	if (*s == '+' && !(s = semver_idents(s + 1)))
		return false;
	return *s == '\0';
}

bool msb_guest_paths_overlap(const char *a, const char *b)
{
	/* Compare without trailing slashes; "/" overlaps everything. */
	size_t la = strlen(a), lb = strlen(b);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (lb > 1 && b[lb - 1] == '/')
		lb--;
	if (la == 1 || lb == 1)
		return true;
	size_t m = la < lb ? la : lb;
	if (memcmp(a, b, m) != 0)
		return false;
	if (la == lb)
		return true;
	return (la > lb ? a[m] : b[m]) == '/';
}

int msb_name_script_split(const char *arg, char **name, char **script, struct msb_err *err)
{
	*name = *script = NULL;
	const char *t = strchr(arg, '~');
	_cleanup_free_ char *n = t ? strndup(arg, (size_t)(t - arg)) : strdup(arg);
	_cleanup_free_ char *sc = t ? strdup(t + 1) : NULL;
	if (!n || (t && !sc))
		return oom(err);
	if (!*n || (t && !*sc))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "'%s' is not NAME or NAME~SCRIPT; e.g. web or web~test", arg);
	*name = steal_pointer(&n);
	*script = steal_pointer(&sc);
	return 0;
}
