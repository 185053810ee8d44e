/* Snapshot metadata: a versioned key=value text file, parsed as untrusted input
 * (a snapshot directory may come from anywhere). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sandbox/snapshot.h"

#define MAGIC_LINE "msb-snapshot 1"
#define VALUE_MAX  4096

void sandbox_snapmeta_clear(struct sandbox_snapmeta *m)
{
	free(m->name);
	free(m->source);
	free(m->image);
	free(m->rootfs);
	free(m->rootfs_format);
	free(m->rw_disk);
	free(m->created);
	free(m->kernel);
	free(m->initrd);
	free(m->vmm);
	free(m->cmdline);
	free(m->digest);
	memset(m, 0, sizeof(*m));
}

static int parse_num(const char *key, const char *v, size_t vl, unsigned max, unsigned *out,
		     struct msb_err *err)
{
	unsigned long n = 0;
	if (vl == 0 || vl > 10)
		goto bad;
	for (size_t i = 0; i < vl; i++) {
		if (v[i] < '0' || v[i] > '9')
			goto bad;
		n = n * 10 + (unsigned long)(v[i] - '0');
	}
	if (n == 0 || n > max)
		goto bad;
	*out = (unsigned)n;
	return 0;
bad:
	return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s must be a number from 1 to %u", key, max);
}

static int parse_bool(const char *key, const char *v, size_t vl, bool *out, struct msb_err *err)
{
	if (vl == 3 && memcmp(v, "yes", 3) == 0)
		*out = true;
	else if (vl == 2 && memcmp(v, "no", 2) == 0)
		*out = false;
	else
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s must be yes or no", key);
	return 0;
}

static int set_str(char **dst, const char *v, size_t vl, struct msb_err *err)
{
	if (memchr(v, '\0', vl))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a value holds a NUL byte");
	char *s = strndup(v, vl);
	if (!s)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_line(struct sandbox_snapmeta *m, const char *l, size_t ll, struct msb_err *err)
{
	const char *eq = memchr(l, '=', ll);
	if (!eq)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a line without '='");
	size_t kl = (size_t)(eq - l);
	const char *v = eq + 1;
	size_t vl = ll - kl - 1;
	if (vl > VALUE_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a value longer than %d bytes",
				   VALUE_MAX);
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(l, s, kl) == 0)
	if (KEY("name"))
		return set_str(&m->name, v, vl, err);
	if (KEY("source"))
		return set_str(&m->source, v, vl, err);
	if (KEY("image"))
		return set_str(&m->image, v, vl, err);
	if (KEY("rootfs"))
		return set_str(&m->rootfs, v, vl, err);
	if (KEY("digest"))
		return set_str(&m->digest, v, vl, err);
	if (KEY("rootfs_format"))
		return set_str(&m->rootfs_format, v, vl, err);
	if (KEY("rw_disk"))
		return set_str(&m->rw_disk, v, vl, err);
	if (KEY("created"))
		return set_str(&m->created, v, vl, err);
	if (KEY("kernel"))
		return set_str(&m->kernel, v, vl, err);
	if (KEY("initrd"))
		return set_str(&m->initrd, v, vl, err);
	if (KEY("vmm"))
		return set_str(&m->vmm, v, vl, err);
	if (KEY("cmdline"))
		return set_str(&m->cmdline, v, vl, err);
	if (KEY("cpus"))
		return parse_num("cpus", v, vl, 255, &m->cpus, err);
	if (KEY("memory_mib"))
		return parse_num("memory_mib", v, vl, 1u << 20, &m->memory_mib, err);
	if (KEY("disks"))
		return parse_num("disks", v, vl, 2, &m->disks, err);
	if (KEY("rw"))
		return parse_bool("rw", v, vl, &m->rw, err);
	if (KEY("net"))
		return parse_bool("net", v, vl, &m->net, err);
	if (KEY("fs_slots"))
		return parse_num("fs_slots", v, vl, 8, &m->fs_slots, err);
	if (KEY("volumes"))
		return parse_num("volumes", v, vl, 8, &m->volumes, err);
#undef KEY
	return 0; /* a newer msb's key: ignored */
}

