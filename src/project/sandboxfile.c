#include "project/sandboxfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "project/ytree.h"

struct sfctx {
	const char *fname;
	const char *project_dir;
	struct msb_err *err;
};

/* What to write instead, per field, for type errors. */
static const struct {
	const char *field, *example;
} examples[] = {
	{"image", "image: python (or image: ./rootfs for a local directory)"},
	{"memory", "memory: 1024 (MiB)"},
	{"cpus", "cpus: 2"},
	{"volumes", "volumes: [\"./data:/data\"]"},
	{"ports", "ports: [\"8080:80\"]"},
	{"envs", "envs: [\"DEBUG=1\"]"},
	{"depends_on", "depends_on: [db]"},
	{"workdir", "workdir: /app"},
	{"shell", "shell: /bin/sh"},
	{"scripts", "scripts: {start: \"python app.py\"}"},
	{"command", "command: [python, app.py]"},
	{"imports", "imports: {name: ./path}"},
	{"exports", "exports: {name: /path}"},
	{"scope", "scope: public (or none, group, any)"},
	{"version", "version: 1.0.0"},
	{"steps", "steps: [\"make\"]"},
	{"authors", "authors: [\"Jane <jane@example.com>\"]"},
	{"tags", "tags: [web]"},
	{"sandboxes", "sandboxes: {web: {image: python}}"},
	{"builds", "builds: {base: {image: python}}"},
	{"modules", "modules: {\"./db.yaml\": {db: null}}"},
	{"meta", "meta: {description: \"...\"}"},
};

static const char *example_for(const char *field)
{
	for (size_t i = 0; i < MSB_ARRAY_SIZE(examples); i++)
		if (strcmp(examples[i].field, field) == 0)
			return examples[i].example;
	return NULL;
}

__attribute__((format(printf, 3, 4))) static int at(struct sfctx *c, const struct ynode *n,
						    const char *fmt, ...)
{
	char what[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return msb_err_set(c->err, MSB_EK_USAGE, 0, "%s:%zu:%zu: %s", c->fname, n->start.line + 1,
			   n->start.col + 1, what);
}

static int wrong_type(struct sfctx *c, const struct ynode *n, const char *field, const char *want)
{
	const char *ex = example_for(field);
	return at(c, n, "'%s' must be %s, not %s%s%s", field, want, ynode_type_name(n),
		  ex ? "; e.g. " : "", ex ? ex : "");
}

static int oom(struct sfctx *c)
{
	return msb_err_set(c->err, MSB_EK_SYSTEM, ENOMEM, "reading %s", c->fname);
}

/* A text value; null leaves *out NULL.  Any scalar style is text, as in upstream. */
static int get_str(struct sfctx *c, const struct ynode *n, const char *field, char **out)
{
	*out = NULL;
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_SCALAR)
		return wrong_type(c, n, field, "text");
	if (strlen(n->str) != n->len)
		return at(c, n, "'%s' contains a NUL character; remove it", field);
	if (!(*out = strdup(n->str)))
		return oom(c);
	return 0;
}

static int get_uint(struct sfctx *c, const struct ynode *n, const char *field, unsigned long min,
		    unsigned long max, unsigned long *out)
{
	*out = 0;
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_SCALAR)
		return wrong_type(c, n, field, "a whole number");
	const char *s = n->str;
	if (*s == '+')
		s++;
	bool digits = *s != '\0';
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			digits = false;
	if (!n->plain || !digits)
		return at(c, n, "'%s' must be a whole number%s, not \"%.60s\"; e.g. %s", field,
			  n->plain ? "" : " written without quotes", n->str, example_for(field));
	errno = 0;
	unsigned long v = strtoul(s, NULL, 10);
	if (errno || v < min || v > max)
		return at(c, n, "'%s' is %.40s; it must be between %lu and %lu", field, n->str, min,
			  max);
	*out = v;
	return 0;
}

static int get_strv(struct sfctx *c, const struct ynode *n, const char *field, struct msb_strv *out)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_SEQ)
		return wrong_type(c, n, field, "a list of text values");
	for (size_t i = 0; i < n->n; i++) {
		_cleanup_free_ char *s = NULL;
		const struct ynode *it = n->items[i];
		if (ynode_is_null(it) || it->type != YN_SCALAR)
			return wrong_type(c, it, field,
					  "a list of text values (this item is not text)");
		if (get_str(c, it, field, &s) < 0)
			return -1;
		if (msb_strv_push(out, s, c->err) < 0)
			return -1;
	}
	return 0;
}

