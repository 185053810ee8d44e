/* virtio-fs server: the FUSE operations, each on the host directory tree
 * below the volume's root (see fs.h for how they stay inside it). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "virtio/fs_int.h"

/* An argument struct copied out of the request (they are not aligned). */
#define GET_ARG(c, var)                                \
	do {                                           \
		if ((c)->arg_len < sizeof(var))        \
			return -EINVAL;                \
		memcpy(&(var), (c)->arg, sizeof(var)); \
	} while (0)

static int err(void)
{
	return -(errno ? errno : EIO);
}

/* "/proc/self/fd/N": reopens the inode held by an O_PATH descriptor itself,
 * with no path walk (only used on regular files and directories). */
static void proc_path(char *buf, size_t cap, int fd)
{
	snprintf(buf, cap, "/proc/self/fd/%d", fd);
}

static int stat_fd(int fd, struct stat *st)
{
	return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? err() : 0;
}

static struct fs_inode *node(struct fs_call *c)
{
	return fs_inode_get(c->s, c->h.nodeid);
}

/* Look `name` up in directory `dir` and answer a fuse_entry_out (the caller
 * reserved it at `e`): one more lookup of the inode. */
static int lookup_into(struct fs_call *c, int dir, const char *name, struct fuse_entry_out *e)
{
	int fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err();
	struct stat st;
	int r = stat_fd(fd, &st);
	if (r < 0) {
		close(fd);
		return r;
	}
	int64_t id = fs_inode_add(c->s, fd, &st);
	if (id < 0)
		return (int)id;
	e->nodeid = (uint64_t)id;
	e->generation = 0;
	/* No caching: the host may change the volume at any time. */
	e->entry_valid = 0;
	e->attr_valid = 0;
	fs_fill_attr(c->s, &e->attr, &st);
	return 0;
}

static int entry_reply(struct fs_call *c, int dir, const char *name)
{
	struct fuse_entry_out *e = fs_reply(c, sizeof(*e));
	if (!e)
		return -ERANGE;
	return lookup_into(c, dir, name, e);
}

static int op_lookup(struct fs_call *c)
{
	struct fs_inode *d = node(c);
	if (!d)
		return -ESTALE;
	int n = fs_check_name(c->arg, c->arg_len);
	if (n < 0)
		return n;
	return entry_reply(c, d->fd, (const char *)c->arg);
}

static int op_forget(struct fs_call *c)
{
	struct fuse_forget_in in;
	GET_ARG(c, in);
	fs_inode_forget(c->s, c->h.nodeid, in.nlookup);
	return FS_NO_REPLY;
}

static int op_batch_forget(struct fs_call *c)
{
	struct fuse_batch_forget_in in;
	GET_ARG(c, in);
	size_t room = (c->arg_len - sizeof(in)) / sizeof(struct fuse_forget_one);
	if (in.count < room)
		room = in.count;
	for (size_t i = 0; i < room; i++) {
		struct fuse_forget_one one;
		memcpy(&one, c->arg + sizeof(in) + i * sizeof(one), sizeof(one));
		fs_inode_forget(c->s, one.nodeid, one.nlookup);
	}
	return FS_NO_REPLY;
}

static int attr_reply(struct fs_call *c, int fd)
{
	struct stat st;
	int r = stat_fd(fd, &st);
	if (r < 0)
		return r;
	struct fuse_attr_out *o = fs_reply(c, sizeof(*o));
	if (!o)
		return -ERANGE;
	fs_fill_attr(c->s, &o->attr, &st);
	return 0;
}

static int op_getattr(struct fs_call *c)
{
	struct fs_inode *n = node(c);
	return n ? attr_reply(c, n->fd) : -ESTALE;
}

static struct timespec set_time(uint32_t valid, uint32_t set, uint32_t now, uint64_t sec,
				uint32_t nsec)
{
	if (valid & now)
		return (struct timespec){.tv_nsec = UTIME_NOW};
	if (valid & set)
		return (struct timespec){.tv_sec = (time_t)sec, .tv_nsec = nsec % 1000000000u};
	return (struct timespec){.tv_nsec = UTIME_OMIT};
}

