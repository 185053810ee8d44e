/* virtio-fs server: the inode and open-file tables.
 *
 * A READDIRPLUS answer looks up every entry of a directory, so adding an
 * inode must not scan the table: inodes are found by (dev, ino) through a
 * hash of chains, and free slots of both tables are kept on a list.  A slot's
 * `link` is its next slot in a hash chain while in use and the next free slot
 * while free (FS_NIL ends both). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "virtio/fs_int.h"

/* The bucket count is the slot count rounded up to a power of two. */
static uint32_t bucket_count(uint32_t slots)
{
	uint32_t n = 64;
	while (n < slots)
		n *= 2;
	return n;
}

static uint32_t bucket_of(const struct fs_server *s, dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 29)) * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(h >> 32) & (s->nbuckets - 1);
}

static void hash_insert(struct fs_server *s, uint32_t slot)
{
	struct fs_inode *n = &s->inodes[slot];
	uint32_t b = bucket_of(s, n->dev, n->ino);
	n->link = s->buckets[b];
	s->buckets[b] = slot;
}

static void hash_remove(struct fs_server *s, uint32_t slot)
{
	struct fs_inode *n = &s->inodes[slot];
	uint32_t *p = &s->buckets[bucket_of(s, n->dev, n->ino)];
	while (*p != FS_NIL && *p != slot)
		p = &s->inodes[*p].link;
	if (*p == slot)
		*p = n->link;
}

int fs_inode_table_init(struct fs_server *s, int root_fd, const struct stat *root)
{
	s->nbuckets = bucket_count(1);
	s->buckets = malloc(s->nbuckets * sizeof(*s->buckets));
	s->inodes = calloc(1, sizeof(*s->inodes));
	if (!s->buckets || !s->inodes)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->nbuckets; i++)
		s->buckets[i] = FS_NIL;
	s->ninodes = 1;
	s->inode_free = FS_NIL;
	s->inodes[0] = (struct fs_inode){.fd = root_fd, .nlookup = 1};
	if (root) {
		s->inodes[0].dev = root->st_dev;
		s->inodes[0].ino = root->st_ino;
	}
	hash_insert(s, 0);
	s->file_free = FS_NIL;
	return 0;
}

void fs_tables_reset(struct fs_server *s)
{
	for (uint32_t i = 1; i < s->ninodes; i++)
		if (s->inodes[i].fd >= 0)
			close(s->inodes[i].fd);
	if (s->ninodes > 1) {
		s->ninodes = 1;
		struct fs_inode *p = realloc(s->inodes, sizeof(*p));
		if (p)
			s->inodes = p;
	}
	s->inode_free = FS_NIL;
	for (uint32_t i = 0; i < s->nbuckets; i++)
		s->buckets[i] = FS_NIL;
	hash_insert(s, 0);
	for (uint32_t i = 0; i < s->nfiles; i++)
		if (s->files[i].fd >= 0)
			close(s->files[i].fd);
	free(s->files);
	s->files = NULL;
	s->nfiles = 0;
	s->file_free = FS_NIL;
}

void fs_tables_free(struct fs_server *s)
{
	if (s->inodes && s->buckets) {
		fs_tables_reset(s);
		if (s->inodes[0].fd >= 0)
			close(s->inodes[0].fd);
	}
	free(s->inodes);
	free(s->buckets);
}

struct fs_inode *fs_inode_get(struct fs_server *s, uint64_t nodeid)
{
	if (nodeid == 0 || nodeid > s->ninodes)
		return NULL;
	struct fs_inode *n = &s->inodes[nodeid - 1];
	return n->fd >= 0 ? n : NULL;
}

