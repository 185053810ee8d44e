/* The merged tree on its own (no tar, no image): path rules, symlink resolution inside the
 * tree, whiteouts and opaque markers across layers, hard-link bookkeeping. */
#include <string.h>
#include <sys/stat.h>

#include "rootfs/tree.h"
#include "tests/unit/test.h"

static struct rf_inode *mk(mode_t mode, const char *symlink)
{
	struct rf_inode *i = rf_inode_new();
	if (i) {
		i->mode = mode;
		if (symlink)
			i->symlink = strdup(symlink);
	}
	return i;
}

/* Add `path` (split as a layer would) with the given inode. */
static int add(struct rf_tree *t, const char *path, mode_t mode, const char *target, uint32_t layer)
{
	char buf[RF_PATH_MAX];
	char *c[64];
	size_t n;
	struct msb_err err;
	if (rf_path_split(path, buf, sizeof(buf), c, 64, &n, &err) < 0)
		return -1;
	return rf_tree_add(t, c, n, mk(mode, target), layer, &err);
}

static int whiteout(struct rf_tree *t, const char *dir, const char *name, uint32_t layer)
{
	char buf[RF_PATH_MAX];
	char *c[64];
	size_t n;
	struct msb_err err;
	if (rf_path_split(dir, buf, sizeof(buf), c, 64, &n, &err) < 0)
		return -1;
	return name ? rf_tree_whiteout(t, c, n, name, layer, &err)
		    : rf_tree_opaque(t, c, n, layer, &err);
}

static int link_(struct rf_tree *t, const char *path, const char *target, uint32_t layer,
		 struct msb_err *err)
{
	char b1[RF_PATH_MAX], b2[RF_PATH_MAX];
	char *c1[64], *c2[64];
	size_t n1, n2;
	if (rf_path_split(path, b1, sizeof(b1), c1, 64, &n1, err) < 0 ||
	    rf_path_split(target, b2, sizeof(b2), c2, 64, &n2, err) < 0)
		return -1;
	return rf_tree_add_hardlink(t, c1, n1, c2, n2, layer, err);
}

static struct rf_tree *new_tree(struct test_ctx *t)
{
	struct msb_err err;
	struct rf_tree *tr = rf_tree_new("/tmp", NULL, &err);
	CHECK(tr != NULL);
	return tr;
}

TEST(path_split_rules)
{
	char buf[RF_PATH_MAX];
	char *c[8];
	size_t n;
	struct msb_err err;
	CHECK_INT(rf_path_split("/./a//b/./c/", buf, sizeof(buf), c, 8, &n, &err), ==, 0);
	CHECK_INT(n, ==, 3);
	CHECK_STR(c[0], "a");
	CHECK_STR(c[2], "c");
	CHECK_INT(rf_path_split("a/b/../../c", buf, sizeof(buf), c, 8, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1);
	CHECK_STR(c[0], "c");
	CHECK_INT(rf_path_split("./", buf, sizeof(buf), c, 8, &n, &err), ==, 0);
	CHECK_INT(n, ==, 0);
	CHECK_INT(rf_path_split("a/../..", buf, sizeof(buf), c, 8, &n, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	CHECK_INT(rf_path_split("a/b/c/d/e/f/g/h/i", buf, sizeof(buf), c, 8, &n, &err), ==, -1);
}

TEST(symlinked_parents_resolve_inside)
{
	struct rf_tree *tr = new_tree(t);
	/* usrmerge: /bin -> usr/bin; a later layer writes bin/ls */
	CHECK_INT(add(tr, "usr/bin", S_IFDIR | 0755, NULL, 1), ==, 0);
	CHECK_INT(add(tr, "bin", S_IFLNK | 0777, "usr/bin", 1), ==, 0);
	CHECK_INT(add(tr, "bin/ls", S_IFREG | 0755, NULL, 2), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "usr/bin/ls") != NULL);
	struct rf_node *bin = rf_tree_lookup_path(tr, "bin");
	CHECK(bin && S_ISLNK(bin->inode->mode));
	/* a chain of links, absolute and relative, with .. past the root */
	CHECK_INT(add(tr, "x/y", S_IFLNK | 0777, "../../../../etc", 1), ==, 0);
	CHECK_INT(add(tr, "z", S_IFLNK | 0777, "/x/y", 1), ==, 0);
	CHECK_INT(add(tr, "z/shadow", S_IFREG | 0600, NULL, 1), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "etc/shadow") != NULL);
	/* a whiteout through the link removes the real entry */
	CHECK_INT(whiteout(tr, "bin", "ls", 3), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "usr/bin/ls") == NULL);
	/* an opaque marker through the link empties the real directory */
	CHECK_INT(add(tr, "usr/bin/cat", S_IFREG | 0755, NULL, 3), ==, 0);
	CHECK_INT(whiteout(tr, "bin", NULL, 4), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "usr/bin/cat") == NULL);
	CHECK(rf_tree_lookup_path(tr, "usr/bin") != NULL);
	rf_tree_free(tr);
}

