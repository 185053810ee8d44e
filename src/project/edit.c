#include "project/edit.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "project/ytree.h"

/* ---- positions: libyaml marks (line, column in characters) -> byte offsets ---- */

struct linetab {
	size_t *off;
	size_t n;
};

/* The line breaks libyaml counts: \r\n, \r, \n, NEL, LS, PS.  Returns the
 * break's length at text[i], 0 when there is none. */
static size_t break_len(const char *text, size_t len, size_t i)
{
	const unsigned char *u = (const unsigned char *)text;
	if (u[i] == '\r')
		return i + 1 < len && u[i + 1] == '\n' ? 2 : 1;
	if (u[i] == '\n')
		return 1;
	if (u[i] == 0xC2 && i + 1 < len && u[i + 1] == 0x85)
		return 2;
	if (u[i] == 0xE2 && i + 2 < len && u[i + 1] == 0x80 &&
	    (u[i + 2] == 0xA8 || u[i + 2] == 0xA9))
		return 3;
	return 0;
}

static int linetab_build(const char *text, size_t len, struct linetab *lt)
{
	size_t cap = 64;
	lt->off = malloc(cap * sizeof(*lt->off));
	if (!lt->off)
		return -1;
	lt->n = 0;
	/* libyaml skips a UTF-8 BOM without counting it. */
	size_t start = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
	lt->off[lt->n++] = start;
	for (size_t i = start; i < len;) {
		size_t b = break_len(text, len, i);
		if (!b) {
			i++;
			continue;
		}
		i += b;
		if (lt->n == cap) {
			size_t *p = realloc(lt->off, cap * 2 * sizeof(*p));
			if (!p)
				return -1;
			lt->off = p;
			cap *= 2;
		}
		lt->off[lt->n++] = i;
	}
	return 0;
}

static size_t mark_off(const struct linetab *lt, const char *text, size_t len, struct ymark m)
{
	if (m.line >= lt->n)
		return len;
	size_t o = lt->off[m.line];
	for (size_t c = 0; c < m.col && o < len; c++) {
		unsigned char ch = (unsigned char)text[o];
		o += ch < 0x80 ? 1 : ch < 0xE0 ? 2 : ch < 0xF0 ? 3 : 4;
	}
	return o < len ? o : len;
}

/* The offset just past the line break that ends the line holding `m`, or `m`
 * itself when it is already at the start of a line (block scalars end there). */
static size_t line_end_after(const struct linetab *lt, const char *text, size_t len, struct ymark m)
{
	size_t o = mark_off(lt, text, len, m);
	if (m.col == 0) {
		/* A block scalar ends after the blank lines that follow it; those
		 * belong to what comes next, so stop after its last content line. */
		size_t line = m.line < lt->n ? m.line : lt->n - 1;
		while (line > 1 && lt->off[line] == o) {
			size_t ps = lt->off[line - 1], k = ps;
			while (k < o && (text[k] == ' ' || text[k] == '\t'))
				k++;
			if (k >= o || !break_len(text, len, k) || k + break_len(text, len, k) != o)
				break;
			o = ps;
			line--;
		}
		return o;
	}
	for (; o < len; o++) {
		size_t b = break_len(text, len, o);
		if (b)
			return o + b;
	}
	return len;
}

/* Where item i of collection p ends as written: for block collections, the end
 * of its last scalar (libyaml's block-end marks sit at the next token, after
 * any comments, which must not move). */
static struct ymark item_end(const struct ynode *p, size_t i)
{
	const struct ynode *n = p->items[i];
	if (p->pos[i].alias || n->type == YN_SCALAR || n->flow || n->n == 0)
		return p->pos[i].end;
	return item_end(n, n->n - 1);
}

/* ---- a growable output buffer ---- */

struct sbuf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void sb_addn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_add(struct sbuf *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

static void sb_indent(struct sbuf *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sb_addn(b, " ", 1);
}

/* ---- rendering values ---- */

static bool special_word(const char *s)
{
	static const char *const words[] = {"null", "true", "false", "yes", "no",
					    "on",   "off",  "y",     "n",   "~"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(words); i++)
		if (strcasecmp(s, words[i]) == 0)
			return true;
	return false;
}

/* Plain (unquoted) only when no YAML reader could take it for anything but
 * this text: starts with a letter, '_' or '/', then a conservative set. */
static bool plain_ok(const char *s)
{
	if (!*s || special_word(s))
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_' ||
	      s[0] == '/'))
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("_./:@=+-", c)))
			return false;
	}
	return s[strlen(s) - 1] != ':';
}

