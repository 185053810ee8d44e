#include "project/ytree.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/cleanup.h"

/* Internal bookkeeping beside the public node fields. */
struct ybuild {
	struct ydoc *doc;
	const char *fname;
	struct msb_err *err;
	struct ynode *stack[YTREE_MAX_DEPTH];
	size_t weight[YTREE_MAX_DEPTH]; /* expanded size of each open collection so far */
	bool anchored[YTREE_MAX_DEPTH]; /* the open collection has an anchor */
	size_t depth;
	struct anchor {
		char *name;
		struct ynode *node;
		size_t weight; /* 0 while the anchored node is still open */
	} * anchors;
	size_t nanchors, capanchors;
	/* name -> index + 1 of its latest definition (0: empty), open addressing */
	uint16_t slot[4 * YTREE_MAX_ANCHORS];
	size_t root_weight;
	int ndocs;
};

__attribute__((format(printf, 3, 4))) static int pos_err(struct ybuild *b, const yaml_mark_t *m,
							 const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return msb_err_set(b->err, MSB_EK_USAGE, 0, "%s:%zu:%zu: %s", b->fname, m->line + 1,
			   m->column + 1, what);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	while (ncap < need)
		ncap *= 2;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

static struct ynode *node_new(struct ybuild *b, enum ynode_type type, const yaml_mark_t *s,
			      const yaml_mark_t *e)
{
	if (grow((void **)&b->doc->all, &b->doc->capall, b->doc->nall + 1, sizeof(void *)) < 0)
		return NULL;
	struct ynode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->type = type;
	n->start = (struct ymark){s->line, s->column};
	n->end = (struct ymark){e->line, e->column};
	b->doc->all[b->doc->nall++] = n;
	return n;
}

static size_t sat_add(size_t a, size_t c)
{
	return a + c < a || a + c > YTREE_MAX_NODES + 1 ? YTREE_MAX_NODES + 1 : a + c;
}

/* Attach `n` (of expanded size `w`) to the open collection, or make it the root. */
static int attach(struct ybuild *b, struct ynode *n, size_t w, const yaml_mark_t *m,
		  const yaml_mark_t *alias_end)
{
	if (b->depth == 0) {
		if (b->doc->root)
			return pos_err(b, m, "more than one YAML document");
		b->doc->root = n;
		b->root_weight = w;
	} else {
		struct ynode *p = b->stack[b->depth - 1];
		if (p->type == YN_MAP && p->n % 2 == 0 && n->type != YN_SCALAR)
			return pos_err(b, m, "a mapping key must be a plain name, not a %s",
				       n->type == YN_MAP ? "mapping" : "sequence");
		size_t cap = p->cap;
		if (grow((void **)&p->items, &p->cap, p->n + 1, sizeof(void *)) < 0 ||
		    grow((void **)&p->pos, &cap, p->n + 1, sizeof(*p->pos)) < 0)
			return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
		if (alias_end)
			p->pos[p->n] = (struct yitem_pos){
				{m->line, m->column}, {alias_end->line, alias_end->column}, true};
		else
			p->pos[p->n] = (struct yitem_pos){n->start, n->end, false};
		p->items[p->n++] = n;
		b->weight[b->depth - 1] = sat_add(b->weight[b->depth - 1], w);
		w = b->weight[b->depth - 1];
	}
	if (w > YTREE_MAX_NODES)
		return pos_err(b, m,
			       "the document has more than 100000 values, counting every use of an "
			       "alias; a Sandboxfile needs far fewer (write repeated values out)");
	return 0;
}

static size_t anchor_hash(const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h & (4 * YTREE_MAX_ANCHORS - 1);
}

/* The slot holding `name`, or the empty slot where it would go. */
static size_t anchor_slot(const struct ybuild *b, const char *name)
{
	size_t i = anchor_hash(name);
	while (b->slot[i] && strcmp(b->anchors[b->slot[i] - 1].name, name) != 0)
		i = (i + 1) & (4 * YTREE_MAX_ANCHORS - 1);
	return i;
}

static int add_anchor(struct ybuild *b, const yaml_char_t *name, struct ynode *n,
		      const yaml_mark_t *m)
{
	if (!name)
		return 0;
	if (b->nanchors >= YTREE_MAX_ANCHORS)
		return pos_err(b, m, "more than %d anchors (&name); a Sandboxfile needs a few",
			       YTREE_MAX_ANCHORS);
	if (grow((void **)&b->anchors, &b->capanchors, b->nanchors + 1, sizeof(*b->anchors)) < 0)
		return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
	char *s = strdup((const char *)name);
	if (!s)
		return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
	b->anchors[b->nanchors++] = (struct anchor){s, n, 0};
	/* A redefined name points at its latest definition, as YAML says. */
	b->slot[anchor_slot(b, s)] = (uint16_t)b->nanchors;
	return 0;
}

static void anchor_done(struct ybuild *b, struct ynode *n, size_t w)
{
	for (size_t i = 0; i < b->nanchors; i++)
		if (b->anchors[i].node == n)
			b->anchors[i].weight = w;
}

static int check_tag(struct ybuild *b, const yaml_char_t *tag, const char *allowed,
		     const yaml_mark_t *m, bool *is_str)
{
	if (!tag || strcmp((const char *)tag, "!") == 0)
		return 0;
	if (is_str && strcmp((const char *)tag, YAML_STR_TAG) == 0) {
		*is_str = true;
		return 0;
	}
	if (allowed && strcmp((const char *)tag, allowed) == 0)
		return 0;
	return pos_err(b, m, "the tag '%s' is not supported in a Sandboxfile; remove it",
		       (const char *)tag);
}

static int cmp_keys(const void *a, const void *c)
{
	const struct ynode *x = *(const struct ynode *const *)a;
	const struct ynode *y = *(const struct ynode *const *)c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	int r = memcmp(x->str, y->str, x->len);
	if (r)
		return r;
	/* Order equal keys by position so the error names the second one. */
	if (x->start.line != y->start.line)
		return x->start.line < y->start.line ? -1 : 1;
	return x->start.col < y->start.col ? -1 : x->start.col > y->start.col;
}

static int check_duplicates(struct ybuild *b, struct ynode *map)
{
	size_t nk = map->n / 2;
	if (nk < 2)
		return 0;
	_cleanup_free_ struct ynode **keys = malloc(nk * sizeof(*keys));
	if (!keys)
		return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
	for (size_t i = 0; i < nk; i++)
		keys[i] = map->items[2 * i];
	qsort(keys, nk, sizeof(*keys), cmp_keys);
	for (size_t i = 1; i < nk; i++) {
		if (keys[i]->len == keys[i - 1]->len &&
		    memcmp(keys[i]->str, keys[i - 1]->str, keys[i]->len) == 0) {
			yaml_mark_t m = {0, keys[i]->start.line, keys[i]->start.col};
			char what[300];
			snprintf(what, sizeof(what),
				 "'%.200s' appears twice in this mapping (first on line %zu); keep "
				 "one",
				 keys[i]->str, keys[i - 1]->start.line + 1);
			return pos_err(b, &m, "%s", what);
		}
	}
	return 0;
}

static int on_event(struct ybuild *b, yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	struct ynode *n;
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->ndocs > 1)
			return pos_err(b, m,
				       "a Sandboxfile holds one YAML document; remove the second "
				       "'---' and what follows it");
		return 0;
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)ev->data.alias.anchor;
		size_t k = b->slot[anchor_slot(b, name)];
		if (k) {
			size_t i = k - 1;
			if (b->anchors[i].weight == 0)
				return pos_err(
					b, m,
					"the alias '*%s' refers to a value that contains it; "
					"recursive aliases are not allowed",
					name);
			return attach(b, b->anchors[i].node, b->anchors[i].weight, m,
				      &ev->end_mark);
		}
		return pos_err(b, m, "the alias '*%s' names no anchor defined before it", name);
	}
	case YAML_SCALAR_EVENT: {
		bool is_str = false;
		if (check_tag(b, ev->data.scalar.tag, NULL, m, &is_str) < 0)
			return -1;
		if (!(n = node_new(b, YN_SCALAR, m, &ev->end_mark)))
			return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
		n->len = ev->data.scalar.length;
		n->str = malloc(n->len + 1);
		if (!n->str)
			return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
		memcpy(n->str, ev->data.scalar.value, n->len);
		n->str[n->len] = '\0';
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !is_str;
		if (add_anchor(b, ev->data.scalar.anchor, n, m) < 0)
			return -1;
		if (ev->data.scalar.anchor)
			anchor_done(b, n, 1);
		return attach(b, n, 1, m, NULL);
	}
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		const yaml_char_t *tag =
			seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
		const yaml_char_t *anchor =
			seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
		if (check_tag(b, tag, seq ? YAML_SEQ_TAG : YAML_MAP_TAG, m, NULL) < 0)
			return -1;
		if (b->depth >= YTREE_MAX_DEPTH)
			return pos_err(b, m,
				       "values are nested more than 64 levels deep; a Sandboxfile "
				       "needs a few");
		if (!(n = node_new(b, seq ? YN_SEQ : YN_MAP, m, &ev->end_mark)))
			return msb_err_set(b->err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", b->fname);
		n->flow = seq ? ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE
			      : ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
		if (b->depth > 0) {
			/* A collection used as a mapping key is refused when attached;
			 * check it now so nothing is pushed for it. */
			struct ynode *p = b->stack[b->depth - 1];
			if (p->type == YN_MAP && p->n % 2 == 0)
				return pos_err(b, m, "a mapping key must be a plain name, not a %s",
					       seq ? "sequence" : "mapping");
		}
		if (add_anchor(b, anchor, n, m) < 0)
			return -1;
		b->anchored[b->depth] = anchor != NULL;
		b->stack[b->depth] = n;
		b->weight[b->depth] = 1;
		b->depth++;
		return 0;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		if (b->depth == 0)
			return msb_err_set(b->err, MSB_EK_INTERNAL, 0, "unbalanced YAML events");
		n = b->stack[--b->depth];
		size_t w = b->weight[b->depth];
		n->end = (struct ymark){ev->end_mark.line, ev->end_mark.column};
		if (n->type == YN_MAP && check_duplicates(b, n) < 0)
			return -1;
		if (b->anchored[b->depth])
			anchor_done(b, n, w);
		return attach(b, n, w, m, NULL);
	}
	default:
		return 0;
	}
}