/* A mapping of names to text values, in file order (scripts, imports, exports). */
static int get_kvs(struct sfctx *c, const struct ynode *n, const char *field, bool segment_keys,
		   struct msb_kv **out, size_t *nout)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_MAP)
		return wrong_type(c, n, field, "a mapping of names to text");
	*out = calloc(n->n / 2 + 1, sizeof(**out));
	if (!*out)
		return oom(c);
	for (size_t i = 0; i + 1 < n->n; i += 2) {
		const struct ynode *k = n->items[i], *v = n->items[i + 1];
		struct msb_kv *kv = &(*out)[*nout];
		if (get_str(c, k, field, &kv->key) < 0)
			return -1;
		(*nout)++;
		if (!kv->key || (segment_keys && !msb_path_segment_valid(kv->key)))
			return at(c, k,
				  "'%s' is not a valid name in '%s'; use a file-name-like word "
				  "without '/', e.g. start",
				  k->str, field);
		if (ynode_is_null(v) || v->type != YN_SCALAR)
			return wrong_type(c, ynode_is_null(v) ? k : v, field,
					  "a mapping of names to text (this value is not text)");
		if (get_str(c, v, field, &kv->value) < 0)
			return -1;
	}
	return 0;
}

static int parse_meta(struct sfctx *c, const struct ynode *n, struct msb_meta *m)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_MAP)
		return wrong_type(c, n, "meta", "a mapping");
	m->present = true;
	if (get_strv(c, ynode_map_get(n, "authors"), "authors", &m->authors) < 0 ||
	    get_strv(c, ynode_map_get(n, "tags"), "tags", &m->tags) < 0 ||
	    get_str(c, ynode_map_get(n, "description"), "description", &m->description) < 0 ||
	    get_str(c, ynode_map_get(n, "homepage"), "homepage", &m->homepage) < 0 ||
	    get_str(c, ynode_map_get(n, "repository"), "repository", &m->repository) < 0 ||
	    get_str(c, ynode_map_get(n, "readme"), "readme", &m->readme) < 0 ||
	    get_str(c, ynode_map_get(n, "icon"), "icon", &m->icon) < 0)
		return -1;
	return 0;
}

static int parse_modules(struct sfctx *c, const struct ynode *n, struct msb_sandboxfile *sf)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_MAP)
		return wrong_type(c, n, "modules", "a mapping");
	sf->modules = calloc(n->n / 2 + 1, sizeof(*sf->modules));
	if (!sf->modules)
		return oom(c);
	for (size_t i = 0; i + 1 < n->n; i += 2) {
		const struct ynode *v = n->items[i + 1];
		struct msb_module *mod = &sf->modules[sf->nmodules++];
		if (!(mod->path = strdup(n->items[i]->str)))
			return oom(c);
		if (ynode_is_null(v))
			continue;
		if (v->type != YN_MAP)
			return wrong_type(c, v, "modules", "a mapping of component names");
		mod->components = calloc(v->n / 2 + 1, sizeof(*mod->components));
		if (!mod->components)
			return oom(c);
		for (size_t j = 0; j + 1 < v->n; j += 2) {
			const struct ynode *cv = v->items[j + 1];
			struct msb_kv *kv = &mod->components[mod->ncomponents++];
			if (!(kv->key = strdup(v->items[j]->str)))
				return oom(c);
			if (ynode_is_null(cv))
				continue;
			if (cv->type != YN_MAP)
				return wrong_type(c, cv, "modules",
						  "null or a mapping such as {as: alias}");
			if (get_str(c, ynode_map_get(cv, "as"), "as", &kv->value) < 0)
				return -1;
		}
	}
	return 0;
}

