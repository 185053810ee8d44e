/* The virtio-fs server's tables, shared by fs_req.c (framing, tables, INIT)
 * and fs_ops.c (the operations).  Internal to src/virtio. */
#ifndef MSB_VIRTIO_FS_INT_H
#define MSB_VIRTIO_FS_INT_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "virtio/fs.h"

#define FS_NIL UINT32_MAX /* ends a slot list */

struct fs_inode {
	int fd;	       /* O_PATH | O_NOFOLLOW; -1: a free slot */
	uint32_t link; /* in use: next in its hash chain; free: next free slot */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup;
};

struct fs_file {
	int fd; /* -1: a free slot */
	bool dir;
	uint32_t next_free; /* while free */
};

struct fs_server {
	bool readonly;
	bool mounted;
	uint32_t owner_uid, owner_gid; /* the host user the guest's root stands for */
	struct fs_inode *inodes;       /* nodeid n is inodes[n - 1]; the root is nodeid 1 */
	uint32_t ninodes;	       /* slots allocated */
	uint32_t inode_free;	       /* first free inode slot, FS_NIL: none */
	uint32_t *buckets;	       /* (dev, ino) hash: first slot of each chain */
	uint32_t nbuckets;	       /* a power of two */
	struct fs_file *files;	       /* fh n is files[n - 1] */
	uint32_t nfiles;
	uint32_t file_free;
	uint8_t *in_buf, *out_buf; /* FS_REQ_MAX each, for fs_server_chain() */
};

/* One request being answered: the arguments after the header, and the
 * answer being built after the out header. */
struct fs_call {
	struct fs_server *s;
	struct fuse_in_header h;
	const uint8_t *arg;
	size_t arg_len;
	uint8_t *out; /* answer body (after struct fuse_out_header) */
	size_t out_cap;
	size_t out_len;
};

/* Operations: return 0 with the body in c->out[0 .. c->out_len), a negative
 * errno to answer an error, or FS_NO_REPLY. */
#define FS_NO_REPLY 1
typedef int (*fs_op_fn)(struct fs_call *c);

/* Tables (fs_table.c).  init: the root inode only (fd taken over, `root`
 * NULL when it could not be read); 0 or -ENOMEM.  reset: close all but the
 * root; free: close everything and free the tables. */
int fs_inode_table_init(struct fs_server *s, int root_fd, const struct stat *root);
void fs_tables_reset(struct fs_server *s);
void fs_tables_free(struct fs_server *s);

struct fs_inode *fs_inode_get(struct fs_server *s, uint64_t nodeid);
/* Find or add the inode open as `fd` (taken over) with attributes `st`; one
 * more lookup.  Returns the nodeid, or a negative errno. */
int64_t fs_inode_add(struct fs_server *s, int fd, const struct stat *st);
void fs_inode_forget(struct fs_server *s, uint64_t nodeid, uint64_t n);
/* A new open file: the handle, or a negative errno (fd is closed then). */
int64_t fs_file_add(struct fs_server *s, int fd, bool dir);
struct fs_file *fs_file_get(struct fs_server *s, uint64_t fh, bool dir);
void fs_file_close(struct fs_server *s, uint64_t fh);

/* A name argument: NUL-terminated within `len`, not empty, ".", ".." nor
 * containing '/'.  Returns its length + 1 (bytes used), or a negative errno. */
int fs_check_name(const uint8_t *p, size_t len);

/* The attributes the guest sees (owners mapped, see fs.h). */
void fs_fill_attr(const struct fs_server *s, struct fuse_attr *a, const struct stat *st);
/* A uid or gid from the guest (a chown) as the host's; (uint32_t)-1 stays. */
uint32_t fs_id_to_host(uint32_t owner, uint32_t id);
/* The body bytes, or NULL when they do not fit (the caller answers ERANGE). */
void *fs_reply(struct fs_call *c, size_t len);

/* The operation for an opcode, NULL for one not served (ENOSYS). */
fs_op_fn fs_op_lookup(uint32_t opcode);

#endif