/* Double the inode slots (new ones go on the free list) and rehash. */
static int grow_inodes(struct fs_server *s)
{
	if (s->ninodes >= FS_MAX_INODES)
		return -ENFILE;
	uint32_t grow = s->ninodes < 64 ? 64 : s->ninodes * 2;
	if (grow > FS_MAX_INODES)
		grow = FS_MAX_INODES;
	struct fs_inode *p = realloc(s->inodes, grow * sizeof(*p));
	if (!p)
		return -ENOMEM;
	s->inodes = p;
	uint32_t nb = bucket_count(grow);
	if (nb != s->nbuckets) {
		uint32_t *b = realloc(s->buckets, nb * sizeof(*b));
		if (!b)
			return -ENOMEM; /* the larger slot array is kept, unused */
		s->buckets = b;
		s->nbuckets = nb;
		for (uint32_t i = 0; i < nb; i++)
			s->buckets[i] = FS_NIL;
		for (uint32_t i = 0; i < s->ninodes; i++)
			if (s->inodes[i].fd >= 0)
				hash_insert(s, i);
	}
	/* Pushed from the top so that the lowest new slot is taken first. */
	for (uint32_t i = grow; i-- > s->ninodes;) {
		p[i] = (struct fs_inode){.fd = -1, .link = s->inode_free};
		s->inode_free = i;
	}
	s->ninodes = grow;
	return 0;
}

int64_t fs_inode_add(struct fs_server *s, int fd, const struct stat *st)
{
	for (uint32_t i = s->buckets[bucket_of(s, st->st_dev, st->st_ino)]; i != FS_NIL;
	     i = s->inodes[i].link) {
		struct fs_inode *n = &s->inodes[i];
		if (n->dev == st->st_dev && n->ino == st->st_ino) {
			close(fd);
			n->nlookup++;
			return (int64_t)i + 1;
		}
	}
	if (s->inode_free == FS_NIL) {
		int r = grow_inodes(s);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	uint32_t slot = s->inode_free;
	s->inode_free = s->inodes[slot].link;
	s->inodes[slot] =
		(struct fs_inode){.fd = fd, .dev = st->st_dev, .ino = st->st_ino, .nlookup = 1};
	hash_insert(s, slot);
	return (int64_t)slot + 1;
}

void fs_inode_forget(struct fs_server *s, uint64_t nodeid, uint64_t n)
{
	struct fs_inode *in = fs_inode_get(s, nodeid);
	if (!in || nodeid == FUSE_ROOT_ID)
		return; /* the root lives as long as the server */
	in->nlookup = n >= in->nlookup ? 0 : in->nlookup - n;
	if (in->nlookup == 0) {
		uint32_t slot = (uint32_t)(nodeid - 1);
		hash_remove(s, slot);
		close(in->fd);
		in->fd = -1;
		in->link = s->inode_free;
		s->inode_free = slot;
	}
}

int64_t fs_file_add(struct fs_server *s, int fd, bool dir)
{
	if (s->file_free == FS_NIL) {
		if (s->nfiles >= FS_MAX_FILES) {
			close(fd);
			return -ENFILE;
		}
		uint32_t grow = s->nfiles < 16 ? 16 : s->nfiles * 2;
		if (grow > FS_MAX_FILES)
			grow = FS_MAX_FILES;
		struct fs_file *p = realloc(s->files, grow * sizeof(*p));
		if (!p) {
			close(fd);
			return -ENOMEM;
		}
		for (uint32_t i = grow; i-- > s->nfiles;) {
			p[i] = (struct fs_file){.fd = -1, .next_free = s->file_free};
			s->file_free = i;
		}
		s->files = p;
		s->nfiles = grow;
	}
	uint32_t k = s->file_free;
	s->file_free = s->files[k].next_free;
	s->files[k] = (struct fs_file){.fd = fd, .dir = dir, .next_free = FS_NIL};
	return (int64_t)k + 1;
}

struct fs_file *fs_file_get(struct fs_server *s, uint64_t fh, bool dir)
{
	if (fh == 0 || fh > s->nfiles)
		return NULL;
	struct fs_file *f = &s->files[fh - 1];
	return f->fd >= 0 && f->dir == dir ? f : NULL;
}

void fs_file_close(struct fs_server *s, uint64_t fh)
{
	if (fh == 0 || fh > s->nfiles || s->files[fh - 1].fd < 0)
		return;
	struct fs_file *f = &s->files[fh - 1];
	close(f->fd);
	f->fd = -1;
	f->next_free = s->file_free;
	s->file_free = (uint32_t)(fh - 1);
}