static int parse_volumes(struct sfctx *c, const struct ynode *n, struct msb_sandbox *sb)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_SEQ)
		return wrong_type(c, n, "volumes", "a list");
	sb->volumes = calloc(n->n + 1, sizeof(*sb->volumes));
	if (!sb->volumes)
		return oom(c);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *it = n->items[i];
		_cleanup_free_ char *s = NULL;
		if (ynode_is_null(it) || it->type != YN_SCALAR)
			return wrong_type(c, it, "volumes", "a list of HOST:GUEST paths");
		if (get_str(c, it, "volumes", &s) < 0)
			return -1;
		struct msb_path_pair *pp = &sb->volumes[sb->nvolumes];
		if (msb_path_pair_parse(s, pp, c->err) < 0)
			return at(c, it, "%s", c->err->msg);
		sb->nvolumes++;
		if (msb_path_pair_resolve(pp, c->project_dir, c->err) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (msb_guest_paths_overlap(sb->volumes[j].guest, pp->guest))
				return at(c, it,
					  "the guest path '%s' overlaps '%s' of an earlier volume; "
					  "mount each at a separate directory",
					  pp->guest, sb->volumes[j].guest);
	}
	return 0;
}

static int parse_ports(struct sfctx *c, const struct ynode *n, struct msb_sandbox *sb)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_SEQ)
		return wrong_type(c, n, "ports", "a list");
	sb->ports = calloc(n->n + 1, sizeof(*sb->ports));
	if (!sb->ports)
		return oom(c);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *it = n->items[i];
		if (ynode_is_null(it) || it->type != YN_SCALAR)
			return wrong_type(c, it, "ports", "a list of HOST:GUEST ports");
		struct msb_port_pair *pp = &sb->ports[sb->nports];
		if (msb_port_pair_parse(it->str, pp, c->err) < 0)
			return at(c, it, "%s", c->err->msg);
		sb->nports++;
		for (size_t j = 0; j < i; j++)
			if (sb->ports[j].host == pp->host)
				return at(c, it,
					  "host port %u is mapped twice; each host port can go to "
					  "one guest port",
					  pp->host);
	}
	return 0;
}

static int parse_envs(struct sfctx *c, const struct ynode *n, struct msb_sandbox *sb)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_SEQ)
		return wrong_type(c, n, "envs", "a list");
	sb->envs = calloc(n->n + 1, sizeof(*sb->envs));
	if (!sb->envs)
		return oom(c);
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *it = n->items[i];
		_cleanup_free_ char *s = NULL;
		if (ynode_is_null(it) || it->type != YN_SCALAR)
			return wrong_type(c, it, "envs", "a list of NAME=VALUE");
		if (get_str(c, it, "envs", &s) < 0)
			return -1;
		if (msb_env_pair_parse(s, &sb->envs[sb->nenvs], c->err) < 0)
			return at(c, it, "%s", c->err->msg);
		sb->nenvs++;
	}
	return 0;
}

