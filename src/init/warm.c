/* SETUP's WARM: prefetch programs into the page cache (see warm.h). */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init/warm.h"

#define WARM_FILES_MAX	  64		     /* files read per request */
#define WARM_BYTES_MAX	  (256ull << 20)     /* bytes read per request */
#define WARM_PARSE_MAX	  ((size_t)64 << 20) /* larger files are read, not parsed */
#define WARM_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* A string inside buf[off..end) ending in NUL, copied when it is a name we can
 * use: printable, no spaces, below WARM_NAME_MAX bytes. */
static bool copy_name(const uint8_t *buf, size_t len, uint64_t off, uint64_t end, char *out)
{
	if (end > len || off >= end)
		return false;
	size_t max = (size_t)(end - off);
	const uint8_t *s = buf + off;
	const uint8_t *nul = memchr(s, 0, max);
	if (!nul)
		return false;
	size_t n = (size_t)(nul - s);
	if (n == 0 || n >= WARM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	/* A name for the library directories, or an absolute path. */
	if (s[0] != '/' && memchr(s, '/', n))
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

/* The file offset of virtual address v (in a PT_LOAD's file part), or -1. */
static int64_t vaddr_off(const Elf64_Phdr *ph, unsigned n, uint64_t v, size_t len)
{
	for (unsigned i = 0; i < n; i++) {
		if (ph[i].p_type != PT_LOAD || v < ph[i].p_vaddr)
			continue;
		uint64_t d = v - ph[i].p_vaddr;
		if (d >= ph[i].p_filesz || ph[i].p_offset > len || d > len - ph[i].p_offset)
			continue;
		return (int64_t)(ph[i].p_offset + d);
	}
	return -1;
}

int warm_elf_parse(const uint8_t *buf, size_t len, struct warm_elf *out)
{
	memset(out, 0, sizeof(*out));
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return -1;
	memcpy(&eh, buf, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_phentsize != sizeof(Elf64_Phdr) ||
	    eh.e_phnum == 0 || eh.e_phnum > 256 || eh.e_phoff > len ||
	    (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return -1;
	Elf64_Phdr ph[256];
	unsigned n = eh.e_phnum;
	memcpy(ph, buf + eh.e_phoff, n * sizeof(Elf64_Phdr));
	uint64_t dyn_off = 0, dyn_size = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t o = ph[i].p_offset, sz = ph[i].p_filesz;
		if (o > len || sz > len - o)
			continue; /* runs past the end: not used */
		if (ph[i].p_type == PT_INTERP && !out->interp[0]) {
			char s[WARM_NAME_MAX];
			if (copy_name(buf, len, o, o + sz, s) && s[0] == '/')
				memcpy(out->interp, s, sizeof(s));
		} else if (ph[i].p_type == PT_DYNAMIC && !dyn_size) {
			dyn_off = o;
			dyn_size = sz;
		}
	}
	if (!dyn_size)
		return 0;
	uint64_t strtab = 0, strsz = 0, needed[WARM_NEEDED_MAX];
	unsigned nn = 0;
	bool have_strtab = false;
	for (uint64_t i = 0; i + sizeof(Elf64_Dyn) <= dyn_size; i += sizeof(Elf64_Dyn)) {
		Elf64_Dyn d;
		memcpy(&d, buf + dyn_off + i, sizeof(d));
		if (d.d_tag == DT_NULL)
			break;
		if (d.d_tag == DT_STRTAB) {
			strtab = d.d_un.d_ptr;
			have_strtab = true;
		} else if (d.d_tag == DT_STRSZ) {
			strsz = d.d_un.d_val;
		} else if (d.d_tag == DT_NEEDED && nn < WARM_NEEDED_MAX) {
			needed[nn++] = d.d_un.d_val;
		}
	}
	if (!have_strtab || !nn)
		return 0;
	int64_t so = vaddr_off(ph, n, strtab, len);
	if (so < 0)
		return 0;
	uint64_t end = (uint64_t)so + strsz;
	if (strsz > len || end > len)
		end = len;
	for (unsigned i = 0; i < nn; i++) {
		if (needed[i] >= end - (uint64_t)so)
			continue;
		if (copy_name(buf, len, (uint64_t)so + needed[i], end, out->needed[out->nneeded]))
			out->nneeded++;
	}
	return 0;
}

static bool executable_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

int warm_lookup(const char *name, const char *path, char *out, size_t out_len)
{
	if (!name[0])
		return -1;
	if (name[0] == '/') {
		if (!executable_file(name) || strlen(name) >= out_len)
			return -1;
		snprintf(out, out_len, "%s", name);
		return 0;
	}
	if (strchr(name, '/'))
		return -1;
	if (!path || !*path)
		path = WARM_DEFAULT_PATH;
	for (const char *p = path;;) {
		const char *colon = strchr(p, ':');
		size_t dl = colon ? (size_t)(colon - p) : strlen(p);
		/* Each lookup (hit or miss) leaves a dentry the command's exec finds. */
		if (dl > 0 && p[0] == '/' && dl + 1 + strlen(name) < out_len) {
			snprintf(out, out_len, "%.*s/%s", (int)dl, p, name);
			if (executable_file(out))
				return 0;
		}
		if (!colon)
			return -1;
		p = colon + 1;
	}
}

static const char *const lib_dirs[] = {
	"/lib",
	"/usr/lib",
	"/lib64",
	"/usr/lib64",
	"/lib/x86_64-linux-gnu",
	"/usr/lib/x86_64-linux-gnu",
	"/usr/local/lib",
};

static bool lookup_lib(const char *name, char *out, size_t out_len)
{
	struct stat st;
	if (name[0] == '/') {
		snprintf(out, out_len, "%s", name);
		return stat(out, &st) == 0 && S_ISREG(st.st_mode);
	}
	for (size_t i = 0; i < sizeof(lib_dirs) / sizeof(lib_dirs[0]); i++) {
		snprintf(out, out_len, "%s/%s", lib_dirs[i], name);
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
			return true;
	}
	return false;
}

struct warm_queue {
	char path[WARM_FILES_MAX][WARM_NAME_MAX + 64];
	struct stat id[WARM_FILES_MAX]; /* dev/ino of each, to read a file once */
	unsigned n, done;
};

static void queue_add(struct warm_queue *q, const char *path)
{
	struct stat st;
	if (q->n == WARM_FILES_MAX || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	for (unsigned i = 0; i < q->n; i++)
		if (q->id[i].st_dev == st.st_dev && q->id[i].st_ino == st.st_ino)
			return;
	snprintf(q->path[q->n], sizeof(q->path[0]), "%s", path);
	q->id[q->n++] = st;
}

/* Read one file whole (into the page cache), and parse it when it is small
 * enough to hold: its interpreter and libraries join the queue. */
static void warm_file(struct warm_queue *q, const char *path, struct warm_stats *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return;
	struct stat s;
	if (fstat(fd, &s) < 0 || !S_ISREG(s.st_mode) || st->bytes >= WARM_BYTES_MAX) {
		close(fd);
		return;
	}
	size_t want = (size_t)s.st_size;
	if (want > WARM_BYTES_MAX - st->bytes)
		want = (size_t)(WARM_BYTES_MAX - st->bytes);
	uint8_t *buf = want <= WARM_PARSE_MAX ? malloc(want ? want : 1) : NULL;
	uint8_t chunk[65536];
	size_t got = 0;
	while (got < want) {
		size_t room = want - got;
		uint8_t *dst = buf ? buf + got : chunk;
		if (!buf && room > sizeof(chunk))
			room = sizeof(chunk);
		ssize_t r = read(fd, dst, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	st->files++;
	st->bytes += got;
	struct warm_elf e;
	if (buf && warm_elf_parse(buf, got, &e) == 0) {
		char p[WARM_NAME_MAX + 64];
		if (e.interp[0])
			queue_add(q, e.interp);
		for (unsigned i = 0; i < e.nneeded; i++)
			if (lookup_lib(e.needed[i], p, sizeof(p)))
				queue_add(q, p);
	}
	free(buf);
}

void warm_programs(const char (*names)[256], unsigned n, const char *path, struct warm_stats *st)
{
	struct warm_queue *q = calloc(1, sizeof(*q));
	memset(st, 0, sizeof(*st));
	if (!q)
		return;
	char p[WARM_NAME_MAX + 64];
	for (unsigned i = 0; i < n; i++)
		if (warm_lookup(names[i], path, p, sizeof(p)) == 0)
			queue_add(q, p);
	while (q->done < q->n) {
		unsigned i = q->done++;
		warm_file(q, q->path[i], st);
	}
	free(q);
}
