/* Writing the merged tree as an ext4 image with libext2fs.
 *
 * mke2fs makes an empty file system of a size estimated from the tree; then every inode is
 * written directly: owners, modes, times, xattrs and device numbers come from the tree, not
 * from files on the host, so no privilege is needed.  Directories are written as whole
 * blocks of entries (not one ext2fs_link() per name, which rescans the directory each
 * time).  See docs/rootfs.md for the feature set and why.
 */
#include "rootfs/ext4.h"

#include <errno.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

#define BLOCK_SIZE 4096u
#define INODE_SIZE 256u
#define COPY_BUF   (1u << 20)

extern char **environ;

struct writer {
	ext2_filsys fs;
	struct rf_tree *t;
	char *buf;	  /* COPY_BUF bytes for file data */
	uint8_t *written; /* one byte per inode number: already on disk */
	ext2_ino_t next_ino, max_ino;
	struct msb_err *err;
};

static int e2err(struct msb_err *err, errcode_t rc, const char *what)
{
	int kind = rc == EXT2_ET_BLOCK_ALLOC_FAIL || rc == EXT2_ET_INODE_ALLOC_FAIL ||
				   rc == EXT2_ET_DIR_NO_SPACE
			   ? MSB_EK_INTERNAL
			   : MSB_EK_SYSTEM;
	return msb_err_set(err, kind, 0, "%s: %s", what, error_message(rc));
}

/* ---- sizing -------------------------------------------------------------------------- */

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static uint64_t dirent_len(size_t name_len)
{
	return (8 + name_len + 3) & ~3ULL;
}

/* Assign inode numbers (the root keeps 2) and count what the image needs. */
static void plan(struct rf_node *n, ext2_ino_t *next, struct rootfs_ext4_plan *p)
{
	struct rf_inode *ri = n->inode;
	bool fresh = ri->ino == 0;
	if (fresh) {
		ri->ino = n->parent ? (*next)++ : EXT2_ROOT_INO;
		ri->n_subdirs = 0;
		p->inodes++;
		if (S_ISREG(ri->mode)) {
			if (ri->host_path)
				p->blocks += div_up(ri->size, BLOCK_SIZE);
			for (size_t i = 0; i < ri->n_ext; i++)
				p->blocks += div_up(ri->ext[i].len, BLOCK_SIZE) + 1;
			p->blocks += ri->n_ext / 256 + 1; /* extent tree blocks */
		} else if (S_ISLNK(ri->mode) && strlen(ri->symlink) >= 60) {
			p->blocks++;
		}
		size_t xbytes = 0;
		for (size_t i = 0; i < ri->n_xattrs; i++)
			xbytes += ri->xattrs[i].len + strlen(ri->xattrs[i].name) + 24;
		if (xbytes > 80)
			p->blocks += div_up(xbytes, BLOCK_SIZE);
	}
	if (S_ISDIR(ri->mode)) {
		uint64_t bytes = dirent_len(1) + dirent_len(2);
		for (struct rf_node *c = n->first_child; c; c = c->next) {
			bytes += dirent_len(strlen(c->name));
			plan(c, next, p);
			if (S_ISDIR(c->inode->mode))
				ri->n_subdirs++;
		}
		p->blocks += div_up(bytes, BLOCK_SIZE - 256) + 1;
	}
}

void rootfs_ext4_plan(struct rf_tree *t, struct rootfs_ext4_plan *p)
{
	memset(p, 0, sizeof(*p));
	ext2_ino_t next = EXT2_GOOD_OLD_FIRST_INO;
	plan(t->root, &next, p);
	/* Inode tables, bitmaps and group descriptors, then slack for the estimate's errors. */
	uint64_t meta = div_up(p->inodes * INODE_SIZE, BLOCK_SIZE) + 2 * div_up(p->blocks, 32768);
	p->fs_blocks = p->blocks + meta + p->blocks / 32 + 1024;
	p->fs_inodes = p->inodes + EXT2_GOOD_OLD_FIRST_INO + 16;
}

static void reset_inos(struct rf_node *n)
{
	n->inode->ino = 0;
	for (struct rf_node *c = n->first_child; c; c = c->next)
		reset_inos(c);
}

