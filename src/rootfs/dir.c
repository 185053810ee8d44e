/* A plain directory tree as the source of a root filesystem (`image: ./dir`, `msb image
 * import DIR`).  File contents are not copied here: the image writer reads each file when it
 * writes it.  Owners come from the files when we run as root; unprivileged, every file is
 * owned by root in the image, since the files on disk then belong to the importing user. */
#include "rootfs/dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"

struct link_seen {
	dev_t dev;
	ino_t ino;
	char *rel; /* the first path seen, relative to the source */
};

struct scan {
	struct rf_tree *t;
	bool keep_owner;
	char *comps[RF_PATH_MAX / 2];
	struct link_seen *links;
	size_t n_links, cap_links;
	struct msb_err *err;
};

static int read_xattrs(struct scan *s, const char *path, struct rf_inode *ino)
{
	char names[65536];
	ssize_t len = llistxattr(path, names, sizeof(names));
	if (len < 0)
		return errno == ENOTSUP || errno == ENODATA
			       ? 0
			       : msb_err_sys(s->err, "listing xattrs of %s", path);
	for (char *n = names; n < names + len; n += strlen(n) + 1) {
		char value[65536];
		ssize_t vl = lgetxattr(path, n, value, sizeof(value));
		if (vl < 0) {
			if (errno == ENODATA || errno == ENOTSUP)
				continue;
			return msb_err_sys(s->err, "reading xattr %s of %s", n, path);
		}
		if (rf_inode_add_xattr(ino, n, value, (size_t)vl, s->err) < 0)
			return -1;
	}
	return 0;
}

static char *join_rel(char **comps, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(comps[i]) + 1;
	char *p = malloc(len), *q = p;
	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(comps[i]);
		memcpy(q, comps[i], l);
		q += l;
		*q++ = i + 1 < n ? '/' : '\0';
	}
	if (n == 0)
		*p = '\0';
	return p;
}

/* A second name of an inode seen before: a hard link in the image too. */
static int try_hardlink(struct scan *s, const struct stat *st, size_t depth, bool *done)
{
	*done = false;
	for (size_t i = 0; i < s->n_links; i++) {
		if (s->links[i].dev == st->st_dev && s->links[i].ino == st->st_ino) {
			char buf[RF_PATH_MAX];
			char *tc[RF_PATH_MAX / 2];
			size_t tn;
			if (rf_path_split(s->links[i].rel, buf, sizeof(buf), tc, MSB_ARRAY_SIZE(tc),
					  &tn, s->err) < 0)
				return -1;
			*done = true;
			return rf_tree_add_hardlink(s->t, s->comps, depth, tc, tn, 1, s->err);
		}
	}
	if (s->n_links == s->cap_links) {
		size_t cap = s->cap_links ? s->cap_links * 2 : 64;
		struct link_seen *l = realloc(s->links, cap * sizeof(*l));
		if (!l)
			return msb_err_set(s->err, MSB_EK_SYSTEM, ENOMEM, "hard links");
		s->links = l;
		s->cap_links = cap;
	}
	char *rel = join_rel(s->comps, depth);
	if (!rel)
		return msb_err_set(s->err, MSB_EK_SYSTEM, ENOMEM, "hard links");
	s->links[s->n_links++] = (struct link_seen){st->st_dev, st->st_ino, rel};
	return 0;
}

static int scan_dir(struct scan *s, const char *path, size_t depth);

