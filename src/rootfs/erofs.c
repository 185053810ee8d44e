/* Writing the merged tree as an EROFS image (uncompressed), without erofs-utils.
 *
 * Layout: block 0 holds the superblock at byte 1024; the metadata area starts right after
 * it (meta_blkaddr 0, so the first inode is at byte 1152, nid 36) and holds every inode as
 * a 64-byte extended inode (32-bit owners, nanosecond mtime), its inline xattrs and, when
 * short, the tail of its data (FLAT_INLINE); whole data blocks follow
 * the metadata area (FLAT_PLAIN or the head of FLAT_INLINE).  Directories are blocks of
 * 12-byte entries sorted by name, followed by the names, as the kernel's binary search
 * expects.  Holes of sparse files are not written: they stay holes of the image file (EROFS
 * chunk indexes would also keep them out of the file system's size; not done).  See
 * docs/rootfs.md.
 */
#include "rootfs/erofs.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

#define BLK	    4096u
#define SLOT	    32u	  /* nid granularity */
#define META_START  1152u /* superblock at 1024, 128 bytes */
#define INODE_SIZE  64u
#define DIRENT_SIZE 12u
#define EROFS_MAGIC 0xE0F5E1E2u
#define COPY_BUF    (1u << 20)
#define INLINE_MAX  512u /* the longest data tail kept inline after its inode */

enum { FLAT_PLAIN = 0, FLAT_INLINE = 2 };

/* Per distinct inode, what the layout decided. */
struct ei {
	uint64_t pos;	    /* byte offset of the inode */
	uint64_t size;	    /* i_size */
	uint32_t blkaddr;   /* first whole data block (0 when none) */
	uint32_t nblocks;   /* whole data blocks */
	uint32_t tail;	    /* bytes inline after the inode, 0 when none */
	uint32_t xattr_len; /* inline xattr body, 0 when none */
	uint8_t layout;
	const struct rf_node *node; /* the first name, which writes it */
};

struct ew {
	struct rf_tree *t;
	struct ei *ei; /* indexed by rf_inode.ino (1-based) */
	uint32_t n;
	int fd;
	char *buf;
	struct msb_err *err;
};

/* ---- directories ---------------------------------------------------------------------------- */

struct dent {
	const char *name;
	uint32_t ino; /* the tree inode number, mapped to a nid when written */
	uint8_t type;
};

static int dent_cmp(const void *a, const void *b)
{
	const struct dent *x = a, *y = b;
	return strcmp(x->name, y->name);
}

static uint8_t ftype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return 1;
	case S_IFDIR:
		return 2;
	case S_IFCHR:
		return 3;
	case S_IFBLK:
		return 4;
	case S_IFIFO:
		return 5;
	case S_IFSOCK:
		return 6;
	case S_IFLNK:
		return 7;
	}
	return 0;
}

/* The sorted entries of a directory, "." and ".." included; caller frees. */
static struct dent *dir_entries(const struct rf_node *n, size_t *count)
{
	size_t k = 2;
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		k++;
	struct dent *d = calloc(k, sizeof(*d));
	if (!d)
		return NULL;
	d[0] = (struct dent){".", n->inode->ino, 2};
	const struct rf_node *up = n->parent ? n->parent : n;
	d[1] = (struct dent){"..", up->inode->ino, 2};
	size_t i = 2;
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		d[i++] = (struct dent){c->name, c->inode->ino, ftype(c->inode->mode)};
	qsort(d, k, sizeof(*d), dent_cmp);
	*count = k;
	return d;
}

/* Bytes of directory data: full blocks, then the used part of the last one.  With `out`,
 * also writes them (out holds that many bytes, zeroed). */
static uint64_t dir_layout(const struct dent *d, size_t k, const struct ei *ei, char *out)
{
	uint64_t blk = 0, used = 0;
	size_t first = 0;
	while (first < k) {
		/* As many entries as fit in this block. */
		size_t last = first, names = 0;
		while (last < k &&
		       (last - first + 1) * DIRENT_SIZE + names + strlen(d[last].name) <= BLK) {
			names += strlen(d[last].name);
			last++;
		}
		size_t cnt = last - first;
		if (out) {
			char *b = out + blk * BLK;
			size_t nameoff = cnt * DIRENT_SIZE;
			for (size_t i = 0; i < cnt; i++) {
				const struct dent *e = &d[first + i];
				uint64_t nid = (ei[e->ino].pos - 0) / SLOT;
				uint64_t le_nid = htole64(nid);
				uint16_t le_off = htole16((uint16_t)nameoff);
				memcpy(b + i * DIRENT_SIZE, &le_nid, 8);
				memcpy(b + i * DIRENT_SIZE + 8, &le_off, 2);
				b[i * DIRENT_SIZE + 10] = (char)e->type;
				size_t nl = strlen(e->name);
				memcpy(b + nameoff, e->name, nl);
				nameoff += nl;
			}
		}
		used = cnt * DIRENT_SIZE + names;
		first = last;
		if (first < k)
			blk++;
	}
	return blk * BLK + used;
}