/* One sandbox or build: `kn` is its name's node, `n` its value. */
static int parse_sandbox(struct sfctx *c, const struct ynode *kn, const struct ynode *n,
			 bool is_build, struct msb_sandbox *sb)
{
	const char *what = is_build ? "build" : "sandbox";
	sb->line = (unsigned)kn->start.line + 1;
	sb->column = (unsigned)kn->start.col + 1;
	sb->scope = MSB_SCOPE_DEFAULT;
	if (!(sb->name = strdup(kn->str)))
		return oom(c);
	if (!is_build && !msb_sandbox_name_valid(sb->name))
		return at(c, kn,
			  "'%s' is not a valid sandbox name; use 1-63 letters, digits, '_' or "
			  "'-', starting with a letter or digit",
			  kn->str);
	if (ynode_is_null(n) || n->type != YN_MAP)
		return at(c, ynode_is_null(n) ? kn : n,
			  "the %s '%s' must be a mapping of its settings, not %s; e.g. "
			  "`%s: {image: python}`",
			  what, kn->str, ynode_type_name(n), kn->str);
	const struct ynode *img = ynode_map_get(n, "image");
	if (get_str(c, img, "image", &sb->image) < 0)
		return -1;
	if (!sb->image || !*sb->image)
		return at(c, img ? img : kn, "the %s '%s' has no image; add e.g. `image: python`",
			  what, kn->str);
	sb->image_is_path = msb_image_is_path(sb->image);
	if (sb->image_is_path) {
		if (sb->image[0] == '/')
			sb->image_path = strdup(sb->image);
		else if (strcmp(sb->image, ".") == 0)
			sb->image_path = strdup(c->project_dir);
		else if (asprintf(&sb->image_path, "%s/%s", c->project_dir,
				  strncmp(sb->image, "./", 2) == 0 ? sb->image + 2 : sb->image) < 0)
			sb->image_path = NULL;
		if (!sb->image_path)
			return oom(c);
	} else if (msb_image_ref_check(sb->image, c->err) < 0) {
		return at(c, img, "%s", c->err->msg);
	}
	unsigned long v;
	if (get_uint(c, ynode_map_get(n, "memory"), "memory", 1, UINT32_MAX, &v) < 0)
		return -1;
	sb->memory_mib = (uint32_t)v;
	if (get_uint(c, ynode_map_get(n, "cpus"), "cpus", 1, 255, &v) < 0)
		return -1;
	sb->cpus = (uint8_t)v;
	if (parse_volumes(c, ynode_map_get(n, "volumes"), sb) < 0 ||
	    parse_ports(c, ynode_map_get(n, "ports"), sb) < 0 ||
	    parse_envs(c, ynode_map_get(n, "envs"), sb) < 0 ||
	    get_strv(c, ynode_map_get(n, "depends_on"), "depends_on", &sb->depends_on) < 0 ||
	    get_str(c, ynode_map_get(n, "shell"), "shell", &sb->shell) < 0 ||
	    get_strv(c, ynode_map_get(n, "command"), "command", &sb->command) < 0 ||
	    get_kvs(c, ynode_map_get(n, "imports"), "imports", false, &sb->imports, &sb->nimports) <
		    0 ||
	    get_kvs(c, ynode_map_get(n, "exports"), "exports", false, &sb->exports, &sb->nexports) <
		    0)
		return -1;
	const struct ynode *wd = ynode_map_get(n, "workdir");
	if (get_str(c, wd, "workdir", &sb->workdir) < 0)
		return -1;
	if (sb->workdir && sb->workdir[0] != '/')
		return at(c, wd, "'workdir' must be an absolute path in the sandbox, e.g. /app");
	if (sb->shell && !*sb->shell)
		return at(c, ynode_map_get(n, "shell"), "'shell' is empty; e.g. shell: /bin/sh");
	if (is_build)
		return get_strv(c, ynode_map_get(n, "steps"), "steps", &sb->steps);
	if (get_kvs(c, ynode_map_get(n, "scripts"), "scripts", true, &sb->scripts, &sb->nscripts) <
	    0)
		return -1;
	const struct ynode *ver = ynode_map_get(n, "version");
	if (get_str(c, ver, "version", &sb->version) < 0)
		return -1;
	if (sb->version && !msb_semver_valid(sb->version))
		return at(c, ver, "'version' is '%s', not a semantic version; e.g. version: 1.0.0",
			  sb->version);
	const struct ynode *sc = ynode_map_get(n, "scope");
	_cleanup_free_ char *scope = NULL;
	if (get_str(c, sc, "scope", &scope) < 0)
		return -1;
	if (scope && msb_scope_parse(scope, false, &sb->scope) < 0)
		return at(c, sc,
			  "'scope' is '%s'; write one of none, group, public, any (lowercase)",
			  scope);
	const struct ynode *meta = ynode_map_get(n, "meta");
	if (!ynode_is_null(meta) && meta->type != YN_MAP)
		return wrong_type(c, meta, "meta", "a mapping");
	return 0;
}

static int parse_entries(struct sfctx *c, const struct ynode *n, const char *field, bool is_build,
			 struct msb_sandbox **out, size_t *nout)
{
	if (ynode_is_null(n))
		return 0;
	if (n->type != YN_MAP)
		return wrong_type(c, n, field, "a mapping of names to settings");
	*out = calloc(n->n / 2 + 1, sizeof(**out));
	if (!*out)
		return oom(c);
	for (size_t i = 0; i + 1 < n->n; i += 2) {
		struct msb_sandbox *sb = &(*out)[(*nout)++];
		if (parse_sandbox(c, n->items[i], n->items[i + 1], is_build, sb) < 0)
			return -1;
	}
	return 0;
}