static void emit_quoted(struct sbuf *b, const char *s)
{
	sb_add(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		switch (*p) {
		case '"':
			sb_add(b, "\\\"");
			break;
		case '\\':
			sb_add(b, "\\\\");
			break;
		case '\n':
			sb_add(b, "\\n");
			break;
		case '\t':
			sb_add(b, "\\t");
			break;
		case '\r':
			sb_add(b, "\\r");
			break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\x%02x", *p);
				sb_add(b, esc);
			} else {
				sb_addn(b, (const char *)p, 1);
			}
		}
	}
	sb_add(b, "\"");
}

/* A multi-line body reads best as a literal block; use one only when it
 * round-trips exactly (checked again by the caller's re-parse). */
static bool literal_ok(const char *s)
{
	if (!strchr(s, '\n') || s[0] == ' ' || s[0] == '\n' || s[0] == '\t')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
			return false;
	/* Trailing spaces before a break are kept by literal blocks; fine. */
	return true;
}

static void emit_scalar(struct sbuf *b, const char *s, bool flow, size_t indent, const char *nl)
{
	if (plain_ok(s)) {
		sb_add(b, s);
		return;
	}
	if (flow || !literal_ok(s)) {
		emit_quoted(b, s);
		return;
	}
	size_t n = strlen(s), trailing = 0;
	while (trailing < n && s[n - 1 - trailing] == '\n')
		trailing++;
	sb_add(b, trailing == 0 ? "|-" : trailing == 1 ? "|" : "|+");
	const char *p = s;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		sb_add(b, nl);
		if (l) {
			sb_indent(b, indent);
			sb_addn(b, p, l);
		}
		if (!e)
			break;
		p = e + 1;
		if (!*p)
			break;
	}
}

struct emitter {
	struct sbuf *b;
	bool flow;
	size_t indent, step; /* block: the field indent and one nesting step */
	const char *nl;
	bool first; /* flow: no comma before the first field */
};

static void field_start(struct emitter *e, const char *key)
{
	if (e->flow) {
		sb_add(e->b, e->first ? "" : ", ");
	} else {
		sb_add(e->b, e->nl);
		sb_indent(e->b, e->indent);
	}
	e->first = false;
	sb_add(e->b, key);
	sb_add(e->b, ":");
}

static void field_str(struct emitter *e, const char *key, const char *v)
{
	if (!v)
		return;
	field_start(e, key);
	sb_add(e->b, " ");
	emit_scalar(e->b, v, e->flow, e->indent + e->step, e->nl);
}

static void field_uint(struct emitter *e, const char *key, unsigned long v)
{
	char num[32];
	if (!v)
		return;
	snprintf(num, sizeof(num), " %lu", v);
	field_start(e, key);
	sb_add(e->b, num);
}

static void field_list(struct emitter *e, const char *key, const char *const *v, size_t n)
{
	if (!n)
		return;
	field_start(e, key);
	if (e->flow)
		sb_add(e->b, " [");
	for (size_t i = 0; i < n; i++) {
		if (e->flow) {
			sb_add(e->b, i ? ", " : "");
		} else {
			sb_add(e->b, e->nl);
			sb_indent(e->b, e->indent + e->step);
			sb_add(e->b, "- ");
		}
		emit_scalar(e->b, v[i], e->flow, e->indent + 2 * e->step, e->nl);
	}
	if (e->flow)
		sb_add(e->b, "]");
}

static void field_map(struct emitter *e, const char *key, const struct msb_kv *kv, size_t n)
{
	if (!n)
		return;
	field_start(e, key);
	if (e->flow)
		sb_add(e->b, " {");
	for (size_t i = 0; i < n; i++) {
		if (e->flow) {
			sb_add(e->b, i ? ", " : "");
		} else {
			sb_add(e->b, e->nl);
			sb_indent(e->b, e->indent + e->step);
		}
		emit_scalar(e->b, kv[i].key, true, 0, e->nl);
		sb_add(e->b, ": ");
		emit_scalar(e->b, kv[i].value, e->flow, e->indent + 2 * e->step, e->nl);
	}
	if (e->flow)
		sb_add(e->b, "}");
}

/* One entry "name: {...}" (flow) or "name:\n  image: ..." (block, starting
 * at `indent` with no leading newline, ending without one). */