/* ---- mke2fs ---------------------------------------------------------------------------- */

static int run_mke2fs(const char *path, uint64_t blocks, uint64_t inodes, struct msb_err *err)
{
	char nblocks[32], ninodes[32];
	snprintf(nblocks, sizeof(nblocks), "%llu", (unsigned long long)blocks);
	snprintf(ninodes, sizeof(ninodes), "%llu", (unsigned long long)inodes);
	/* A fixed feature list and fixed UUID/hash seed: the same tree gives the same image
	 * on any host, whatever its /etc/mke2fs.conf says.  No journal (read-only), no
	 * metadata_csum (the guest reads it once; checksums cost build time). */
	char *argv[] = {
		"mke2fs",
		"-q",
		"-F",
		"-t",
		"ext4",
		"-b",
		"4096",
		"-I",
		"256",
		"-N",
		ninodes,
		"-m",
		"0",
		"-O",
		"none,ext_attr,dir_index,filetype,extent,flex_bg,sparse_super,large_file,huge_file,"
		"dir_nlink,extra_isize,64bit",
		"-E",
		"lazy_itable_init=1,nodiscard,root_owner=0:0,"
		"hash_seed=6d73622d-726f-6f74-6673-000000000002",
		"-U",
		"6d73622d-726f-6f74-6673-000000000001",
		(char *)path,
		nblocks,
		NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	pid_t pid;
	/* mke2fs lives in /sbin, which an unprivileged PATH may lack. */
	int rc = posix_spawn(&pid, "/sbin/mke2fs", &fa, NULL, argv, environ);
	if (rc == ENOENT)
		rc = posix_spawnp(&pid, "mke2fs", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return msb_err_set(err, MSB_EK_SYSTEM, rc, "running mke2fs (install e2fsprogs)");
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return msb_err_sys(err, "waiting for mke2fs");
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "mke2fs failed on %s (status 0x%x)", path,
				   (unsigned)status);
	return 0;
}

/* ---- inodes -------------------------------------------------------------------------------- */

static void set_times(struct ext2_inode_large *li, int64_t sec, uint32_t nsec)
{
	/* Seconds beyond 32 bits go to the two epoch bits of the *_extra fields. */
	uint32_t lo = (uint32_t)sec;
	uint32_t epoch = (uint32_t)(((sec - (int64_t)(int32_t)lo) >> 32) & 3);
	uint32_t extra = (nsec << 2) | epoch;
	li->i_atime = li->i_ctime = li->i_mtime = li->i_crtime = lo;
	li->i_atime_extra = li->i_ctime_extra = li->i_mtime_extra = li->i_crtime_extra = extra;
}

static int write_data(struct writer *w, ext2_ino_t ino, const struct rf_inode *ri, const void *mem,
		      size_t memlen)
{
	ext2_file_t f;
	errcode_t rc = ext2fs_file_open(w->fs, ino, EXT2_FILE_WRITE, &f);
	if (rc)
		return e2err(w->err, rc, "opening an image file");
	int ret = 0;
	unsigned int wrote;
	if (mem) {
		rc = ext2fs_file_write(f, mem, (unsigned int)memlen, &wrote);
		if (rc || wrote != memlen) {
			ret = e2err(w->err, rc ? rc : EXT2_ET_SHORT_WRITE, "writing the image");
			goto out;
		}
		rc = ext2fs_file_set_size2(f, memlen);
	} else if (ri->host_path) {
		_cleanup_close_ int fd = open(ri->host_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			ret = msb_err_sys(w->err, "opening %s", ri->host_path);
			goto out;
		}
		uint64_t total = 0;
		for (;;) {
			ssize_t r = read(fd, w->buf, COPY_BUF);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				ret = msb_err_sys(w->err, "reading %s", ri->host_path);
				goto out;
			}
			if (r == 0 || total + (uint64_t)r > ri->size)
				break; /* a file that grows while we copy keeps its scanned size */
			rc = ext2fs_file_write(f, w->buf, (unsigned int)r, &wrote);
			if (rc || wrote != (unsigned int)r) {
				ret = e2err(w->err, rc ? rc : EXT2_ET_SHORT_WRITE,
					    "writing the image");
				goto out;
			}
			total += (uint64_t)r;
		}
		rc = ext2fs_file_set_size2(f, ri->size);
	} else {
		for (size_t i = 0; i < ri->n_ext; i++) {
			const struct rf_extent *e = &ri->ext[i];
			rc = ext2fs_file_llseek(f, e->off, EXT2_SEEK_SET, NULL);
			for (uint64_t done = 0; !rc && done < e->len;) {
				size_t want = e->len - done > COPY_BUF ? COPY_BUF : e->len - done;
				ssize_t r = pread(ri->spool_fd, w->buf, want,
						  (off_t)(e->spool_off + done));
				if (r <= 0) {
					ret = msb_err_sys(w->err, "reading the spool");
					goto out;
				}
				rc = ext2fs_file_write(f, w->buf, (unsigned int)r, &wrote);
				if (!rc && wrote != (unsigned int)r)
					rc = EXT2_ET_SHORT_WRITE;
				done += (uint64_t)r;
			}
			if (rc)
				break;
		}
		if (!rc)
			rc = ext2fs_file_set_size2(f, ri->size);
	}
	if (rc)
		ret = e2err(w->err, rc, "writing the image");
out:
	rc = ext2fs_file_close(f);
	if (rc && !ret)
		ret = e2err(w->err, rc, "writing the image");
	return ret;
}

