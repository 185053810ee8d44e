/* The merged tree of a root filesystem (see tree.h). */
#include "rootfs/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

/* ---- inodes ------------------------------------------------------------------------ */

struct rf_inode *rf_inode_new(void)
{
	struct rf_inode *ino = calloc(1, sizeof(struct rf_inode));
	if (ino)
		ino->spool_fd = -1;
	return ino;
}

void rf_inode_free(struct rf_inode *ino)
{
	if (!ino)
		return;
	for (size_t i = 0; i < ino->n_xattrs; i++) {
		free(ino->xattrs[i].name);
		free(ino->xattrs[i].value);
	}
	free(ino->xattrs);
	free(ino->ext);
	free(ino->symlink);
	free(ino->host_path);
	free(ino);
}

bool rf_xattr_kept(const char *name)
{
	/* What an unprivileged container could have set.  trusted.* is never taken from a
	 * layer: trusted.overlay.* on the lower layer would steer the guest's overlayfs
	 * (opaque, redirect, metacopy). */
	static const char *const prefixes[] = {"user.", "security.", "system.posix_acl_access",
					       "system.posix_acl_default"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(prefixes); i++) {
		size_t l = strlen(prefixes[i]);
		if (strncmp(name, prefixes[i], l) != 0)
			continue;
		/* "user." needs a name after it; the ACL names must match whole. */
		return prefixes[i][l - 1] == '.' ? name[l] != '\0' : name[l] == '\0';
	}
	return false;
}

int rf_inode_add_xattr(struct rf_inode *ino, const char *name, const void *value, size_t len,
		       struct msb_err *err)
{
	if (!rf_xattr_kept(name)) {
		msb_debug("rootfs: dropping the extended attribute %s", name);
		return 0;
	}
	/* A later value for the same name wins, as setxattr would do. */
	for (size_t i = 0; i < ino->n_xattrs; i++) {
		if (strcmp(ino->xattrs[i].name, name) == 0) {
			void *v = malloc(len ? len : 1);
			if (!v)
				return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "xattr %s", name);
			memcpy(v, value, len);
			free(ino->xattrs[i].value);
			ino->xattrs[i].value = v;
			ino->xattrs[i].len = len;
			return 0;
		}
	}
	struct rf_xattr *x = realloc(ino->xattrs, (ino->n_xattrs + 1) * sizeof(*x));
	if (!x)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "xattr %s", name);
	ino->xattrs = x;
	x = &ino->xattrs[ino->n_xattrs];
	x->name = strdup(name);
	x->value = malloc(len ? len : 1);
	if (!x->name || !x->value) {
		free(x->name);
		free(x->value);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "xattr %s", name);
	}
	memcpy(x->value, value, len);
	x->len = len;
	ino->n_xattrs++;
	return 0;
}

/* ---- the name hash: (parent, name) -> node ---------------------------------------------- */

static size_t hash_key(const struct rf_node *parent, const char *name)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