TEST(replacing_a_symlink_with_a_directory)
{
	struct rf_tree *tr = new_tree(t);
	CHECK_INT(add(tr, "usr/lib/f", S_IFREG | 0644, NULL, 1), ==, 0);
	CHECK_INT(add(tr, "lib", S_IFLNK | 0777, "usr/lib", 1), ==, 0);
	/* A directory entry at "lib" replaces the link (Docker and containerd do the same);
	 * the target directory is untouched. */
	CHECK_INT(add(tr, "lib/", S_IFDIR | 0755, NULL, 2), ==, 0);
	struct rf_node *lib = rf_tree_lookup_path(tr, "lib");
	CHECK(lib && S_ISDIR(lib->inode->mode));
	CHECK(rf_tree_lookup_path(tr, "usr/lib/f") != NULL);
	CHECK(rf_tree_lookup_path(tr, "lib/f") == NULL);
	rf_tree_free(tr);
}

TEST(hard_link_bookkeeping)
{
	struct rf_tree *tr = new_tree(t);
	struct msb_err err;
	CHECK_INT(add(tr, "a", S_IFREG | 0644, NULL, 1), ==, 0);
	CHECK_INT(link_(tr, "b", "a", 1, &err), ==, 0);
	CHECK_INT(link_(tr, "d/c", "b", 1, &err), ==, 0);
	struct rf_node *a = rf_tree_lookup_path(tr, "a");
	CHECK(a && a->inode->nlink == 3);
	/* the inode outlives any one of its names: keep it, not the node */
	struct rf_inode *ino = a->inode;
	CHECK(rf_tree_lookup_path(tr, "d/c")->inode == ino);
	uint64_t inodes = tr->n_inodes;
	/* a link onto itself changes nothing */
	CHECK_INT(link_(tr, "a", "b", 1, &err), ==, 0);
	CHECK_INT(ino->nlink, ==, 3);
	CHECK(rf_tree_lookup_path(tr, "a")->inode == ino);
	/* whiting out one name drops one link; removing a directory drops the links in it */
	CHECK_INT(whiteout(tr, "", "b", 2), ==, 0);
	CHECK_INT(ino->nlink, ==, 2);
	CHECK_INT(whiteout(tr, "", "d", 2), ==, 0);
	CHECK_INT(ino->nlink, ==, 1);
	CHECK_INT(tr->n_inodes, ==, inodes - 1); /* the directory d went */
	/* a link to a symlink names the symlink itself */
	CHECK_INT(add(tr, "s", S_IFLNK | 0777, "a", 2), ==, 0);
	CHECK_INT(link_(tr, "s2", "s", 2, &err), ==, 0);
	CHECK(S_ISLNK(rf_tree_lookup_path(tr, "s2")->inode->mode));
	rf_tree_free(tr);
}

TEST(whiteouts_respect_layers)
{
	struct rf_tree *tr = new_tree(t);
	CHECK_INT(add(tr, "d/old", S_IFREG | 0644, NULL, 1), ==, 0);
	CHECK_INT(add(tr, "d/sub/old", S_IFREG | 0644, NULL, 1), ==, 0);
	/* layer 2 touches d/sub (a new file inside) and marks d opaque */
	CHECK_INT(add(tr, "d/sub/new", S_IFREG | 0644, NULL, 2), ==, 0);
	CHECK_INT(whiteout(tr, "d", NULL, 2), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "d/old") == NULL);
	CHECK(rf_tree_lookup_path(tr, "d/sub/old") == NULL);
	CHECK(rf_tree_lookup_path(tr, "d/sub/new") != NULL);
	/* a whiteout of the same layer's entry is ignored, of a later layer applies */
	CHECK_INT(whiteout(tr, "d/sub", "new", 2), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "d/sub/new") != NULL);
	CHECK_INT(whiteout(tr, "d/sub", "new", 3), ==, 0);
	CHECK(rf_tree_lookup_path(tr, "d/sub/new") == NULL);
	/* invalid whiteout names */
	struct msb_err err;
	char *none[1];
	CHECK_INT(rf_tree_whiteout(tr, none, 0, "..", 3, &err), ==, -1);
	CHECK_INT(rf_tree_whiteout(tr, none, 0, "", 3, &err), ==, -1);
	rf_tree_free(tr);
}

TEST(root_entry_only_takes_directory_metadata)
{
	struct rf_tree *tr = new_tree(t);
	CHECK_INT(add(tr, ".", S_IFDIR | 0700, NULL, 1), ==, 0);
	CHECK_INT(tr->root->inode->mode, ==, S_IFDIR | 0700);
	CHECK_INT(add(tr, "/", S_IFREG | 0644, NULL, 1), ==, 0);
	CHECK(S_ISDIR(tr->root->inode->mode));
	CHECK_INT(add(tr, "/", S_IFLNK | 0777, "/etc", 1), ==, 0);
	CHECK(S_ISDIR(tr->root->inode->mode));
	rf_tree_free(tr);
}

TEST_MAIN(T(path_split_rules), T(symlinked_parents_resolve_inside),
	  T(replacing_a_symlink_with_a_directory), T(hard_link_bookkeeping),
	  T(whiteouts_respect_layers), T(root_entry_only_takes_directory_metadata))