static int write_xattrs(struct writer *w, ext2_ino_t ino, const struct rf_inode *ri)
{
	if (ri->n_xattrs == 0)
		return 0;
	struct ext2_xattr_handle *h;
	errcode_t rc = ext2fs_xattrs_open(w->fs, ino, &h);
	if (!rc)
		rc = ext2fs_xattrs_read(h);
	for (size_t i = 0; !rc && i < ri->n_xattrs; i++)
		rc = ext2fs_xattr_set(h, ri->xattrs[i].name, ri->xattrs[i].value,
				      ri->xattrs[i].len);
	if (h) {
		errcode_t rc2 = ext2fs_xattrs_close(&h);
		if (!rc)
			rc = rc2;
	}
	if (rc)
		return msb_err_set(w->err, MSB_EK_CORRUPT, 0,
				   "extended attributes of inode %u (%zu of them): %s", ino,
				   ri->n_xattrs, error_message(rc));
	return 0;
}

static uint8_t ftype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return EXT2_FT_REG_FILE;
	case S_IFDIR:
		return EXT2_FT_DIR;
	case S_IFCHR:
		return EXT2_FT_CHRDEV;
	case S_IFBLK:
		return EXT2_FT_BLKDEV;
	case S_IFIFO:
		return EXT2_FT_FIFO;
	case S_IFSOCK:
		return EXT2_FT_SOCK;
	case S_IFLNK:
		return EXT2_FT_SYMLINK;
	}
	return EXT2_FT_UNKNOWN;
}

/* The directory's blocks: ".", "..", then the children; an entry never straddles blocks,
 * the last one of a block stretches to its end.  Caller frees *out. */