static int hash_grow(struct rf_tree *t)
{
	size_t nb = t->n_buckets ? t->n_buckets * 2 : 1024;
	struct rf_node **b = calloc(nb, sizeof(*b));
	if (!b)
		return -1;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct rf_node *n = t->buckets[i];
		while (n) {
			struct rf_node *next = n->hnext;
			size_t k = hash_key(n->parent, n->name) & (nb - 1);
			n->hnext = b[k];
			b[k] = n;
			n = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = nb;
	return 0;
}

static struct rf_node *child_lookup(const struct rf_tree *t, const struct rf_node *dir,
				    const char *name)
{
	size_t k = hash_key(dir, name) & (t->n_buckets - 1);
	for (struct rf_node *n = t->buckets[k]; n; n = n->hnext)
		if (n->parent == dir && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static void hash_remove(struct rf_tree *t, struct rf_node *n)
{
	size_t k = hash_key(n->parent, n->name) & (t->n_buckets - 1);
	for (struct rf_node **pp = &t->buckets[k]; *pp; pp = &(*pp)->hnext) {
		if (*pp == n) {
			*pp = n->hnext;
			return;
		}
	}
}

/* ---- nodes -------------------------------------------------------------------------------- */

static bool is_dir(const struct rf_node *n)
{
	return S_ISDIR(n->inode->mode);
}

static void inode_unref(struct rf_tree *t, struct rf_inode *ino)
{
	if (--ino->nlink == 0) {
		rf_inode_free(ino);
		t->n_inodes--;
	}
}

/* Remove a node and everything below it. */
static void node_remove(struct rf_tree *t, struct rf_node *n)
{
	while (n->first_child)
		node_remove(t, n->first_child);
	if (n->parent) {
		hash_remove(t, n);
		if (n->prev)
			n->prev->next = n->next;
		else
			n->parent->first_child = n->next;
		if (n->next)
			n->next->prev = n->prev;
		else
			n->parent->last_child = n->prev;
	}
	inode_unref(t, n->inode);
	free(n->name);
	free(n);
	t->n_nodes--;
}

static void mark_touched(struct rf_node *n, uint32_t layer)
{
	for (; n; n = n->parent)
		if (n->touched < layer)
			n->touched = layer;
}

/* A new entry `name` in `dir` pointing at `ino` (whose reference it takes). */
static struct rf_node *node_insert(struct rf_tree *t, struct rf_node *dir, const char *name,
				   struct rf_inode *ino, uint32_t layer, struct msb_err *err)
{
	if (t->n_nodes + 1 > t->n_buckets && hash_grow(t) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "growing the file tree");
		return NULL;
	}
	struct rf_node *n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "adding '%s'", name);
		return NULL;
	}
	n->parent = dir;
	n->inode = ino;
	if (ino->nlink++ == 0)
		t->n_inodes++;
	n->layer = layer;
	n->prev = dir->last_child;
	if (dir->last_child)
		dir->last_child->next = n;
	else
		dir->first_child = n;
	dir->last_child = n;
	size_t k = hash_key(dir, name) & (t->n_buckets - 1);
	n->hnext = t->buckets[k];
	t->buckets[k] = n;
	t->n_nodes++;
	mark_touched(n, layer);
	return n;
}

/* ---- the tree ------------------------------------------------------------------------------- */

struct rf_tree *rf_tree_new(const char *spool_dir, const struct rootfs_limits *limits,
			    struct msb_err *err)
{
	struct rf_tree *t = calloc(1, sizeof(*t));
	struct rf_inode *ino = rf_inode_new();
	struct rf_node *root = calloc(1, sizeof(*root));
	if (!t || !ino || !root || hash_grow(t) < 0 || !(root->name = strdup("")) ||
	    !(t->spool_dir = strdup(spool_dir ? spool_dir : "."))) {
		if (t) {
			free(t->buckets);
			free(t->spool_dir);
		}
		if (root)
			free(root->name);
		free(t);
		free(ino);
		free(root);
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "creating a file tree");
		return NULL;
	}
	ino->mode = S_IFDIR | 0755;
	ino->nlink = 1;
	root->inode = ino;
	t->root = root;
	t->n_nodes = 1;
	t->n_inodes = 1;
	t->spool.fd = -1;
	if (limits)
		t->limits = *limits;
	else
		rootfs_default_limits(&t->limits);
	return t;
}

void rf_tree_free(struct rf_tree *t)
{
	if (!t)
		return;
	node_remove(t, t->root);
	for (size_t i = 0; i < t->n_spool_fds; i++)
		close(t->spool_fds[i]);
	free(t->spool_fds);
	free(t->buckets);
	free(t->spool_dir);
	free(t);
}

int rf_tree_count_entry(struct rf_tree *t, struct msb_err *err)
{
	if (__atomic_add_fetch(&t->entries, 1, __ATOMIC_RELAXED) > t->limits.max_entries)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the layers hold more than %llu entries (the cap against tar "
				   "bombs)",
				   (unsigned long long)t->limits.max_entries);
	return 0;
}