static int scan_entry(struct scan *s, const char *path, size_t depth)
{
	struct stat st;
	/* The source itself may be a symlink to the tree; nothing below it is followed. */
	if ((depth ? lstat(path, &st) : stat(path, &st)) < 0)
		return msb_err_sys(s->err, "reading %s", path);
	if (rf_tree_count_entry(s->t, s->err) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && depth > 0) {
		bool done;
		if (try_hardlink(s, &st, depth, &done) < 0)
			return -1;
		if (done)
			return 0;
	}
	struct rf_inode *ino = rf_inode_new();
	if (!ino)
		return msb_err_set(s->err, MSB_EK_SYSTEM, ENOMEM, "reading %s", path);
	ino->mode = (uint32_t)st.st_mode & (S_IFMT | 07777);
	ino->uid = s->keep_owner ? st.st_uid : 0;
	ino->gid = s->keep_owner ? st.st_gid : 0;
	ino->mtime = st.st_mtim.tv_sec;
	ino->mtime_nsec = (uint32_t)st.st_mtim.tv_nsec;
	int rc = 0;
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		ino->rdev_major = major(st.st_rdev);
		ino->rdev_minor = minor(st.st_rdev);
	} else if (S_ISLNK(st.st_mode)) {
		char target[RF_PATH_MAX];
		ssize_t l = readlink(path, target, sizeof(target) - 1);
		if (l <= 0)
			rc = msb_err_sys(s->err, "reading the symlink %s", path);
		else if (!(ino->symlink = strndup(target, (size_t)l)))
			rc = msb_err_set(s->err, MSB_EK_SYSTEM, ENOMEM, "reading %s", path);
	} else if (S_ISREG(st.st_mode)) {
		uint64_t size = (uint64_t)st.st_size;
		if (size > s->t->limits.max_file_size ||
		    size > s->t->limits.max_total_bytes - s->t->data_bytes)
			rc = msb_err_set(s->err, MSB_EK_CORRUPT, 0,
					 "%s is over the size cap of the image", path);
		s->t->data_bytes += size; /* one thread here: no decoders run */
		ino->size = size;
		if (rc == 0 && !(ino->host_path = strdup(path)))
			rc = msb_err_set(s->err, MSB_EK_SYSTEM, ENOMEM, "reading %s", path);
	}
	if (rc == 0)
		rc = read_xattrs(s, path, ino);
	if (rc < 0) {
		rf_inode_free(ino);
		return -1;
	}
	if (rf_tree_add(s->t, s->comps, depth, ino, 1, s->err) < 0)
		return msb_err_wrap(s->err, "adding %s", path);
	if (S_ISDIR(st.st_mode))
		return scan_dir(s, path, depth);
	return 0;
}

static int scan_dir(struct scan *s, const char *path, size_t depth)
{
	DIR *d = opendir(path);
	if (!d)
		return msb_err_sys(s->err, "opening %s", path);
	int rc = 0;
	size_t plen = strlen(path);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				rc = msb_err_sys(s->err, "listing %s", path);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (depth + 1 >= MSB_ARRAY_SIZE(s->comps) ||
		    plen + strlen(de->d_name) + 2 > 65536) {
			rc = msb_err_set(s->err, MSB_EK_USAGE, 0, "%s is nested too deep", path);
			break;
		}
		size_t len = plen + strlen(de->d_name) + 2;
		char *child = malloc(len);
		if (!child) {
			rc = msb_err_set(s->err, MSB_EK_SYSTEM, ENOMEM, "listing %s", path);
			break;
		}
		snprintf(child, len, "%s/%s", path, de->d_name);
		s->comps[depth] = de->d_name;
		rc = scan_entry(s, child, depth + 1);
		free(child);
		if (rc < 0)
			break;
	}
	closedir(d);
	return rc;
}

int rf_dir_scan(struct rf_tree *t, const char *src, struct msb_err *err)
{
	struct stat st;
	if (stat(src, &st) < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM, errno,
				   "opening %s", src);
	if (!S_ISDIR(st.st_mode))
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s is not a directory", src);
	struct scan s = {.t = t, .keep_owner = geteuid() == 0, .err = err};
	/* The root directory's own metadata, then everything below it. */
	int rc = scan_entry(&s, src, 0);
	for (size_t i = 0; i < s.n_links; i++)
		free(s.links[i].rel);
	free(s.links);
	return rc;
}
