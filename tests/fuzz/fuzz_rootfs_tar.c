/* libFuzzer target: tar entry handling over arbitrary bytes (a layer is hostile).  The input
 * is applied as two layers on top of each other, so whiteouts and opaque markers of the
 * second meet entries of the first; then the merged tree's invariants are checked and the
 * tree is written as an EROFS image. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rootfs/erofs.h"
#include "rootfs/layer.h"
#include "rootfs/tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t check(const struct rf_node *n, const struct rf_node *parent)
{
	if (n->parent != parent || !n->inode || n->inode->nlink == 0)
		abort();
	if (parent) {
		/* A real name: no separator, no dot entries, no whiteout left over. */
		if (!n->name[0] || strchr(n->name, '/') || !strcmp(n->name, ".") ||
		    !strcmp(n->name, "..") || !strncmp(n->name, ".wh.", 4) ||
		    strlen(n->name) > RF_NAME_MAX)
			abort();
	}
	if (!S_ISDIR(n->inode->mode) && n->first_child)
		abort();
	if (S_ISLNK(n->inode->mode) && !n->inode->symlink)
		abort();
	size_t count = 1;
	for (const struct rf_node *c = n->first_child; c; c = c->next)
		count += check(c, n);
	return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rootfs_limits lim = {
		.max_total_bytes = 4 << 20, .max_entries = 10000, .max_file_size = 1 << 20};
	struct msb_err err = {0};
	struct rf_tree *t = rf_tree_new("/tmp", &lim, &err);
	if (!t)
		abort();
	if (rf_layer_apply_mem(t, data, size, 1, &err) == 0)
		(void)rf_layer_apply_mem(t, data, size, 2, &err);
	if (check(t->root, NULL) != t->n_nodes)
		abort();
	/* Whatever tree came out, the EROFS writer lays it out (an ext4 image needs mke2fs
	 * per input, too slow here). */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/fuzz_rootfs_tar.%d.img", (int)getpid());
	if (rootfs_erofs_write(t, path, &err) < 0 && err.kind == MSB_EK_INTERNAL)
		abort();
	unlink(path);
	rf_tree_free(t);
	return 0;
}