int rf_spool_open(struct rf_tree *t, struct rf_spool *sp, struct msb_err *err)
{
	int *fds = realloc(t->spool_fds, (t->n_spool_fds + 1) * sizeof(int));
	if (!fds)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "spool");
	t->spool_fds = fds;
	/* Unlinked at once: a spool never outlives the build, even after a crash. */
	sp->fd = open(t->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (sp->fd < 0) {
		size_t len = strlen(t->spool_dir) + 32;
		_cleanup_free_ char *tmpl = malloc(len);
		if (!tmpl)
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "spool path");
		snprintf(tmpl, len, "%s/.rootfs-spool-XXXXXX", t->spool_dir);
		sp->fd = mkostemp(tmpl, O_CLOEXEC);
		if (sp->fd < 0)
			return msb_err_sys(err, "creating a spool file in %s", t->spool_dir);
		unlink(tmpl);
	}
	sp->end = 0;
	t->spool_fds[t->n_spool_fds++] = sp->fd;
	return 0;
}

int rf_spool_write(struct rf_tree *t, struct rf_spool *sp, struct rf_inode *ino, uint64_t off,
		   const void *buf, size_t len, struct msb_err *err)
{
	if (len == 0)
		return 0;
	if (off > t->limits.max_file_size || len > t->limits.max_file_size - off)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "a file is larger than %llu bytes (the cap on one file)",
				   (unsigned long long)t->limits.max_file_size);
	/* Reserve the bytes first: decoders of other layers count against the same cap. */
	uint64_t before = __atomic_fetch_add(&t->data_bytes, len, __ATOMIC_RELAXED);
	if (before > t->limits.max_total_bytes || len > t->limits.max_total_bytes - before)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the layers hold more than %llu bytes of file data (the cap "
				   "against tar bombs)",
				   (unsigned long long)t->limits.max_total_bytes);
	if (sp->fd < 0 && rf_spool_open(t, sp, err) < 0)
		return -1;
	if (ino->spool_fd >= 0 && ino->spool_fd != sp->fd)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "one file's data in two spools");
	ino->spool_fd = sp->fd;
	const char *p = buf;
	size_t left = len;
	uint64_t at = sp->end;
	while (left) {
		ssize_t w = pwrite(sp->fd, p, left, (off_t)at);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return msb_err_sys(err, "writing the spool");
		}
		p += w;
		at += (uint64_t)w;
		left -= (size_t)w;
	}
	struct rf_extent *last = ino->n_ext ? &ino->ext[ino->n_ext - 1] : NULL;
	if (last && last->off + last->len == off && last->spool_off + last->len == sp->end) {
		last->len += len;
	} else {
		if (ino->n_ext == ino->cap_ext) {
			size_t cap = ino->cap_ext ? ino->cap_ext * 2 : 2;
			struct rf_extent *e = realloc(ino->ext, cap * sizeof(*e));
			if (!e)
				return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "file extents");
			ino->ext = e;
			ino->cap_ext = cap;
		}
		ino->ext[ino->n_ext++] = (struct rf_extent){off, sp->end, len};
	}
	sp->end += len;
	return 0;
}

int rf_tree_spool_write(struct rf_tree *t, struct rf_inode *ino, uint64_t off, const void *buf,
			size_t len, struct msb_err *err)
{
	return rf_spool_write(t, &t->spool, ino, off, buf, len, err);
}

/* ---- paths ------------------------------------------------------------------------------------
 */

int rf_path_split(const char *path, char *buf, size_t bufsz, char **comps, size_t max_comps,
		  size_t *n, struct msb_err *err)
{
	size_t len = strlen(path);
	if (len >= bufsz || len >= RF_PATH_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a path is longer than %d bytes",
				   RF_PATH_MAX - 1);
	memcpy(buf, path, len + 1);
	size_t k = 0;
	char *save = NULL;
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			if (k == 0)
				return msb_err_set(err, MSB_EK_CORRUPT, 0,
						   "the path '%s' leaves the root with '..'", path);
			k--;
			continue;
		}
		if (strlen(c) > RF_NAME_MAX)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "a name in '%.100s...' is longer than %d bytes", path,
					   RF_NAME_MAX);
		if (k == max_comps)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "the path '%.100s...' is too deep", path);
		comps[k++] = c;
	}
	*n = k;
	return 0;
}

/* Walk `comps` from `start`.  Symlinks in every position but the last are followed inside
 * the tree (an absolute target starts at the root, ".." stops at the root), so nothing a
 * layer says can name a place outside it; with follow_last the last one is followed too.
 * Missing directories are created when `create` is set, else NULL is returned with
 * *missing set.  Returns the node, or NULL with err (kind corrupt) on a loop or a
 * non-directory in the way. */