int ydoc_parse(const char *text, size_t len, const char *fname, struct ydoc *doc,
	       struct msb_err *err)
{
	memset(doc, 0, sizeof(*doc));
	if (len > YTREE_MAX_INPUT_BYTES)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "%s is larger than 1 MiB; a Sandboxfile should be small (move "
				   "long scripts into files the sandbox mounts)",
				   fname);
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p))
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "parsing %s", fname);
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
	struct ybuild b = {.doc = doc, .fname = fname, .err = err};
	int rc = 0;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			const yaml_mark_t *m = &p.problem_mark;
			char what[400];
			snprintf(what, sizeof(what), "%s%s%s",
				 p.problem ? p.problem : "syntax error", p.context ? " " : "",
				 p.context ? p.context : "");
			if (p.error == YAML_READER_ERROR) {
				/* The reader reports a byte offset, not a line. */
				size_t line = 0, col = 0;
				for (size_t i = 0; i < p.problem_offset && i < len; i++) {
					if (text[i] == '\n') {
						line++;
						col = 0;
					} else if (((unsigned char)text[i] & 0xC0) != 0x80) {
						col++;
					}
				}
				msb_err_set(err, MSB_EK_USAGE, 0,
					    "%s:%zu:%zu: %s; a Sandboxfile must be UTF-8 text",
					    fname, line + 1, col + 1, what);
			} else {
				msb_err_set(
					err, MSB_EK_USAGE, 0,
					"%s:%zu:%zu: %s; check the indentation and quoting there",
					fname, m->line + 1, m->column + 1, what);
			}
			rc = -1;
			break;
		}
		bool end = ev.type == YAML_STREAM_END_EVENT;
		rc = on_event(&b, &ev);
		yaml_event_delete(&ev);
		if (rc < 0 || end)
			break;
	}
	yaml_parser_delete(&p);
	for (size_t i = 0; i < b.nanchors; i++)
		free(b.anchors[i].name);
	free(b.anchors);
	if (rc < 0)
		ydoc_free(doc);
	return rc;
}

void ydoc_free(struct ydoc *doc)
{
	for (size_t i = 0; i < doc->nall; i++) {
		free(doc->all[i]->str);
		free(doc->all[i]->items);
		free(doc->all[i]->pos);
		free(doc->all[i]);
	}
	free(doc->all);
	memset(doc, 0, sizeof(*doc));
}

bool ynode_is_null(const struct ynode *n)
{
	if (!n)
		return true;
	if (n->type != YN_SCALAR || !n->plain)
		return false;
	return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
	       strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

const char *ynode_type_name(const struct ynode *n)
{
	if (ynode_is_null(n))
		return "nothing (null)";
	switch (n->type) {
	case YN_SCALAR:
		return "a single value";
	case YN_SEQ:
		return "a list";
	case YN_MAP:
		return "a mapping";
	}
	return "?";
}

struct ynode *ynode_map_get(const struct ynode *map, const char *key)
{
	if (!map || map->type != YN_MAP)
		return NULL;
	size_t kl = strlen(key);
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct ynode *k = map->items[i];
		if (k->type == YN_SCALAR && k->len == kl && memcmp(k->str, key, kl) == 0)
			return map->items[i + 1];
	}
	return NULL;
}