static void render_entry(struct sbuf *b, const char *name, const struct msb_sandbox_spec *s,
			 bool flow, size_t indent, size_t step, const char *nl)
{
	struct emitter e = {b, flow, indent + step, step, nl, true};
	if (!flow)
		sb_indent(b, indent);
	emit_scalar(b, name, true, 0, nl);
	sb_add(b, flow ? ": {" : ":");
	field_str(&e, "image", s->image);
	field_uint(&e, "memory", s->memory_mib);
	field_uint(&e, "cpus", s->cpus);
	field_str(&e, "shell", s->shell || s->no_default_shell ? s->shell : MSB_DEFAULT_SHELL);
	field_list(&e, "volumes", s->volumes, s->nvolumes);
	field_list(&e, "ports", s->ports, s->nports);
	field_list(&e, "envs", s->envs, s->nenvs);
	field_list(&e, "depends_on", s->depends_on, s->ndepends_on);
	field_str(&e, "workdir", s->workdir);
	field_list(&e, "command", s->command, s->ncommand);
	field_map(&e, "scripts", s->scripts, s->nscripts);
	field_map(&e, "imports", s->imports, s->nimports);
	field_map(&e, "exports", s->exports, s->nexports);
	field_str(&e, "scope", s->scope);
	if (flow)
		sb_add(b, "}");
}

/* ---- the edits ---- */

static const char *detect_nl(const char *text, size_t len)
{
	const char *n = memchr(text, '\n', len);
	return n && n > text && n[-1] == '\r' ? "\r\n" : "\n";
}

static bool ends_with_break(const char *text, size_t len)
{
	return len == 0 || text[len - 1] == '\n' || text[len - 1] == '\r';
}

/* Find the `sandboxes` key's index in root (or -1). */
static long find_key(const struct ynode *map, const char *key)
{
	if (!map || map->type != YN_MAP)
		return -1;
	for (size_t i = 0; i + 1 < map->n; i += 2)
		if (strcmp(map->items[i]->str, key) == 0 && strlen(key) == map->items[i]->len)
			return (long)i;
	return -1;
}

static int top_level_check(const struct ynode *root, const char *fname, struct msb_err *err)
{
	if (ynode_is_null(root))
		return 0;
	if (root->type != YN_MAP)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "%s:%zu:%zu: the top level is not a mapping; a Sandboxfile "
				   "starts with `sandboxes:`",
				   fname, root->start.line + 1, root->start.col + 1);
	if (root->flow)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "%s: the top level is written in flow style ({...}); msb edits "
				   "block-style files only: write one key per line",
				   fname);
	return 0;
}

/* The nesting step the file uses under its first sandbox (2 when unknown). */
static size_t entry_step(const struct ynode *v)
{
	size_t ind = v->pos[0].start.col;
	const struct ynode *first = v->items[1];
	if (first->type == YN_MAP && !first->flow && first->n && !v->pos[1].alias &&
	    first->pos[0].start.col > ind)
		return first->pos[0].start.col - ind;
	return 2;
}