static struct rf_node *walk(struct rf_tree *t, struct rf_node *start, char **comps, size_t n,
			    bool follow_last, bool create, uint32_t layer, int *loops,
			    bool *missing, struct msb_err *err)
{
	struct rf_node *cur = start;
	for (size_t i = 0; i < n; i++) {
		if (!is_dir(cur)) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "'%s' is used as a directory but is not one", cur->name);
			return NULL;
		}
		const char *c = comps[i];
		struct rf_node *next;
		if (strcmp(c, "..") == 0)
			next = cur->parent ? cur->parent : cur;
		else if (c[0] == '\0' || strcmp(c, ".") == 0)
			next = cur;
		else
			next = child_lookup(t, cur, c);
		if (!next) {
			if (!create) {
				*missing = true;
				return NULL;
			}
			struct rf_inode *ino = rf_inode_new();
			if (!ino) {
				msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "adding a directory");
				return NULL;
			}
			ino->mode = S_IFDIR | 0755;
			next = node_insert(t, cur, c, ino, layer, err);
			if (!next) {
				rf_inode_free(ino);
				return NULL;
			}
		}
		bool last = i + 1 == n;
		if (S_ISLNK(next->inode->mode) && (!last || follow_last)) {
			if (++*loops > RF_SYMLINK_LOOPS) {
				msb_err_set(err, MSB_EK_CORRUPT, 0,
					    "too many levels of symbolic links at '%s'",
					    next->name);
				return NULL;
			}
			const char *target = next->inode->symlink ? next->inode->symlink : "";
			_cleanup_free_ char *tbuf = strdup(target);
			_cleanup_free_ char **tc = calloc(strlen(target) / 2 + 2, sizeof(char *));
			if (!tbuf || !tc) {
				msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "following a symlink");
				return NULL;
			}
			size_t tn = 0;
			char *save = NULL;
			for (char *p = strtok_r(tbuf, "/", &save); p;
			     p = strtok_r(NULL, "/", &save))
				tc[tn++] = p;
			struct rf_node *base = target[0] == '/' ? t->root : cur;
			next = walk(t, base, tc, tn, true, create, layer, loops, missing, err);
			if (!next)
				return NULL;
		}
		cur = next;
	}
	return cur;
}

struct rf_node *rf_tree_lookup_path(struct rf_tree *t, const char *path)
{
	char buf[RF_PATH_MAX];
	char *comps[RF_PATH_MAX / 2];
	size_t n;
	struct msb_err err;
	int loops = 0;
	bool missing = false;
	if (rf_path_split(path, buf, sizeof(buf), comps, MSB_ARRAY_SIZE(comps), &n, &err) < 0)
		return NULL;
	return walk(t, t->root, comps, n, false, false, 0, &loops, &missing, &err);
}

/* The directory that holds comps[n-1], created if missing. */
static struct rf_node *parent_dir(struct rf_tree *t, char **comps, size_t n, uint32_t layer,
				  bool create, struct msb_err *err)
{
	int loops = 0;
	bool missing = false;
	struct rf_node *dir =
		walk(t, t->root, comps, n - 1, true, create, layer, &loops, &missing, err);
	if (dir && !is_dir(dir)) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "'%s' is used as a directory but is not one",
			    dir->name);
		return NULL;
	}
	return dir;
}

static void take_metadata(struct rf_inode *dst, struct rf_inode *src)
{
	dst->mode = src->mode;
	dst->uid = src->uid;
	dst->gid = src->gid;
	dst->mtime = src->mtime;
	dst->mtime_nsec = src->mtime_nsec;
	struct rf_xattr *x = dst->xattrs;
	size_t nx = dst->n_xattrs;
	dst->xattrs = src->xattrs;
	dst->n_xattrs = src->n_xattrs;
	src->xattrs = x;
	src->n_xattrs = nx;
}

