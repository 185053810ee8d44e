#include "oci/ref.h"

#include <stdio.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool oci_digest_valid(const char *d)
{
	if (strncmp(d, "sha256:", 7) != 0)
		return false;
	d += 7;
	for (int i = 0; i < 64; i++)
		if (!is_hex(d[i]))
			return false;
	return d[64] == '\0';
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* */
static bool component_valid(const char *s, size_t n)
{
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n;) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && !is_lower_alnum(s[j]))
			j++;
		size_t sep = j - i;
		bool ok = (sep == 1 && (s[i] == '.' || s[i] == '_' || s[i] == '-')) ||
			  (sep == 2 && s[i] == '_' && s[i + 1] == '_');
		if (!ok) {
			ok = true;
			for (size_t k = i; k < j; k++)
				if (s[k] != '-')
					ok = false;
		}
		if (!ok)
			return false;
		i = j;
	}
	return true;
}

/* host[:port]: labels of [A-Za-z0-9-], or a bracketed IPv6 address; port digits. */
static bool host_valid(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0)
		return false;
	if (s[0] == '[') {
		while (i < n && s[i] != ']') {
			char c = s[i];
			if (i > 0 && !(is_hex(c) || (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
				return false;
			i++;
		}
		if (i == n)
			return false;
		i++;
	} else {
		size_t label = 0;
		for (; i < n && s[i] != ':'; i++) {
			char c = s[i];
			bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				     (c >= '0' && c <= '9');
			if (c == '.') {
				if (label == 0 || s[i - 1] == '-')
					return false;
				label = 0;
				continue;
			}
			if (!alnum && c != '-')
				return false;
			if (c == '-' && label == 0)
				return false;
			label++;
		}
		if (label == 0)
			return false;
	}
	if (i == n)
		return true;
	if (s[i] != ':' || i + 1 == n || n - i - 1 > 5)
		return false;
	for (i++; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool tag_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > OCI_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool w = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_';
		if (!w && (i == 0 || (c != '.' && c != '-')))
			return false;
	}
	return true;
}

static int copy(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		return -1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int oci_ref_parse(const char *s, struct oci_ref *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return msb_err_set(err, MSB_EK_USAGE, 0, "empty image reference");
	size_t len = strlen(s);
	if (len > OCI_REF_STR_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "image reference is too long");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "invalid image reference '%s': it contains whitespace "
					   "or a non-ASCII character",
					   s);

	char buf[OCI_REF_STR_MAX + 1];
	memcpy(buf, s, len + 1);

	/* name[:tag][@digest]; the digest is after the last '@'. */
	char *at = strchr(buf, '@');
	if (at) {
		*at = '\0';
		const char *d = at + 1;
		if (strncmp(d, "sha256:", 7) != 0) {
			if (strchr(d, ':') && strncmp(d, "sha", 3) == 0)
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "unsupported digest algorithm in '%s': only "
						   "sha256 is supported",
						   s);
			return msb_err_set(
				err, MSB_EK_USAGE, 0,
				"invalid digest in '%s': expected @sha256:<64 hex digits>", s);
		}
		if (!oci_digest_valid(d))
			return msb_err_set(
				err, MSB_EK_USAGE, 0,
				"invalid digest in '%s': expected @sha256:<64 lower-case "
				"hex digits>",
				s);
		memcpy(out->digest, d, strlen(d) + 1);
	}
	/* A ':' after the last '/' starts the tag; before it, it is a registry port. */
	char *slash = strrchr(buf, '/');
	char *colon = strrchr(slash ? slash : buf, ':');
	if (colon) {
		*colon = '\0';
		if (!tag_valid(colon + 1))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "invalid tag in image reference '%s': a tag is 1-128 "
					   "of [A-Za-z0-9_.-], not starting with '.' or '-'",
					   s);
		memcpy(out->tag, colon + 1, strlen(colon + 1) + 1);
	}
	char *name = buf;
	if (!*name)
		return msb_err_set(err, MSB_EK_USAGE, 0, "invalid image reference '%s': no name",
				   s);

	const char *reg = "docker.io";
	size_t reg_len = strlen(reg);
	char *first_slash = strchr(name, '/');
	char *repo = name;
	if (first_slash) {
		size_t n = (size_t)(first_slash - name);
		bool is_host = memchr(name, '.', n) || memchr(name, ':', n) ||
			       (n == 9 && memcmp(name, "localhost", 9) == 0);
		for (size_t i = 0; i < n && !is_host; i++)
			if (name[i] >= 'A' && name[i] <= 'Z')
				is_host = true;
		if (is_host) {
			if (!host_valid(name, n))
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "invalid registry host in image reference '%s'",
						   s);
			reg = name;
			reg_len = n;
			repo = first_slash + 1;
			if ((n == 15 && memcmp(name, "index.docker.io", 15) == 0) ||
			    (n == 20 && memcmp(name, "registry-1.docker.io", 20) == 0)) {
				reg = "docker.io";
				reg_len = 9;
			}
		}
	}
	/* Every component of the repository path must be valid. */
	for (const char *p = repo;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (!component_valid(p, n)) {
			for (size_t i = 0; i < n; i++)
				if (p[i] >= 'A' && p[i] <= 'Z')
					return msb_err_set(err, MSB_EK_USAGE, 0,
							   "invalid image reference '%s': "
							   "repository names must be lower-case",
							   s);
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "invalid image reference '%s': each path component is "
					   "lower-case letters and digits, separated by '.', '_', "
					   "'__' or '-'",
					   s);
		}
		if (!e)
			break;
		p = e + 1;
	}
	if (copy(out->registry, sizeof(out->registry), reg, reg_len) < 0)
		return msb_err_set(err, MSB_EK_USAGE, 0, "registry name too long in '%s'", s);
	int n;
	if (strcmp(out->registry, "docker.io") == 0 && !strchr(repo, '/'))
		n = snprintf(out->repository, sizeof(out->repository), "library/%s", repo);
	else
		n = snprintf(out->repository, sizeof(out->repository), "%s", repo);
	if (n < 0 || strlen(out->registry) + 1 + (size_t)n > OCI_NAME_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "invalid image reference '%s': the name is longer than %d "
				   "characters",
				   s, OCI_NAME_MAX);
	if (!out->tag[0] && !out->digest[0])
		memcpy(out->tag, "latest", 7);
	return 0;
}

int oci_ref_format(const struct oci_ref *ref, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s%s%s%s%s", ref->registry, ref->repository,
			 ref->tag[0] ? ":" : "", ref->tag, ref->digest[0] ? "@" : "", ref->digest);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

const char *oci_ref_target(const struct oci_ref *ref)
{
	return ref->digest[0] ? ref->digest : ref->tag;
}

bool oci_registry_is_loopback(const char *registry)
{
	char host[OCI_NAME_MAX + 1];
	snprintf(host, sizeof(host), "%s", registry);
	if (host[0] == '[') {
		char *e = strchr(host, ']');
		if (e)
			*e = '\0';
		return strcmp(host + 1, "::1") == 0;
	}
	char *c = strchr(host, ':');
	if (c)
		*c = '\0';
	if (strcmp(host, "localhost") == 0)
		return true;
	if (strncmp(host, "127.", 4) == 0) {
		for (const char *p = host + 4; *p; p++)
			if (!((*p >= '0' && *p <= '9') || *p == '.'))
				return false;
		return true;
	}
	return false;
}