/* depends_on: every name is a sandbox of this file, not itself, no cycle. */
static int check_depends(struct sfctx *c, const struct msb_sandboxfile *sf)
{
	for (size_t i = 0; i < sf->nsandboxes; i++) {
		const struct msb_sandbox *sb = &sf->sandboxes[i];
		for (size_t j = 0; j < sb->depends_on.n; j++) {
			const char *d = sb->depends_on.v[j];
			if (!msb_sandboxfile_find(sf, d))
				return msb_err_set(c->err, MSB_EK_USAGE, 0,
						   "%s:%u:%u: the sandbox '%s' depends on '%s', "
						   "which is not a sandbox in this file; add it or "
						   "fix the name",
						   c->fname, sb->line, sb->column, sb->name, d);
		}
	}
	const struct msb_sandbox **order = NULL;
	size_t n = 0;
	int rc = msb_sandboxfile_start_order(sf, NULL, 0, &order, &n, c->err);
	free(order);
	return rc;
}

int msb_sandboxfile_parse(const char *text, size_t len, const char *fname, const char *project_dir,
			  struct msb_sandboxfile **out, struct msb_err *err)
{
	*out = NULL;
	struct ydoc doc;
	if (ydoc_parse(text, len, fname, &doc, err) < 0)
		return -1;
	struct sfctx c = {fname, project_dir, err};
	struct msb_sandboxfile *sf = calloc(1, sizeof(*sf));
	int rc = -1;
	if (!sf || !(sf->path = strdup(fname)) || !(sf->project_dir = strdup(project_dir))) {
		oom(&c);
		goto out;
	}
	const struct ynode *root = doc.root;
	if (!ynode_is_null(root) && root->type != YN_MAP) {
		at(&c, root,
		   "a Sandboxfile is a mapping with a 'sandboxes:' key, not %s; start from "
		   "`sandboxes:` and the sandboxes indented under it",
		   ynode_type_name(root));
		goto out;
	}
	if (!ynode_is_null(root)) {
		for (size_t i = 0; i < root->n; i += 2)
			if (root->items[i]->len == 9 &&
			    strcmp(root->items[i]->str, "sandboxes") == 0)
				sf->has_sandboxes_key = true;
		if (parse_meta(&c, ynode_map_get(root, "meta"), &sf->meta) < 0 ||
		    parse_modules(&c, ynode_map_get(root, "modules"), sf) < 0 ||
		    parse_entries(&c, ynode_map_get(root, "builds"), "builds", true, &sf->builds,
				  &sf->nbuilds) < 0 ||
		    parse_entries(&c, ynode_map_get(root, "sandboxes"), "sandboxes", false,
				  &sf->sandboxes, &sf->nsandboxes) < 0 ||
		    check_depends(&c, sf) < 0)
			goto out;
	}
	*out = steal_pointer(&sf);
	rc = 0;
out:
	ydoc_free(&doc);
	msb_sandboxfile_free(sf);
	return rc;
}

int msb_sandboxfile_load(const char *path, struct msb_sandboxfile **out, struct msb_err *err)
{
	*out = NULL;
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (msb_read_file(path, YTREE_MAX_INPUT_BYTES, MSB_EK_USAGE, &text, &len, err) < 0) {
		if (err->kind == MSB_EK_NOT_FOUND)
			return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
					   "%s does not exist; run `msb init` in the project "
					   "directory first (or pass -f DIR|FILE)",
					   path);
		return -1;
	}
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "loading %s", path);
	char dir[PATH_MAX];
	if (!realpath(dirname(copy), dir))
		return msb_err_sys(err, "resolving the directory of %s", path);
	return msb_sandboxfile_parse(text, len, path, dir, out, err);
}

void msb_strv_clear(struct msb_strv *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i]);
	free(v->v);
	v->v = NULL;
	v->n = 0;
}

int msb_strv_push(struct msb_strv *v, const char *s, struct msb_err *err)
{
	char **nv = realloc(v->v, (v->n + 2) * sizeof(*nv));
	if (!nv)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	v->v = nv;
	if (!(v->v[v->n] = strdup(s)))
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	v->v[++v->n] = NULL;
	return 0;
}