int rf_tree_add(struct rf_tree *t, char **comps, size_t n, struct rf_inode *ino, uint32_t layer,
		struct msb_err *err)
{
	if (n == 0) {
		/* The root itself ("./"): only a directory may describe it. */
		if (S_ISDIR(ino->mode)) {
			take_metadata(t->root->inode, ino);
			mark_touched(t->root, layer);
		}
		rf_inode_free(ino);
		return 0;
	}
	struct rf_node *dir = parent_dir(t, comps, n, layer, true, err);
	if (!dir) {
		rf_inode_free(ino);
		return -1;
	}
	const char *name = comps[n - 1];
	struct rf_node *old = child_lookup(t, dir, name);
	if (old && is_dir(old) && S_ISDIR(ino->mode)) {
		take_metadata(old->inode, ino);
		old->layer = layer;
		mark_touched(old, layer);
		rf_inode_free(ino);
		return 0;
	}
	if (old)
		node_remove(t, old);
	if (!node_insert(t, dir, name, ino, layer, err)) {
		rf_inode_free(ino);
		return -1;
	}
	return 0;
}

int rf_tree_add_hardlink(struct rf_tree *t, char **comps, size_t n, char **target, size_t tn,
			 uint32_t layer, struct msb_err *err)
{
	if (n == 0 || tn == 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a hard link to or at the root");
	int loops = 0;
	bool missing = false;
	struct rf_node *tgt =
		walk(t, t->root, target, tn, false, false, layer, &loops, &missing, err);
	if (!tgt) {
		if (missing)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "a hard link names '%s', which does not exist",
					   target[tn - 1]);
		return -1;
	}
	if (is_dir(tgt))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a hard link names the directory '%s'",
				   tgt->name);
	struct rf_inode *ino = tgt->inode;
	/* ext4 counts links in 16 bits; a layer asking for more is not a real image. */
	if (ino->nlink >= RF_LINK_MAX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "more than %d hard links to '%s'",
				   RF_LINK_MAX, tgt->name);
	struct rf_node *dir = parent_dir(t, comps, n, layer, true, err);
	if (!dir)
		return -1;
	struct rf_node *old = child_lookup(t, dir, comps[n - 1]);
	if (old == tgt)
		return 0;
	/* Hold the inode while replacing: the old entry may be its only other link. */
	ino->nlink++;
	if (old)
		node_remove(t, old);
	struct rf_node *nn = node_insert(t, dir, comps[n - 1], ino, layer, err);
	inode_unref(t, ino);
	return nn ? 0 : -1;
}

int rf_tree_whiteout(struct rf_tree *t, char **comps, size_t n, const char *name, uint32_t layer,
		     struct msb_err *err)
{
	if (strlen(name) == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strchr(name, '/'))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "a whiteout for the invalid name '%s'",
				   name);
	int loops = 0;
	bool missing = false;
	struct rf_node *dir = walk(t, t->root, comps, n, true, false, layer, &loops, &missing, err);
	if (!dir)
		return missing ? 0 : -1;
	if (!is_dir(dir))
		return 0;
	struct rf_node *victim = child_lookup(t, dir, name);
	/* A whiteout hides only what lower layers made; the same layer's entry stays. */
	if (victim && victim->layer < layer)
		node_remove(t, victim);
	return 0;
}

/* Remove what lower layers put below `dir`, keeping what layer `layer` wrote. */
static void opaque_below(struct rf_tree *t, struct rf_node *dir, uint32_t layer)
{
	struct rf_node *c = dir->first_child;
	while (c) {
		struct rf_node *next = c->next;
		if (c->touched < layer)
			node_remove(t, c);
		else if (is_dir(c))
			opaque_below(t, c, layer);
		c = next;
	}
}

int rf_tree_opaque(struct rf_tree *t, char **comps, size_t n, uint32_t layer, struct msb_err *err)
{
	/* The directory is part of this layer (it holds the marker): create it if needed. */
	int loops = 0;
	bool missing = false;
	struct rf_node *dir = walk(t, t->root, comps, n, true, true, layer, &loops, &missing, err);
	if (!dir)
		return -1;
	if (!is_dir(dir))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "an opaque marker in '%s', which is not a directory", dir->name);
	mark_touched(dir, layer);
	opaque_below(t, dir, layer);
	return 0;
}
