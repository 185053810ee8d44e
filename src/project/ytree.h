/* A YAML document as a small tree, built from libyaml's event stream with the
 * limits a hostile file needs: nesting depth, node count after alias expansion
 * (a "billion laughs" file is refused, not expanded), no recursive aliases, no
 * custom tags, one document, UTF-8 only.  Every node keeps its start and end
 * marks so errors can name a line and column and edits can find text spans.
 *
 * Alias nodes are not copied: the alias points at the anchored node, which is
 * owned by the tree's arena (ydoc.all), so the tree is a DAG freed in one go. */
#ifndef MSB_PROJECT_YTREE_H
#define MSB_PROJECT_YTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

enum ynode_type { YN_SCALAR, YN_SEQ, YN_MAP };

/* 0-based, as libyaml counts: line, and column in characters. */
struct ymark {
	size_t line, col;
};

struct ynode {
	enum ynode_type type;
	struct ymark start, end;
	/* Scalars: the value (NUL-terminated; len excludes the NUL and may be less
	 * than strlen if the value holds a NUL byte), and whether it was written
	 * plain (unquoted, untagged: the only kind that can be null/int/bool). */
	char *str;
	size_t len;
	bool plain;
	/* Collections: items; a mapping stores key, value, key, value, ...
	 * pos[i] is where items[i] was written: for an alias ("*a") that is the
	 * alias, not the anchored node it points to. */
	struct ynode **items;
	struct yitem_pos {
		struct ymark start, end;
		bool alias;
	} * pos;
	size_t n, cap;
	bool flow;
};

struct ydoc {
	struct ynode *root; /* NULL for an empty stream (only comments) */
	struct ynode **all; /* every node, for freeing */
	size_t nall, capall;
};

/* Limits, public for tests. */
#define YTREE_MAX_DEPTH	      64
#define YTREE_MAX_NODES	      100000 /* after alias expansion */
#define YTREE_MAX_INPUT_BYTES (1024 * 1024)
#define YTREE_MAX_ANCHORS     1024 /* distinct anchor names; a power of two */

/* Parse `len` bytes.  `fname` names the file in messages ("Sandboxfile:3:5: ...").
 * On success *doc owns the tree (release with ydoc_free); on failure -1 with a
 * MSB_EK_USAGE error naming the position and *doc is left empty. */
int ydoc_parse(const char *text, size_t len, const char *fname, struct ydoc *doc,
	       struct msb_err *err);
void ydoc_free(struct ydoc *doc);

/* Helpers for readers of the tree. */
bool ynode_is_null(const struct ynode *n);
const char *ynode_type_name(const struct ynode *n);
/* The value node for `key` in mapping `map`, or NULL. */
struct ynode *ynode_map_get(const struct ynode *map, const char *key);

#endif
