/* The in-memory tree of a root filesystem: layers are merged into it (whiteouts, opaque
 * directories, later entries replacing earlier ones), then an image writer walks it.
 *
 * A node is a directory entry; it points to an inode that several nodes share when they
 * are hard links.  File contents are not kept in memory: a regular file's inode lists
 * extents of a spool file (tar layers) or names a host file (rootfs_build_from_dir).
 *
 * Everything here is pure bookkeeping on memory: nothing touches the host filesystem
 * except the spool, so a hostile path can at worst produce a strange tree, never a write
 * outside it.
 */
#ifndef MSB_ROOTFS_TREE_H
#define MSB_ROOTFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "rootfs/rootfs.h"

#define RF_NAME_MAX	 255   /* one path component, as ext4 and erofs allow */
#define RF_PATH_MAX	 4096  /* a whole path, and a symlink target (less one) */
#define RF_LINK_MAX	 65000 /* hard links to one file, as ext4 allows */
#define RF_SYMLINK_LOOPS 40    /* symlinks followed while resolving one path, as Linux */

struct rf_xattr {
	char *name;
	void *value;
	size_t len;
};

/* A piece of a regular file's data: `len` bytes at file offset `off`, stored in the spool
 * at `spool_off`.  Gaps between extents are holes. */
struct rf_extent {
	uint64_t off;
	uint64_t spool_off;
	uint64_t len;
};

/* A file that holds regular files' data until the image is written: unlinked from the
 * start (O_TMPFILE), one per layer so that layers can be decoded in parallel. */
struct rf_spool {
	int fd; /* -1 until opened */
	uint64_t end;
};

struct rf_inode {
	uint32_t mode; /* type and permission bits (S_IFREG | 04755 ...) */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t rdev_major, rdev_minor;
	uint64_t size;	 /* regular files: apparent size */
	char *symlink;	 /* symlinks: the target, verbatim */
	char *host_path; /* regular files from a directory source: read at write time */
	struct rf_extent *ext;
	size_t n_ext, cap_ext;
	int spool_fd; /* the spool the extents are in (owned by the tree) */
	struct rf_xattr *xattrs;
	size_t n_xattrs;
	uint32_t nlink;	    /* directory entries pointing here (hard links) */
	uint32_t ino;	    /* assigned by the image writer; 0 until then */
	uint32_t n_subdirs; /* directories: filled by the writer */
};

struct rf_node {
	char *name; /* "" for the root */
	struct rf_node *parent;
	struct rf_inode *inode;
	struct rf_node *first_child, *last_child, *next, *prev; /* directory order */
	struct rf_node *hnext;					/* hash chain */
	uint32_t layer;	  /* layer that last created or replaced this entry */
	uint32_t touched; /* latest layer that wrote this entry or anything below it */
};

struct rf_tree {
	struct rf_node *root;
	struct rf_node **buckets;
	size_t n_buckets, n_nodes;
	uint64_t n_inodes; /* live inodes */
	struct rootfs_limits limits;
	/* Counted by concurrent layer decoders: updated with atomic operations only. */
	uint64_t entries;      /* layer entries seen, counted against limits.max_entries */
	uint64_t data_bytes;   /* bytes written to spools, against limits.max_total_bytes */
	struct rf_spool spool; /* the default spool (rf_tree_spool_write) */
	int *spool_fds;	       /* every spool opened, closed by rf_tree_free() */
	size_t n_spool_fds;
	char *spool_dir; /* where spool files are made (unlinked at once) */
};

/* Returns a tree holding only a root directory (0755, root:root), or NULL with err.
 * The spool file, if one is needed, is created in spool_dir.  Free with rf_tree_free(). */
struct rf_tree *rf_tree_new(const char *spool_dir, const struct rootfs_limits *limits,
			    struct msb_err *err);
void rf_tree_free(struct rf_tree *t);

/* A fresh inode (all zero, nlink 0) owned by the caller until rf_tree_add() takes it. */
struct rf_inode *rf_inode_new(void);
void rf_inode_free(struct rf_inode *ino);
/* Whether an extended attribute of that name goes into the image (user.*, security.*,
 * POSIX ACLs); others are dropped by rf_inode_add_xattr(). */
bool rf_xattr_kept(const char *name);
int rf_inode_add_xattr(struct rf_inode *ino, const char *name, const void *value, size_t len,
		       struct msb_err *err);

/* Open a spool for the tree (its descriptor is closed by rf_tree_free()).  Not thread-safe:
 * open spools before starting decoders. */
int rf_spool_open(struct rf_tree *t, struct rf_spool *sp, struct msb_err *err);

/* Append `len` bytes of a regular file's data at file offset `off` to a spool, opened on
 * first use.  Safe to call from several threads with different spools (the caps are
 * shared).  rf_tree_spool_write() uses the tree's default spool. */
int rf_spool_write(struct rf_tree *t, struct rf_spool *sp, struct rf_inode *ino, uint64_t off,
		   const void *buf, size_t len, struct msb_err *err);
int rf_tree_spool_write(struct rf_tree *t, struct rf_inode *ino, uint64_t off, const void *buf,
			size_t len, struct msb_err *err);

/* Split a path from a layer into components, in place in `buf` (which it copies `path`
 * into).  Leading "/" and "." components are dropped; ".." goes up one level and is an
 * error (kind corrupt) when it would leave the root.  *n is 0 for the root itself. */
int rf_path_split(const char *path, char *buf, size_t bufsz, char **comps, size_t max_comps,
		  size_t *n, struct msb_err *err);

/* Put `ino` at the path `comps[0..n)`, in layer `layer`.  Missing parent directories are
 * created (0755, root); a symlink met on the way is followed inside the tree, never out
 * of it.  An existing entry is replaced, except that a directory over a directory only
 * takes the new metadata (tar semantics).  Takes ownership of `ino` even on failure. */
int rf_tree_add(struct rf_tree *t, char **comps, size_t n, struct rf_inode *ino, uint32_t layer,
		struct msb_err *err);

/* A hard link at comps to the existing non-directory at target (its last component is not
 * followed).  A missing target or a directory is an error (kind corrupt). */
int rf_tree_add_hardlink(struct rf_tree *t, char **comps, size_t n, char **target, size_t tn,
			 uint32_t layer, struct msb_err *err);

/* OCI whiteouts: remove `name` in the directory at comps (`.wh.<name>`), or everything below
 * that directory (`.wh..wh..opq`), as far as it came from layers before `layer`.  A
 * whiteout of something that does not exist is not an error. */
int rf_tree_whiteout(struct rf_tree *t, char **comps, size_t n, const char *name, uint32_t layer,
		     struct msb_err *err);
int rf_tree_opaque(struct rf_tree *t, char **comps, size_t n, uint32_t layer, struct msb_err *err);

/* Count one layer entry against limits.max_entries (thread-safe). */
int rf_tree_count_entry(struct rf_tree *t, struct msb_err *err);

/* The node at a path (no symlink in the last component is followed), or NULL. */
struct rf_node *rf_tree_lookup_path(struct rf_tree *t, const char *path);

#endif