static int dir_blocks(struct writer *w, const struct rf_node *n, char **out, size_t *outlen)
{
	size_t cap = BLOCK_SIZE, len = 0, blk_start = 0;
	char *buf = calloc(1, cap);
	if (!buf)
		return msb_err_set(w->err, MSB_EK_SYSTEM, ENOMEM, "directory blocks");
	struct ext2_dir_entry_2 *last = NULL;
	ext2_ino_t parent = n->parent ? n->parent->inode->ino : n->inode->ino;
	const struct rf_node *c = n->first_child;
	for (int i = 0;; i++) {
		const char *name;
		ext2_ino_t ino;
		uint8_t ft;
		if (i == 0) {
			name = ".", ino = n->inode->ino, ft = EXT2_FT_DIR;
		} else if (i == 1) {
			name = "..", ino = parent, ft = EXT2_FT_DIR;
		} else if (c) {
			name = c->name, ino = c->inode->ino, ft = ftype(c->inode->mode);
			c = c->next;
		} else {
			break;
		}
		size_t nl = strlen(name), rl = dirent_len(nl);
		if (len + rl > blk_start + BLOCK_SIZE) {
			last->rec_len = (uint16_t)(blk_start + BLOCK_SIZE - ((char *)last - buf));
			blk_start += BLOCK_SIZE;
			len = blk_start;
			if (blk_start + BLOCK_SIZE > cap) {
				char *nb = realloc(buf, cap * 2);
				if (!nb) {
					free(buf);
					return msb_err_set(w->err, MSB_EK_SYSTEM, ENOMEM,
							   "directory blocks");
				}
				memset(nb + cap, 0, cap);
				buf = nb;
				cap *= 2;
			}
		}
		struct ext2_dir_entry_2 *d = (struct ext2_dir_entry_2 *)(buf + len);
		d->inode = ino;
		d->rec_len = (uint16_t)rl;
		d->name_len = (uint8_t)nl;
		d->file_type = ft;
		memcpy(d->name, name, nl);
		last = d;
		len += rl;
	}
	last->rec_len = (uint16_t)(blk_start + BLOCK_SIZE - ((char *)last - buf));
	*out = buf;
	*outlen = blk_start + BLOCK_SIZE;
	return 0;
}

static int write_inode(struct writer *w, const struct rf_node *n)
{
	const struct rf_inode *ri = n->inode;
	ext2_ino_t ino = ri->ino;
	struct ext2_inode_large li;
	memset(&li, 0, sizeof(li));
	li.i_mode = (uint16_t)ri->mode;
	li.i_uid = (uint16_t)ri->uid;
	ext2fs_set_i_uid_high(li, ri->uid >> 16);
	li.i_gid = (uint16_t)ri->gid;
	ext2fs_set_i_gid_high(li, ri->gid >> 16);
	li.i_extra_isize = (uint16_t)(sizeof(li) - EXT2_GOOD_OLD_INODE_SIZE);
	if (w->fs->super->s_want_extra_isize && w->fs->super->s_want_extra_isize < li.i_extra_isize)
		li.i_extra_isize = w->fs->super->s_want_extra_isize;
	set_times(&li, ri->mtime, ri->mtime_nsec);
	uint32_t links = S_ISDIR(ri->mode) ? 2 + ri->n_subdirs : ri->nlink;
	li.i_links_count = (uint16_t)(links >= EXT2_LINK_MAX ? 1 : links); /* dir_nlink */

	bool has_data = S_ISREG(ri->mode) || S_ISDIR(ri->mode) ||
			(S_ISLNK(ri->mode) && strlen(ri->symlink) >= sizeof(li.i_block));
	if (S_ISLNK(ri->mode) && !has_data) {
		/* A fast symlink: the target lives in i_block. */
		size_t len = strlen(ri->symlink);
		memcpy(li.i_block, ri->symlink, len);
		li.i_size = (uint32_t)len;
	} else if (S_ISCHR(ri->mode) || S_ISBLK(ri->mode)) {
		uint32_t ma = ri->rdev_major, mi = ri->rdev_minor;
		if (ma < 256 && mi < 256) {
			li.i_block[0] = ma * 256 + mi;
		} else {
			li.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
		}
	}
	if (has_data) {
		li.i_flags |= EXT4_EXTENTS_FL;
		ext2_extent_handle_t eh;
		errcode_t rc = ext2fs_extent_open2(w->fs, ino, (struct ext2_inode *)&li, &eh);
		if (rc)
			return e2err(w->err, rc, "starting an extent tree");
		ext2fs_extent_free(eh);
	}
	errcode_t rc = ext2fs_write_inode_full(w->fs, ino, (struct ext2_inode *)&li, sizeof(li));
	if (rc)
		return e2err(w->err, rc, "writing an inode");
	if (n->parent) /* the root's inode is counted in use already */
		ext2fs_inode_alloc_stats2(w->fs, ino, +1, S_ISDIR(ri->mode));

	if (S_ISDIR(ri->mode)) {
		_cleanup_free_ char *blocks = NULL;
		size_t len = 0;
		if (dir_blocks(w, n, &blocks, &len) < 0 || write_data(w, ino, ri, blocks, len) < 0)
			return -1;
	} else if (S_ISLNK(ri->mode) && has_data) {
		if (write_data(w, ino, ri, ri->symlink, strlen(ri->symlink)) < 0)
			return -1;
	} else if (S_ISREG(ri->mode)) {
		if (write_data(w, ino, ri, NULL, 0) < 0)
			return -1;
	}
	return write_xattrs(w, ino, ri);
}