/* ---- layout -------------------------------------------------------------------------------------
 */

static size_t xattr_prefix(const char *name, uint8_t *index)
{
	static const struct {
		const char *prefix;
		uint8_t index;
	} map[] = {{"user.", 1},
		   {"system.posix_acl_access", 2},
		   {"system.posix_acl_default", 3},
		   {"trusted.", 4},
		   {"security.", 6}};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(map); i++) {
		size_t l = strlen(map[i].prefix);
		if (strncmp(name, map[i].prefix, l) == 0) {
			*index = map[i].index;
			return l;
		}
	}
	return (size_t)-1;
}

static uint32_t xattr_body_len(const struct rf_inode *ri)
{
	if (ri->n_xattrs == 0)
		return 0;
	uint32_t len = 12; /* the body header */
	for (size_t i = 0; i < ri->n_xattrs; i++) {
		uint8_t idx;
		size_t pl = xattr_prefix(ri->xattrs[i].name, &idx);
		if (pl == (size_t)-1)
			continue;
		len += (uint32_t)((4 + strlen(ri->xattrs[i].name) - pl + ri->xattrs[i].len + 3) &
				  ~3u);
	}
	return len == 12 ? 0 : len;
}

static uint64_t data_size(const struct rf_node *n, struct ew *w, int *err)
{
	const struct rf_inode *ri = n->inode;
	if (S_ISREG(ri->mode))
		return ri->size;
	if (S_ISLNK(ri->mode))
		return strlen(ri->symlink);
	if (S_ISDIR(ri->mode)) {
		size_t k;
		struct dent *d = dir_entries(n, &k);
		if (!d) {
			*err = msb_err_set(w->err, MSB_EK_SYSTEM, ENOMEM, "directory entries");
			return 0;
		}
		uint64_t s = dir_layout(d, k, w->ei, NULL);
		free(d);
		return s;
	}
	return 0;
}

/* Number the inodes (root first) and place their metadata. */
static int place(struct ew *w, const struct rf_node *n, uint32_t *next, uint64_t *pos)
{
	struct rf_inode *ri = n->inode;
	if (ri->ino == 0) {
		ri->ino = (*next)++;
		struct ei *e = &w->ei[ri->ino];
		e->node = n;
		int bad = 0;
		e->size = data_size(n, w, &bad);
		if (bad)
			return -1;
		e->xattr_len = xattr_body_len(ri);
		uint32_t meta = INODE_SIZE + e->xattr_len;
		if (meta > BLK)
			return msb_err_set(w->err, MSB_EK_CORRUPT, 0,
					   "the extended attributes of '%s' do not fit in a block",
					   n->name);
		uint32_t tail = (uint32_t)(e->size % BLK);
		/* Inline a short tail (it must fit in the inode's block).  Longer tails go to a
		 * data block: inlined they spread the inodes over many more blocks, and a walk
		 * over the tree (readdir + stat) then read 2-5x slower in the guest (measured,
		 * docs/rootfs.md). */
		e->layout =
			tail && tail <= INLINE_MAX && meta + tail <= BLK ? FLAT_INLINE : FLAT_PLAIN;
		e->tail = e->layout == FLAT_INLINE ? tail : 0;
		e->nblocks = (uint32_t)(e->layout == FLAT_INLINE ? e->size / BLK
								 : (e->size + BLK - 1) / BLK);
		uint32_t total = meta + e->tail;
		if (*pos % BLK + total > BLK) /* nothing of it may straddle a block boundary */
			*pos = (*pos + BLK - 1) / BLK * BLK;
		e->pos = *pos;
		*pos = (*pos + total + SLOT - 1) / SLOT * SLOT;
	}
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		if (place(w, c, next, pos) < 0)
			return -1;
	return 0;
}

static uint64_t count_inodes(const struct rf_node *n)
{
	uint64_t k = 1;
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		k += count_inodes(c);
	return k;
}

static void reset_inos(struct rf_node *n)
{
	n->inode->ino = 0;
	for (struct rf_node *c = n->first_child; c; c = c->next)
		reset_inos(c);
}

/* ---- writing
 * -------------------------------------------------------------------------------------- */