static int add_one(const char *text, size_t len, const char *fname, const char *name,
		   const struct msb_sandbox_spec *spec, struct sbuf *out, struct msb_err *err)
{
	struct ydoc doc;
	struct linetab lt = {0};
	int rc = -1;
	if (ydoc_parse(text, len, fname, &doc, err) < 0)
		return -1;
	if (linetab_build(text, len, &lt) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "editing %s", fname);
		goto done;
	}
	const char *nl = detect_nl(text, len);
	const struct ynode *root = doc.root;
	if (top_level_check(root, fname, err) < 0)
		goto done;
	long ki = find_key(root, "sandboxes");
	if (ki < 0) {
		/* No `sandboxes:` yet: add one after the last top-level entry (before
		 * any trailing comments or `...`), at the top-level indent; in a
		 * file without entries, at the end. */
		size_t ind = 0, ins = len;
		if (!ynode_is_null(root) && root->n) {
			ind = root->pos[0].start.col;
			ins = line_end_after(&lt, text, len, item_end(root, root->n - 1));
		}
		sb_addn(out, text, ins);
		if (!ends_with_break(text, ins))
			sb_add(out, nl);
		sb_indent(out, ind);
		sb_add(out, "sandboxes:");
		sb_add(out, nl);
		render_entry(out, name, spec, false, ind + 2, 2, nl);
		sb_add(out, nl);
		sb_addn(out, text + ins, len - ins);
		rc = 0;
		goto done;
	}
	const struct ynode *key = root->items[ki], *v = root->items[ki + 1];
	const struct yitem_pos *vp = &root->pos[ki + 1];
	if (ynode_is_null(v)) {
		/* `sandboxes:` (empty), `~` or `null`: drop the value text, put the
		 * entry on the lines after the key. */
		size_t vs = mark_off(&lt, text, len, vp->start),
		       ve = mark_off(&lt, text, len, vp->end);
		struct ymark after = v->len ? vp->end : root->pos[ki].end;
		size_t ins = line_end_after(&lt, text, len, after);
		if (!v->len || vs > ins || ve > ins)
			vs = ve = ins;
		sb_addn(out, text, vs);
		sb_addn(out, text + ve, ins - ve);
		if (!ends_with_break(text, ins))
			sb_add(out, nl);
		render_entry(out, name, spec, false, key->start.col + 2, 2, nl);
		sb_add(out, nl);
		sb_addn(out, text + ins, len - ins);
		rc = 0;
		goto done;
	}
	if (v->type != YN_MAP) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "%s:%zu:%zu: 'sandboxes' is %s, not a mapping of names to settings; "
			    "fix it before adding",
			    fname, vp->start.line + 1, vp->start.col + 1, ynode_type_name(v));
		goto done;
	}
	if (ynode_map_get(v, name)) {
		msb_err_set(err, MSB_EK_EXISTS, 0,
			    "a sandbox named '%s' already exists in %s; choose another name or run "
			    "`msb remove %s` first",
			    name, fname, name);
		goto done;
	}
	if (vp->alias) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "%s: 'sandboxes' is an alias (*name); write the mapping out to let msb "
			    "edit it",
			    fname);
		goto done;
	}
	if (v->flow) {
		size_t close = mark_off(&lt, text, len, v->end);
		if (close == 0 || text[close - 1] != '}') {
			msb_err_set(err, MSB_EK_INTERNAL, 0,
				    "%s: cannot find the end of 'sandboxes'", fname);
			goto done;
		}
		close--;
		sb_addn(out, text, close);
		if (v->n)
			sb_add(out, ", ");
		render_entry(out, name, spec, true, 0, 0, nl);
		sb_addn(out, text + close, len - close);
		rc = 0;
		goto done;
	}
	size_t ind = v->pos[0].start.col, step = entry_step(v);
	size_t ins = line_end_after(&lt, text, len, item_end(v, v->n - 1));
	sb_addn(out, text, ins);
	if (!ends_with_break(text, ins))
		sb_add(out, nl);
	render_entry(out, name, spec, false, ind, step, nl);
	sb_add(out, nl);
	sb_addn(out, text + ins, len - ins);
	rc = 0;
done:
	if (rc == 0 && out->oom)
		rc = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "editing %s", fname);
	free(lt.off);
	ydoc_free(&doc);
	return rc;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Remove the entry `name` (replace == NULL) or write `replace` in its place. */
static int edit_entry(const char *text, size_t len, const char *fname, const char *name,
		      const struct msb_sandbox_spec *replace, struct sbuf *out, struct msb_err *err)
{
	struct ydoc doc;
	struct linetab lt = {0};
	int rc = -1;
	if (ydoc_parse(text, len, fname, &doc, err) < 0)
		return -1;
	if (linetab_build(text, len, &lt) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "editing %s", fname);
		goto done;
	}
	if (top_level_check(doc.root, fname, err) < 0)
		goto done;
	long ki = find_key(doc.root, "sandboxes");
	const struct ynode *v = ki < 0 ? NULL : doc.root->items[ki + 1];
	long ei = find_key(v, name);
	if (ei < 0) {
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "there is no sandbox '%s' in %s; `msb list` shows the sandboxes", name,
			    fname);
		goto done;
	}
	if (doc.root->pos[ki + 1].alias) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "%s: 'sandboxes' is an alias (*name); write the mapping out to let msb "
			    "edit it",
			    fname);
		goto done;
	}
	size_t i = (size_t)ei;
	size_t s = mark_off(&lt, text, len, v->pos[i].start);
	size_t e;
	if (v->flow) {
		e = mark_off(&lt, text, len, v->pos[i + 1].end);
		if (replace) {
			sb_addn(out, text, s);
			render_entry(out, name, replace, true, 0, 0, detect_nl(text, len));
			sb_addn(out, text + e, len - e);
			goto written;
		}
		if (i + 2 < v->n) {
			while (e < len && is_space(text[e]))
				e++;
			if (e < len && text[e] == ',')
				e++;
			while (e < len && is_space(text[e]))
				e++;
		} else if (i > 0) {
			while (s > 0 && is_space(text[s - 1]))
				s--;
			if (s > 0 && text[s - 1] == ',')
				s--;
		}
	} else {
		size_t ls = lt.off[v->pos[i].start.line];
		bool blank_before = true;
		for (size_t k = ls; k < s; k++)
			if (text[k] != ' ' && text[k] != '\t')
				blank_before = false;
		if (blank_before)
			s = ls;
		e = line_end_after(&lt, text, len, item_end(v, i + 1));
		if (replace) {
			if (!blank_before) {
				msb_err_set(err, MSB_EK_USAGE, 0,
					    "%s:%zu:%zu: the sandbox '%s' does not start its line; "
					    "put it on a line of its own to let msb edit it",
					    fname, v->pos[i].start.line + 1,
					    v->pos[i].start.col + 1, name);
				goto done;
			}
			const char *nl = detect_nl(text, len);
			sb_addn(out, text, s);
			render_entry(out, name, replace, false, v->pos[i].start.col, entry_step(v),
				     nl);
			sb_add(out, nl);
			sb_addn(out, text + e, len - e);
			goto written;
		}
	}
	sb_addn(out, text, s);
	sb_addn(out, text + e, len - e);