int sandbox_snapmeta_parse(const char *buf, size_t len, struct sandbox_snapmeta *m,
			   struct msb_err *err)
{
	memset(m, 0, sizeof(*m));
	if (len > SANDBOX_SNAPMETA_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "the metadata is larger than %d bytes",
				   SANDBOX_SNAPMETA_MAX);
	size_t ml = strlen(MAGIC_LINE);
	if (len < ml + 1 || memcmp(buf, MAGIC_LINE, ml) != 0 || buf[ml] != '\n') {
		if (len > 13 && memcmp(buf, "msb-snapshot ", 13) == 0)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "the metadata is of another version (this msb reads "
					   "'%s')",
					   MAGIC_LINE);
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "not snapshot metadata (no '%s' line)",
				   MAGIC_LINE);
	}
	size_t off = ml + 1;
	unsigned lineno = 1;
	while (off < len) {
		lineno++;
		const char *l = buf + off;
		const char *nl = memchr(l, '\n', len - off);
		size_t ll = nl ? (size_t)(nl - l) : len - off;
		off += ll + (nl ? 1 : 0);
		if (ll == 0 || l[0] == '#')
			continue;
		if (parse_line(m, l, ll, err) < 0) {
			msb_err_wrap(err, "metadata line %u", lineno);
			sandbox_snapmeta_clear(m);
			return -1;
		}
	}
	if (!m->disks)
		m->disks = m->rw || m->rw_disk ? 2 : 1;
	if (m->rw && m->disks < 2) {
		sandbox_snapmeta_clear(m);
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the metadata says rw=yes with a single disk slot");
	}
	return 0;
}

static bool has_nl(const char *s)
{
	return s && strpbrk(s, "\n\r");
}

char *sandbox_snapmeta_format(const struct sandbox_snapmeta *m, struct msb_err *err)
{
	const char *strs[] = {m->name,		m->source,  m->image,	m->rootfs,
			      m->rootfs_format, m->rw_disk, m->created, m->kernel,
			      m->initrd,	m->vmm,	    m->cmdline, m->digest};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (has_nl(strs[i]) || (strs[i] && strlen(strs[i]) > VALUE_MAX)) {
			msb_err_set(err, MSB_EK_USAGE, 0,
				    "'%.40s...' cannot be stored in snapshot metadata", strs[i]);
			return NULL;
		}
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	fprintf(f, "%s\n", MAGIC_LINE);
#define STR(k, v)                                 \
	do {                                      \
		if (v)                            \
			fprintf(f, k "=%s\n", v); \
	} while (0)
	STR("name", m->name);
	STR("source", m->source);
	STR("image", m->image);
	STR("rootfs", m->rootfs);
	STR("rootfs_format", m->rootfs_format);
	STR("rw_disk", m->rw_disk);
	STR("created", m->created);
	STR("kernel", m->kernel);
	STR("initrd", m->initrd);
	STR("vmm", m->vmm);
	STR("cmdline", m->cmdline);
	STR("digest", m->digest);
#undef STR
	if (m->cpus)
		fprintf(f, "cpus=%u\n", m->cpus);
	if (m->memory_mib)
		fprintf(f, "memory_mib=%u\n", m->memory_mib);
	fprintf(f, "disks=%u\n", m->disks ? m->disks : 1);
	fprintf(f, "rw=%s\n", m->rw ? "yes" : "no");
	fprintf(f, "net=%s\n", m->net ? "yes" : "no");
	if (m->fs_slots)
		fprintf(f, "fs_slots=%u\n", m->fs_slots);
	if (m->volumes)
		fprintf(f, "volumes=%u\n", m->volumes);
	if (fclose(f) != 0) {
		free(out);
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	return out;
}

int sandbox_snapmeta_read(const char *path, struct sandbox_snapmeta *m, struct msb_err *err)
{
	memset(m, 0, sizeof(*m));
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM, errno,
				   "opening %s", path);
	char *buf = malloc(SANDBOX_SNAPMETA_MAX + 1);
	if (!buf)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, SANDBOX_SNAPMETA_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return msb_err_sys(err, "reading %s", path);
		}
		if (n == 0 || (len += (size_t)n) > SANDBOX_SNAPMETA_MAX)
			break;
	}
	int r = sandbox_snapmeta_parse(buf, len, m, err);
	free(buf);
	return r < 0 ? msb_err_wrap(err, "%s", path) : 0;
}

int sandbox_snapmeta_write(const char *path, const struct sandbox_snapmeta *m, struct msb_err *err)
{
	_cleanup_free_ char *text = sandbox_snapmeta_format(m, err);
	if (!text)
		return -1;
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return msb_err_sys(err, "creating %s", tmp);
	size_t len = strlen(text);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			msb_err_sys(err, "writing %s", tmp);
			unlink(tmp);
			return -1;
		}
		off += (size_t)n;
	}
	if (rename(tmp, path) < 0) {
		msb_err_sys(err, "renaming %s", tmp);
		unlink(tmp);
		return -1;
	}
	return 0;
}

int sandbox_snapshot_name_check(const char *name, struct msb_err *err)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n > 0 && n <= 64 && name[0] != '.' && name[0] != '-';
	for (size_t i = 0; ok && i < n; i++) {
		char c = name[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '.' || c == '_' || c == '-';
	}
	if (!ok)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "'%s' is not a snapshot name: use 1 to 64 of A-Z a-z 0-9 . _ - "
				   "(not starting with . or -)",
				   name ? name : "");
	return 0;
}