static int pwrite_all(struct ew *w, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t r = pwrite(w->fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return msb_err_sys(w->err, "writing the image");
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

/* Put file bytes [off, off+len) where they belong: whole blocks in the data area, the tail
 * (past `head`) inline after the inode. */
static int put_range(struct ew *w, const struct ei *e, uint64_t head, const char *buf, uint64_t off,
		     size_t len)
{
	uint64_t a = off, b = off + len;
	if (a < head) {
		uint64_t stop = b < head ? b : head;
		if (pwrite_all(w, buf, stop - a, (uint64_t)e->blkaddr * BLK + a) < 0)
			return -1;
	}
	if (b > head) {
		uint64_t from = a > head ? a : head;
		uint64_t tail_off = e->pos + INODE_SIZE + e->xattr_len;
		if (pwrite_all(w, buf + (from - a), b - from, tail_off + (from - head)) < 0)
			return -1;
	}
	return 0;
}

/* Copy a regular file's data from the spool or its host file.  Only bytes that exist are
 * written: holes of sparse files stay holes in the (sparse) image file and read as zeros. */
static int write_file(struct ew *w, const struct rf_inode *ri, const struct ei *e)
{
	uint64_t head = (uint64_t)e->nblocks * BLK;
	if (head > e->size)
		head = e->size; /* FLAT_PLAIN: the last block is partial */
	if (ri->host_path) {
		_cleanup_close_ int hfd = open(ri->host_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (hfd < 0)
			return msb_err_sys(w->err, "opening %s", ri->host_path);
		for (uint64_t at = 0; at < e->size;) {
			size_t want = e->size - at > COPY_BUF ? COPY_BUF : (size_t)(e->size - at);
			ssize_t r = pread(hfd, w->buf, want, (off_t)at);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return msb_err_sys(w->err, "reading %s", ri->host_path);
			if (r == 0)
				break; /* the file shrank since the scan: the rest reads as zeros */
			if (put_range(w, e, head, w->buf, at, (size_t)r) < 0)
				return -1;
			at += (uint64_t)r;
		}
		return 0;
	}
	for (size_t i = 0; i < ri->n_ext; i++) {
		const struct rf_extent *x = &ri->ext[i];
		for (uint64_t done = 0; done < x->len;) {
			size_t want = x->len - done > COPY_BUF ? COPY_BUF : (size_t)(x->len - done);
			ssize_t r = pread(ri->spool_fd, w->buf, want, (off_t)(x->spool_off + done));
			if (r <= 0)
				return msb_err_sys(w->err, "reading the spool");
			if (put_range(w, e, head, w->buf, x->off + done, (size_t)r) < 0)
				return -1;
			done += (uint64_t)r;
		}
	}
	return 0;
}

static int write_bytes(struct ew *w, const char *data, const struct ei *e)
{
	uint64_t head = (uint64_t)e->nblocks * BLK;
	if (head > e->size)
		head = e->size;
	if (head && pwrite_all(w, data, head, (uint64_t)e->blkaddr * BLK) < 0)
		return -1;
	if (e->size > head &&
	    pwrite_all(w, data + head, e->size - head, e->pos + INODE_SIZE + e->xattr_len) < 0)
		return -1;
	return 0;
}

static void put16(char *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}
static void put32(char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}
static void put64(char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static int write_inode(struct ew *w, const struct rf_node *n)
{
	const struct rf_inode *ri = n->inode;
	const struct ei *e = &w->ei[ri->ino];
	char meta[BLK];
	memset(meta, 0, sizeof(meta));
	put16(meta + 0, (uint16_t)(1 | (e->layout << 1))); /* extended inode, data layout */
	put16(meta + 2, (uint16_t)(e->xattr_len ? 1 + (e->xattr_len - 12) / 4 : 0));
	put16(meta + 4, (uint16_t)ri->mode);
	put64(meta + 8, e->size);
	if (S_ISCHR(ri->mode) || S_ISBLK(ri->mode)) {
		uint32_t ma = ri->rdev_major, mi = ri->rdev_minor;
		put32(meta + 16, (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12));
	} else {
		put32(meta + 16, e->nblocks ? e->blkaddr : 0);
	}
	put32(meta + 20, ri->ino);
	put32(meta + 24, ri->uid);
	put32(meta + 28, ri->gid);
	put64(meta + 32, (uint64_t)ri->mtime);
	put32(meta + 40, ri->mtime_nsec);
	uint32_t links = S_ISDIR(ri->mode) ? 2 : ri->nlink;
	if (S_ISDIR(ri->mode))
		for (const struct rf_node *c = n->first_child; c; c = c->next)
			links += S_ISDIR(c->inode->mode);
	put32(meta + 44, links);
	if (e->xattr_len) {
		char *x = meta + INODE_SIZE + 12; /* after the body header (all zero: no shared) */
		for (size_t i = 0; i < ri->n_xattrs; i++) {
			uint8_t idx;
			size_t pl = xattr_prefix(ri->xattrs[i].name, &idx);
			if (pl == (size_t)-1)
				continue;
			size_t nl = strlen(ri->xattrs[i].name) - pl;
			x[0] = (char)nl;
			x[1] = (char)idx;
			put16(x + 2, (uint16_t)ri->xattrs[i].len);
			memcpy(x + 4, ri->xattrs[i].name + pl, nl);
			memcpy(x + 4 + nl, ri->xattrs[i].value, ri->xattrs[i].len);
			x += (4 + nl + ri->xattrs[i].len + 3) & ~(size_t)3;
		}
	}
	if (pwrite_all(w, meta, INODE_SIZE + e->xattr_len, e->pos) < 0)
		return -1;
	if (S_ISREG(ri->mode))
		return write_file(w, ri, e);
	if (S_ISLNK(ri->mode))
		return write_bytes(w, ri->symlink, e);
	if (S_ISDIR(ri->mode)) {
		size_t k;
		_cleanup_free_ struct dent *d = dir_entries(n, &k);
		_cleanup_free_ char *blocks = calloc(1, (e->size + BLK - 1) / BLK * BLK + 1);
		if (!d || !blocks)
			return msb_err_set(w->err, MSB_EK_SYSTEM, ENOMEM, "directory blocks");
		dir_layout(d, k, w->ei, blocks);
		return write_bytes(w, blocks, e);
	}
	return 0;
}

static int write_tree(struct ew *w, const struct rf_node *n)
{
	const struct ei *e = &w->ei[n->inode->ino];
	if (e->node == n && write_inode(w, n) < 0)
		return msb_err_wrap(w->err, "writing '%s'", n->parent ? n->name : "/");
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		if (write_tree(w, c) < 0)
			return -1;
	return 0;
}

int rootfs_erofs_write(struct rf_tree *t, const char *path, struct msb_err *err)
{
	struct ew w = {.t = t, .fd = -1, .err = err};
	int ret = -1;
	uint64_t names = count_inodes(t->root);
	w.ei = calloc(names + 1, sizeof(*w.ei));
	w.buf = malloc(COPY_BUF);
	if (!w.ei || !w.buf) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "writing the image");
		goto out;
	}
	/* Two passes: numbers first (directory sizes need only names), then positions; a
	 * directory's size does not depend on where its children go. */
	reset_inos(t->root);
	uint32_t next = 1;
	uint64_t pos = META_START;
	if (place(&w, t->root, &next, &pos) < 0)
		goto out;
	w.n = next - 1;
	if (w.ei[t->root->inode->ino].pos / SLOT > 0xffff) {
		msb_err_set(err, MSB_EK_INTERNAL, 0, "the root inode is not in the first 2 MiB");
		goto out;
	}
	uint64_t blk = (pos + BLK - 1) / BLK;
	for (uint32_t i = 1; i <= w.n; i++) {
		w.ei[i].blkaddr = w.ei[i].nblocks ? (uint32_t)blk : 0;
		blk += w.ei[i].nblocks;
		if (blk > UINT32_MAX) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "the image is larger than EROFS allows");
			goto out;
		}
	}
	w.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w.fd < 0) {
		msb_err_sys(err, "creating %s", path);
		goto out;
	}
	if (fchmod(w.fd, 0644) < 0 || ftruncate(w.fd, (off_t)(blk * BLK)) < 0) {
		msb_err_sys(err, "sizing %s", path);
		goto out;
	}
	char sb[128];
	memset(sb, 0, sizeof(sb));
	put32(sb + 0, EROFS_MAGIC);
	sb[12] = 12; /* blkszbits */
	put16(sb + 14, (uint16_t)(w.ei[t->root->inode->ino].pos / SLOT));
	put64(sb + 16, w.n);
	put32(sb + 36, (uint32_t)blk);
	static const uint8_t uuid[16] = {0x6d, 0x73, 0x62, 0x2d, 0x72, 0x6f, 0x6f, 0x74,
					 0x66, 0x73, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03};
	memcpy(sb + 48, uuid, 16);
	if (pwrite_all(&w, sb, sizeof(sb), 1024) < 0 || write_tree(&w, t->root) < 0)
		goto out;
	ret = 0;
out:
	if (w.fd >= 0 && close(w.fd) < 0 && ret == 0)
		ret = msb_err_sys(err, "closing %s", path);
	free(w.ei);
	free(w.buf);
	return ret;
}