static int write_tree(struct writer *w, const struct rf_node *n)
{
	ext2_ino_t ino = n->inode->ino;
	if (!w->written[ino]) {
		w->written[ino] = 1;
		if (write_inode(w, n) < 0)
			return msb_err_wrap(w->err, "writing '%s'", n->parent ? n->name : "/");
	}
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		if (write_tree(w, c) < 0)
			return -1;
	return 0;
}

/* mke2fs made /lost+found; an image from layers has none unless a layer brings one. */
static int drop_lost_found(ext2_filsys fs, struct msb_err *err)
{
	ext2_ino_t ino;
	if (ext2fs_lookup(fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &ino) != 0)
		return 0;
	errcode_t rc = ext2fs_punch(fs, ino, NULL, NULL, 0, ~0ULL);
	if (!rc) {
		struct ext2_inode_large li;
		memset(&li, 0, sizeof(li));
		rc = ext2fs_write_inode_full(fs, ino, (struct ext2_inode *)&li, sizeof(li));
	}
	if (rc)
		return e2err(err, rc, "removing lost+found");
	ext2fs_inode_alloc_stats2(fs, ino, -1, 1);
	/* The root is rewritten from scratch later; free its blocks now. */
	rc = ext2fs_punch(fs, EXT2_ROOT_INO, NULL, NULL, 0, ~0ULL);
	if (rc)
		return e2err(err, rc, "clearing the root directory");
	return 0;
}

static int populate(const char *path, struct rf_tree *t, const struct rootfs_ext4_plan *p,
		    struct msb_err *err)
{
	ext2_filsys fs;
	errcode_t rc =
		ext2fs_open(path, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
	if (rc)
		return e2err(err, rc, "opening the new image");
	struct writer w = {.fs = fs, .t = t, .err = err};
	int ret = -1;
	rc = ext2fs_read_bitmaps(fs);
	if (rc) {
		e2err(err, rc, "reading the new image's bitmaps");
		goto out;
	}
	if (fs->super->s_inodes_count < p->fs_inodes - 16) {
		msb_err_set(err, MSB_EK_INTERNAL, 0, "mke2fs made %u inodes, %llu needed",
			    fs->super->s_inodes_count, (unsigned long long)p->fs_inodes);
		goto out;
	}
	w.buf = malloc(COPY_BUF);
	w.written = calloc((size_t)fs->super->s_inodes_count + 1, 1);
	if (!w.buf || !w.written) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "writing the image");
		goto out;
	}
	if (drop_lost_found(fs, err) < 0 || write_tree(&w, t->root) < 0)
		goto out;
	ret = 0;
out:
	free(w.buf);
	free(w.written);
	if (ret == 0) {
		rc = ext2fs_close_free(&fs);
		if (rc)
			ret = e2err(err, rc, "finishing the image");
	} else {
		ext2fs_free(fs);
	}
	return ret;
}

int rootfs_ext4_write(struct rf_tree *t, const char *path, struct msb_err *err)
{
	struct rootfs_ext4_plan p;
	reset_inos(t->root);
	rootfs_ext4_plan(t, &p);
	/* The estimate is generous; if a corner of the format still runs out of room,
	 * try again with twice the space rather than fail the pull. */
	for (int attempt = 0;; attempt++) {
		if (unlink(path) < 0 && errno != ENOENT)
			return msb_err_sys(err, "removing %s", path);
		if (run_mke2fs(path, p.fs_blocks, p.fs_inodes, err) < 0)
			return -1;
		if (populate(path, t, &p, err) == 0)
			return 0;
		if (err->kind != MSB_EK_INTERNAL || attempt == 2)
			return -1;
		p.fs_blocks *= 2;
		p.fs_inodes *= 2;
	}
}