static void kvs_free(struct msb_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void sandbox_clear(struct msb_sandbox *sb)
{
	free(sb->name);
	free(sb->version);
	free(sb->image);
	free(sb->image_path);
	for (size_t i = 0; i < sb->nvolumes; i++)
		msb_path_pair_clear(&sb->volumes[i]);
	free(sb->volumes);
	free(sb->ports);
	for (size_t i = 0; i < sb->nenvs; i++)
		msb_env_pair_clear(&sb->envs[i]);
	free(sb->envs);
	msb_strv_clear(&sb->depends_on);
	free(sb->workdir);
	free(sb->shell);
	kvs_free(sb->scripts, sb->nscripts);
	msb_strv_clear(&sb->command);
	kvs_free(sb->imports, sb->nimports);
	kvs_free(sb->exports, sb->nexports);
	msb_strv_clear(&sb->steps);
}

void msb_sandboxfile_free(struct msb_sandboxfile *sf)
{
	if (!sf)
		return;
	free(sf->path);
	free(sf->project_dir);
	msb_strv_clear(&sf->meta.authors);
	msb_strv_clear(&sf->meta.tags);
	free(sf->meta.description);
	free(sf->meta.homepage);
	free(sf->meta.repository);
	free(sf->meta.readme);
	free(sf->meta.icon);
	for (size_t i = 0; i < sf->nmodules; i++) {
		free(sf->modules[i].path);
		kvs_free(sf->modules[i].components, sf->modules[i].ncomponents);
	}
	free(sf->modules);
	for (size_t i = 0; i < sf->nbuilds; i++)
		sandbox_clear(&sf->builds[i]);
	free(sf->builds);
	for (size_t i = 0; i < sf->nsandboxes; i++)
		sandbox_clear(&sf->sandboxes[i]);
	free(sf->sandboxes);
	free(sf);
}

const struct msb_sandbox *msb_sandboxfile_find(const struct msb_sandboxfile *sf, const char *name)
{
	for (size_t i = 0; i < sf->nsandboxes; i++)
		if (strcmp(sf->sandboxes[i].name, name) == 0)
			return &sf->sandboxes[i];
	return NULL;
}

const char *msb_sandbox_script(const struct msb_sandbox *sb, const char *name)
{
	for (size_t i = 0; i < sb->nscripts; i++)
		if (strcmp(sb->scripts[i].key, name) == 0)
			return sb->scripts[i].value;
	return NULL;
}

/* Depth-first post-order; mark: 0 unvisited, 1 on the path, 2 done. */
static int visit(const struct msb_sandboxfile *sf, size_t i, unsigned char *mark,
		 const struct msb_sandbox **out, size_t *nout, struct msb_err *err)
{
	const struct msb_sandbox *sb = &sf->sandboxes[i];
	if (mark[i] == 2)
		return 0;
	if (mark[i] == 1)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "%s:%u:%u: the sandbox '%s' depends on itself through "
				   "depends_on; remove one link of the cycle",
				   sf->path, sb->line, sb->column, sb->name);
	mark[i] = 1;
	for (size_t j = 0; j < sb->depends_on.n; j++) {
		const struct msb_sandbox *d = msb_sandboxfile_find(sf, sb->depends_on.v[j]);
		if (!d)
			return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
					   "the sandbox '%s' depends on '%s', which is not in %s",
					   sb->name, sb->depends_on.v[j], sf->path);
		if (visit(sf, (size_t)(d - sf->sandboxes), mark, out, nout, err) < 0)
			return -1;
	}
	mark[i] = 2;
	out[(*nout)++] = sb;
	return 0;
}

int msb_sandboxfile_start_order(const struct msb_sandboxfile *sf, const char *const *names,
				size_t n, const struct msb_sandbox ***out, size_t *nout,
				struct msb_err *err)
{
	*out = NULL;
	*nout = 0;
	_cleanup_free_ unsigned char *mark = calloc(sf->nsandboxes + 1, 1);
	_cleanup_free_ const struct msb_sandbox **order =
		calloc(sf->nsandboxes + 1, sizeof(*order));
	if (!mark || !order)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "ordering sandboxes");
	size_t count = 0;
	for (size_t k = 0; k < (n ? n : sf->nsandboxes); k++) {
		const struct msb_sandbox *sb =
			n ? msb_sandboxfile_find(sf, names[k]) : &sf->sandboxes[k];
		if (!sb)
			return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
					   "there is no sandbox '%s' in %s; `msb list` shows the "
					   "sandboxes",
					   names[k], sf->path);
		if (visit(sf, (size_t)(sb - sf->sandboxes), mark, order, &count, err) < 0)
			return -1;
	}
	*out = steal_pointer(&order);
	*nout = count;
	return 0;
}