written:
	rc = out->oom ? msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "editing %s", fname) : 0;
done:
	free(lt.off);
	ydoc_free(&doc);
	return rc;
}

typedef int (*edit_fn)(const char *text, size_t len, const char *fname, const char *name,
		       const struct msb_sandbox_spec *spec, struct sbuf *out, struct msb_err *err);

static int remove_adapter(const char *text, size_t len, const char *fname, const char *name,
			  const struct msb_sandbox_spec *spec, struct sbuf *out,
			  struct msb_err *err)
{
	return edit_entry(text, len, fname, name, NULL, out, err);
}

/* Replace the entry when it exists, else add it. */
static int set_one(const char *text, size_t len, const char *fname, const char *name,
		   const struct msb_sandbox_spec *spec, struct sbuf *out, struct msb_err *err)
{
	int rc = edit_entry(text, len, fname, name, spec, out, err);
	if (rc < 0 && err->kind == MSB_EK_NOT_FOUND) {
		free(out->p);
		memset(out, 0, sizeof(*out));
		msb_err_clear(err);
		rc = add_one(text, len, fname, name, spec, out, err);
	}
	return rc;
}

static int edit_all(edit_fn fn, const char *text, size_t len, const char *fname,
		    const char *const *names, size_t nnames, const struct msb_sandbox_spec *spec,
		    char **out, size_t *outlen, struct msb_err *err)
{
	*out = NULL;
	*outlen = 0;
	struct sbuf cur = {0};
	sb_addn(&cur, text, len);
	if (cur.oom)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "editing %s", fname);
	for (size_t i = 0; i < nnames; i++) {
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0) {
				free(cur.p);
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "'%s' is named twice; name each sandbox once",
						   names[i]);
			}
		struct sbuf next = {0};
		if (fn(cur.p, cur.n, fname, names[i], spec, &next, err) < 0) {
			free(cur.p);
			free(next.p);
			return -1;
		}
		free(cur.p);
		cur = next;
	}
	if (!cur.p)
		sb_addn(&cur, "", 0);
	if (cur.oom)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "editing %s", fname);
	*out = cur.p;
	*outlen = cur.n;
	return 0;
}

int msb_sandboxfile_text_add(const char *text, size_t len, const char *fname,
			     const char *const *names, size_t nnames,
			     const struct msb_sandbox_spec *spec, char **out, size_t *outlen,
			     struct msb_err *err)
{
	return edit_all(add_one, text, len, fname, names, nnames, spec, out, outlen, err);
}

int msb_sandboxfile_text_set(const char *text, size_t len, const char *fname, const char *name,
			     const struct msb_sandbox_spec *spec, char **out, size_t *outlen,
			     struct msb_err *err)
{
	const char *names[] = {name};
	return edit_all(set_one, text, len, fname, names, 1, spec, out, outlen, err);
}

int msb_sandboxfile_text_remove(const char *text, size_t len, const char *fname,
				const char *const *names, size_t nnames, char **out, size_t *outlen,
				struct msb_err *err)
{
	return edit_all(remove_adapter, text, len, fname, names, nnames, NULL, out, outlen, err);
}
