/* virtio-fs server: request framing, FUSE_INIT.  The operations are in
 * fs_ops.c, the inode and file tables in fs_table.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio/fs_int.h"

struct fs_server *fs_server_new(int root_fd, bool readonly)
{
	struct fs_server *s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	s->readonly = readonly;
	s->owner_uid = (uint32_t)geteuid();
	s->owner_gid = (uint32_t)getegid();
	s->in_buf = malloc(FS_REQ_MAX);
	s->out_buf = malloc(FS_REQ_MAX);
	struct stat st;
	bool known = root_fd >= 0 && fstat(root_fd, &st) == 0;
	if (!s->in_buf || !s->out_buf || fs_inode_table_init(s, root_fd, known ? &st : NULL) < 0) {
		free(s->inodes);
		free(s->buckets);
		free(s->in_buf);
		free(s->out_buf);
		free(s);
		goto fail;
	}
	return s;
fail:
	if (root_fd >= 0)
		close(root_fd);
	return NULL;
}

void fs_server_set_owner(struct fs_server *s, uint32_t uid, uint32_t gid)
{
	s->owner_uid = uid;
	s->owner_gid = gid;
}

void fs_server_reset(struct fs_server *s)
{
	fs_tables_reset(s);
	s->mounted = false;
}

void fs_server_free(struct fs_server *s)
{
	if (!s)
		return;
	fs_tables_free(s);
	free(s->in_buf);
	free(s->out_buf);
	free(s);
}

bool fs_server_mounted(const struct fs_server *s)
{
	return s->mounted;
}

/* ---- helpers -------------------------------------------------------------- */

int fs_check_name(const uint8_t *p, size_t len)
{
	const uint8_t *end = memchr(p, 0, len);
	if (!end)
		return -EINVAL;
	size_t n = (size_t)(end - p);
	if (n == 0 || n > 255)
		return n ? -ENAMETOOLONG : -EINVAL;
	if (memchr(p, '/', n) || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
		return -EINVAL;
	return (int)n + 1;
}

/* A host uid or gid as the guest sees it (owner: the host's id for guest 0). */
static uint32_t id_to_guest(uint32_t owner, uint32_t id)
{
	if (owner == 0)
		return id;
	if (id == owner)
		return 0;
	return id == 0 ? FS_OVERFLOW_ID : id;
}

uint32_t fs_id_to_host(uint32_t owner, uint32_t id)
{
	return id == 0 ? owner : id;
}

void fs_fill_attr(const struct fs_server *s, struct fuse_attr *a, const struct stat *st)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atim.tv_sec;
	a->mtime = (uint64_t)st->st_mtim.tv_sec;
	a->ctime = (uint64_t)st->st_ctim.tv_sec;
	a->atimensec = (uint32_t)st->st_atim.tv_nsec;
	a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = id_to_guest(s->owner_uid, st->st_uid);
	a->gid = id_to_guest(s->owner_gid, st->st_gid);
	a->rdev = (uint32_t)st->st_rdev;
	a->blksize = (uint32_t)st->st_blksize;
}

void *fs_reply(struct fs_call *c, size_t len)
{
	if (len > c->out_cap - c->out_len)
		return NULL;
	void *p = c->out + c->out_len;
	memset(p, 0, len);
	c->out_len += len;
	return p;
}

/* ---- INIT ----------------------------------------------------------------- */

/* What the server agrees to: reads may overlap (the server is serialized
 * anyway), large writes, READDIRPLUS when the kernel thinks it helps. */
#define FS_INIT_FLAGS \
	(FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO)

static int op_init(struct fs_call *c)
{
	struct fuse_init_in in = {0};
	if (c->arg_len < 16)
		return -EINVAL;
	memcpy(&in, c->arg, c->arg_len < sizeof(in) ? c->arg_len : sizeof(in));
	if (c->s->inodes[0].fd < 0)
		return -EIO; /* an empty slot: nothing to mount */
	struct fuse_init_out *o = fs_reply(c, sizeof(*o));
	if (!o)
		return -ERANGE;
	o->major = FUSE_KERNEL_VERSION;
	o->minor = FUSE_KERNEL_MINOR_VERSION;
	if (in.major < 7)
		return -EPROTO;
	if (in.major > 7) {
		/* The kernel asks again with our major version. */
		c->out_len = 8;
		return 0;
	}
	if (in.minor < o->minor)
		o->minor = in.minor;
	o->max_readahead = in.max_readahead < FS_MAX_WRITE ? in.max_readahead : FS_MAX_WRITE;
	o->flags = in.flags & FS_INIT_FLAGS;
	o->max_background = 16;
	o->congestion_threshold = 12;
	o->max_write = FS_MAX_WRITE;
	o->time_gran = 1;
	if (in.minor < 5)
		c->out_len = 8;
	else if (in.minor < 23)
		c->out_len = 24;
	fs_server_reset(c->s);
	c->s->mounted = true;
	return 0;
}

static int op_destroy(struct fs_call *c)
{
	fs_server_reset(c->s);
	return 0;
}

/* ---- dispatch ------------------------------------------------------------- */

size_t fs_server_dispatch(struct fs_server *s, const uint8_t *in, size_t in_len, uint8_t *out,
			  size_t out_cap)
{
	struct fs_call c = {.s = s};
	struct fuse_out_header oh = {0};
	if (in_len < sizeof(c.h) || out_cap < sizeof(oh))
		return 0;
	memcpy(&c.h, in, sizeof(c.h));
	oh.unique = c.h.unique;

	int r;
	/* The header's length may not claim more than the chain holds; less is
	 * accepted (the rest is ignored). */
	if (c.h.len < sizeof(c.h) || c.h.len > in_len) {
		r = -EINVAL;
	} else {
		c.arg = in + sizeof(c.h);
		c.arg_len = c.h.len - sizeof(c.h);
		c.out = out + sizeof(oh);
		c.out_cap = out_cap - sizeof(oh);
		if (c.h.opcode == FUSE_INIT) {
			r = op_init(&c);
		} else if (c.h.opcode == FUSE_FORGET || c.h.opcode == FUSE_BATCH_FORGET) {
			fs_op_fn fn = fs_op_lookup(c.h.opcode);
			if (s->mounted)
				fn(&c);
			return 0;
		} else if (!s->mounted) {
			r = -EIO;
		} else if (c.h.opcode == FUSE_DESTROY) {
			r = op_destroy(&c);
		} else {
			fs_op_fn fn = fs_op_lookup(c.h.opcode);
			r = fn ? fn(&c) : -ENOSYS;
		}
	}
	if (r == FS_NO_REPLY)
		return 0;
	if (r < 0) {
		oh.error = r;
		c.out_len = 0;
	}
	oh.len = (uint32_t)(sizeof(oh) + c.out_len);
	memcpy(out, &oh, sizeof(oh));
	return oh.len;
}

uint32_t fs_server_chain(struct fs_server *s, const struct guest_mem *m,
			 const struct virtq_chain *c)
{
	size_t in_len = c->read_len < FS_REQ_MAX ? (size_t)c->read_len : FS_REQ_MAX;
	size_t out_cap = c->write_len < FS_REQ_MAX ? (size_t)c->write_len : FS_REQ_MAX;
	/* One copy of everything the guest sent; nothing reads guest memory again. */
	in_len = virtq_chain_read(m, c, 0, s->in_buf, in_len);
	size_t n = fs_server_dispatch(s, s->in_buf, in_len, s->out_buf, out_cap);
	if (n == 0)
		return 0;
	return (uint32_t)virtq_chain_write(m, c, 0, s->out_buf, n);
}