static int op_setattr(struct fs_call *c)
{
	struct fuse_setattr_in in;
	GET_ARG(c, in);
	struct fs_inode *n = node(c);
	if (!n)
		return -ESTALE;
	if (c->s->readonly)
		return -EROFS;
	struct stat st;
	int r = stat_fd(n->fd, &st);
	if (r < 0)
		return r;
	bool plain = S_ISREG(st.st_mode) || S_ISDIR(st.st_mode);
	char p[64];
	proc_path(p, sizeof(p), n->fd);
	if (in.valid & FATTR_MODE) {
		if (!plain)
			return -EOPNOTSUPP;
		if (fchmodat(AT_FDCWD, p, in.mode & 07777, 0) < 0)
			return err();
	}
	if (in.valid & (FATTR_UID | FATTR_GID)) {
		uid_t u =
			(in.valid & FATTR_UID) ? fs_id_to_host(c->s->owner_uid, in.uid) : (uid_t)-1;
		gid_t g =
			(in.valid & FATTR_GID) ? fs_id_to_host(c->s->owner_gid, in.gid) : (gid_t)-1;
		if (fchownat(n->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return err();
	}
	if (in.valid & FATTR_SIZE) {
		if (!S_ISREG(st.st_mode))
			return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		if (in.size > (uint64_t)INT64_MAX)
			return -EFBIG;
		struct fs_file *f = (in.valid & FATTR_FH) ? fs_file_get(c->s, in.fh, false) : NULL;
		int fd = f ? f->fd : open(p, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return err();
		int tr = ftruncate(fd, (off_t)in.size);
		int e = errno;
		if (!f)
			close(fd);
		if (tr < 0)
			return -e;
	}
	if (in.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
		if (!plain)
			return -EOPNOTSUPP;
		struct timespec ts[2] = {
			set_time(in.valid, FATTR_ATIME, FATTR_ATIME_NOW, in.atime, in.atimensec),
			set_time(in.valid, FATTR_MTIME, FATTR_MTIME_NOW, in.mtime, in.mtimensec),
		};
		if (utimensat(AT_FDCWD, p, ts, 0) < 0)
			return err();
	}
	return attr_reply(c, n->fd);
}

static int op_readlink(struct fs_call *c)
{
	struct fs_inode *n = node(c);
	if (!n)
		return -ESTALE;
	char buf[PATH_MAX];
	ssize_t k = readlinkat(n->fd, "", buf, sizeof(buf));
	if (k < 0)
		return err();
	void *o = fs_reply(c, (size_t)k);
	if (!o)
		return -ERANGE;
	memcpy(o, buf, (size_t)k);
	return 0;
}

/* A directory and a checked name from the arguments after `skip` bytes. */
static int dir_and_name(struct fs_call *c, size_t skip, struct fs_inode **d, const char **name)
{
	if (c->arg_len < skip)
		return -EINVAL;
	*d = node(c);
	if (!*d)
		return -ESTALE;
	int n = fs_check_name(c->arg + skip, c->arg_len - skip);
	if (n < 0)
		return n;
	*name = (const char *)c->arg + skip;
	return n;
}

static int op_symlink(struct fs_call *c)
{
	struct fs_inode *d;
	const char *name;
	int n = dir_and_name(c, 0, &d, &name);
	if (n < 0)
		return n;
	/* The target is text the server stores and never follows. */
	const uint8_t *target = c->arg + n;
	size_t left = c->arg_len - (size_t)n;
	if (!left || !memchr(target, 0, left))
		return -EINVAL;
	if (c->s->readonly)
		return -EROFS;
	if (symlinkat((const char *)target, d->fd, name) < 0)
		return err();
	return entry_reply(c, d->fd, name);
}

static int op_mkdir(struct fs_call *c)
{
	struct fuse_mkdir_in in;
	GET_ARG(c, in);
	struct fs_inode *d;
	const char *name;
	int n = dir_and_name(c, sizeof(in), &d, &name);
	if (n < 0)
		return n;
	if (c->s->readonly)
		return -EROFS;
	if (mkdirat(d->fd, name, in.mode & 07777) < 0)
		return err();
	return entry_reply(c, d->fd, name);
}

static int remove_entry(struct fs_call *c, int flags)
{
	struct fs_inode *d;
	const char *name;
	int n = dir_and_name(c, 0, &d, &name);
	if (n < 0)
		return n;
	if (c->s->readonly)
		return -EROFS;
	return unlinkat(d->fd, name, flags) < 0 ? err() : 0;
}

static int op_unlink(struct fs_call *c)
{
	return remove_entry(c, 0);
}

static int op_rmdir(struct fs_call *c)
{
	return remove_entry(c, AT_REMOVEDIR);
}

static int do_rename(struct fs_call *c, size_t skip, uint64_t newdir, uint32_t flags)
{
	struct fs_inode *d;
	const char *oldname;
	int n = dir_and_name(c, skip, &d, &oldname);
	if (n < 0)
		return n;
	size_t off = skip + (size_t)n;
	int m = fs_check_name(c->arg + off, c->arg_len - off);
	if (m < 0)
		return m;
	struct fs_inode *nd = fs_inode_get(c->s, newdir);
	if (!nd)
		return -ESTALE;
	if (c->s->readonly)
		return -EROFS;
	if (renameat2(d->fd, oldname, nd->fd, (const char *)c->arg + off, flags) < 0)
		return err();
	return 0;
}

static int op_rename(struct fs_call *c)
{
	struct fuse_rename_in in;
	GET_ARG(c, in);
	return do_rename(c, sizeof(in), in.newdir, 0);
}

static int op_rename2(struct fs_call *c)
{
	struct fuse_rename2_in in;
	GET_ARG(c, in);
	/* RENAME_WHITEOUT would make a device node: not for a guest. */
	if (in.flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	return do_rename(c, sizeof(in), in.newdir, in.flags);
}

/* The guest's open flags, reduced to what a host open may carry. */
static int host_flags(uint32_t f)
{
	return (int)(f & (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC | O_NONBLOCK)) |
	       O_CLOEXEC | O_NOCTTY;
}

static bool writes(uint32_t f)
{
	return (f & O_ACCMODE) != O_RDONLY || (f & (O_TRUNC | O_APPEND));
}

static int open_reply(struct fs_call *c, int fd, bool dir)
{
	int64_t fh = fs_file_add(c->s, fd, dir);
	if (fh < 0)
		return (int)fh;
	struct fuse_open_out *o = fs_reply(c, sizeof(*o));
	if (!o) {
		fs_file_close(c->s, (uint64_t)fh);
		return -ERANGE;
	}
	o->fh = (uint64_t)fh;
	return 0;
}

static int open_node(struct fs_call *c, bool dir)
{
	struct fuse_open_in in;
	GET_ARG(c, in);
	struct fs_inode *n = node(c);
	if (!n)
		return -ESTALE;
	struct stat st;
	int r = stat_fd(n->fd, &st);
	if (r < 0)
		return r;
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return dir ? -ENOTDIR : (S_ISDIR(st.st_mode) ? -EISDIR : -EACCES);
	uint32_t flags = dir ? O_RDONLY : in.flags;
	if (c->s->readonly && writes(flags))
		return -EROFS;
	char p[64];
	proc_path(p, sizeof(p), n->fd);
	/* Not O_NOFOLLOW: the /proc entry is itself a link, to this inode. */
	int fd = open(p, host_flags(flags) | (dir ? O_DIRECTORY : 0));
	if (fd < 0)
		return err();
	return open_reply(c, fd, dir);
}

static int op_open(struct fs_call *c)
{
	return open_node(c, false);
}

static int op_opendir(struct fs_call *c)
{
	return open_node(c, true);
}

static int op_create(struct fs_call *c)
{
	struct fuse_create_in in;
	GET_ARG(c, in);
	struct fs_inode *d;
	const char *name;
	int n = dir_and_name(c, sizeof(in), &d, &name);
	if (n < 0)
		return n;
	if (c->s->readonly)
		return -EROFS;
	int fd = openat(d->fd, name,
			host_flags(in.flags) | O_CREAT | O_NOFOLLOW | (int)(in.flags & O_EXCL),
			in.mode & 07777);
	if (fd < 0)
		return err();
	struct fuse_entry_out *e = fs_reply(c, sizeof(*e));
	if (!e) {
		close(fd);
		return -ERANGE;
	}
	int r = lookup_into(c, d->fd, name, e);
	if (r < 0) {
		close(fd);
		return r;
	}
	r = open_reply(c, fd, false);
	if (r < 0)
		fs_inode_forget(c->s, e->nodeid, 1);
	return r;
}

static int op_read(struct fs_call *c)
{
	struct fuse_read_in in;
	GET_ARG(c, in);
	struct fs_file *f = fs_file_get(c->s, in.fh, false);
	if (!f)
		return -EBADF;
	if (in.offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	size_t want = in.size;
	if (want > FS_MAX_WRITE)
		want = FS_MAX_WRITE;
	if (want > c->out_cap)
		want = c->out_cap;
	ssize_t k;
	do
		k = pread(f->fd, c->out, want, (off_t)in.offset);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return err();
	c->out_len = (size_t)k;
	return 0;
}

static int op_write(struct fs_call *c)
{
	struct fuse_write_in in;
	GET_ARG(c, in);
	struct fs_file *f = fs_file_get(c->s, in.fh, false);
	if (!f)
		return -EBADF;
	if (c->s->readonly)
		return -EROFS;
	if (in.size > c->arg_len - sizeof(in) || in.offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	ssize_t k;
	do
		k = pwrite(f->fd, c->arg + sizeof(in), in.size, (off_t)in.offset);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return err();
	struct fuse_write_out *o = fs_reply(c, sizeof(*o));
	if (!o)
		return -ERANGE;
	o->size = (uint32_t)k;
	return 0;
}

static int op_statfs(struct fs_call *c)
{
	struct fs_inode *n = node(c);
	if (!n)
		return -ESTALE;
	struct statfs sf;
	if (fstatfs(n->fd, &sf) < 0)
		return err();
	struct fuse_statfs_out *o = fs_reply(c, sizeof(*o));
	if (!o)
		return -ERANGE;
	o->st.blocks = sf.f_blocks;
	o->st.bfree = sf.f_bfree;
	o->st.bavail = sf.f_bavail;
	o->st.files = sf.f_files;
	o->st.ffree = sf.f_ffree;
	o->st.bsize = (uint32_t)sf.f_bsize;
	o->st.namelen = (uint32_t)sf.f_namelen;
	o->st.frsize = (uint32_t)sf.f_frsize;
	return 0;
}

static int release(struct fs_call *c, bool dir)
{
	struct fuse_release_in in;
	GET_ARG(c, in);
	if (!fs_file_get(c->s, in.fh, dir))
		return -EBADF;
	fs_file_close(c->s, in.fh);
	return 0;
}

static int op_release(struct fs_call *c)
{
	return release(c, false);
}

static int op_releasedir(struct fs_call *c)
{
	return release(c, true);
}

static int op_flush(struct fs_call *c)
{
	struct fuse_flush_in in;
	GET_ARG(c, in);
	return fs_file_get(c->s, in.fh, false) ? 0 : -EBADF;
}

static int fsync_file(struct fs_call *c, bool dir)
{
	struct fuse_fsync_in in;
	GET_ARG(c, in);
	struct fs_file *f = fs_file_get(c->s, in.fh, dir);
	if (!f)
		return -EBADF;
	int r = (in.fsync_flags & 1) ? fdatasync(f->fd) : fsync(f->fd);
	return r < 0 && errno != EINVAL ? err() : 0;
}

static int op_fsync(struct fs_call *c)
{
	return fsync_file(c, false);
}

static int op_fsyncdir(struct fs_call *c)
{
	return fsync_file(c, true);
}

static int op_access(struct fs_call *c)
{
	struct fuse_access_in in;
	GET_ARG(c, in);
	struct fs_inode *n = node(c);
	if (!n)
		return -ESTALE;
	if ((in.mask & W_OK) && c->s->readonly)
		return -EROFS;
	struct stat st;
	int r = stat_fd(n->fd, &st);
	if (r < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return r; /* links and others: existence is all there is to check */
	char p[64];
	proc_path(p, sizeof(p), n->fd);
	return faccessat(AT_FDCWD, p, (int)(in.mask & 7), AT_EACCESS) < 0 ? err() : 0;
}

/* READDIR and READDIRPLUS: the directory's entries from `offset` (a d_off of
 * an earlier entry, or 0), as many as fit in `size` bytes. */
static int readdir_common(struct fs_call *c, bool plus)
{
	struct fuse_read_in in;
	GET_ARG(c, in);
	struct fs_file *f = fs_file_get(c->s, in.fh, true);
	if (!f)
		return -EBADF;
	size_t cap = in.size < c->out_cap ? in.size : c->out_cap;
	if (in.offset > (uint64_t)INT64_MAX || lseek(f->fd, (off_t)in.offset, SEEK_SET) < 0)
		return -EINVAL;
	char buf[8192] __attribute__((aligned(8)));
	size_t used = 0;
	for (;;) {
		ssize_t k = getdents64(f->fd, buf, sizeof(buf));
		if (k < 0)
			return used ? 0 : err();
		if (k == 0)
			break;
		for (ssize_t pos = 0; pos < k;) {
			struct dirent64 *de = (struct dirent64 *)(buf + pos);
			pos += de->d_reclen;
			size_t nl = strlen(de->d_name);
			size_t rec = FUSE_NAME_OFFSET + nl;
			if (plus)
				rec = FUSE_NAME_OFFSET_DIRENTPLUS + nl;
			rec = FUSE_DIRENT_ALIGN(rec);
			if (rec > cap - used) {
				/* Full: the next call starts at this entry. */
				c->out_len = used;
				return 0;
			}
			struct fuse_dirent *d;
			if (plus) {
				struct fuse_direntplus *dp =
					(struct fuse_direntplus *)(c->out + used);
				memset(dp, 0, rec);
				bool dot = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
				/* A nodeid of 0 tells the kernel not to make an entry; a
				 * failed lookup (the entry went away) does the same. */
				if (!dot)
					lookup_into(c, f->fd, de->d_name, &dp->entry_out);
				d = &dp->dirent;
			} else {
				d = (struct fuse_dirent *)(c->out + used);
				memset(d, 0, rec);
			}
			d->ino = de->d_ino;
			d->off = (uint64_t)de->d_off;
			d->namelen = (uint32_t)nl;
			d->type = de->d_type;
			memcpy(d->name, de->d_name, nl);
			used += rec;
		}
	}
	c->out_len = used;
	return 0;
}

static int op_readdir(struct fs_call *c)
{
	return readdir_common(c, false);
}

static int op_readdirplus(struct fs_call *c)
{
	return readdir_common(c, true);
}

static const fs_op_fn ops[] = {
	[FUSE_LOOKUP] = op_lookup,
	[FUSE_FORGET] = op_forget,
	[FUSE_GETATTR] = op_getattr,
	[FUSE_SETATTR] = op_setattr,
	[FUSE_READLINK] = op_readlink,
	[FUSE_SYMLINK] = op_symlink,
	[FUSE_MKDIR] = op_mkdir,
	[FUSE_UNLINK] = op_unlink,
	[FUSE_RMDIR] = op_rmdir,
	[FUSE_RENAME] = op_rename,
	[FUSE_OPEN] = op_open,
	[FUSE_READ] = op_read,
	[FUSE_WRITE] = op_write,
	[FUSE_STATFS] = op_statfs,
	[FUSE_RELEASE] = op_release,
	[FUSE_FSYNC] = op_fsync,
	[FUSE_FLUSH] = op_flush,
	[FUSE_OPENDIR] = op_opendir,
	[FUSE_READDIR] = op_readdir,
	[FUSE_RELEASEDIR] = op_releasedir,
	[FUSE_FSYNCDIR] = op_fsyncdir,
	[FUSE_ACCESS] = op_access,
	[FUSE_CREATE] = op_create,
	[FUSE_BATCH_FORGET] = op_batch_forget,
	[FUSE_READDIRPLUS] = op_readdirplus,
	[FUSE_RENAME2] = op_rename2,
};

fs_op_fn fs_op_lookup(uint32_t opcode)
{
	return opcode < sizeof(ops) / sizeof(ops[0]) ? ops[opcode] : NULL;
}
