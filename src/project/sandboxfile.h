/* The Sandboxfile: upstream's YAML schema (meta, modules, builds, sandboxes),
 * loaded into plain structs.  Unknown keys are ignored, as upstream; wrong
 * types and bad values are refused with "<file>:<line>:<col>: <what>; <what to
 * write instead>" and error kind usage.  See docs/sandboxfile.md. */
#ifndef MSB_PROJECT_SANDBOXFILE_H
#define MSB_PROJECT_SANDBOXFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "project/pairs.h"

#define MSB_SANDBOXFILE_NAME "Sandboxfile"
#define MSB_DEFAULT_SHELL    "/bin/sh"
#define MSB_START_SCRIPT     "start"
#define MSB_SHELL_SCRIPT     "shell"
#define MSB_DEFAULT_MEMORY   1024 /* MiB, when `memory` is unset */
#define MSB_DEFAULT_CPUS     1

struct msb_kv {
	char *key;
	char *value; /* NULL when the YAML value was null (modules' components) */
};

struct msb_strv {
	char **v;
	size_t n;
};

/* One entry of `sandboxes:` (or of `builds:`, which adds `steps`). */
struct msb_sandbox {
	char *name;
	unsigned line, column; /* of its name in the file, 1-based */
	char *version;	       /* semver as written, or NULL */
	char *image;	       /* as written */
	bool image_is_path;    /* starts with '.' or '/': a local rootfs directory */
	char *image_path;      /* absolute (joined to the project dir) when image_is_path */
	uint32_t memory_mib;   /* 0: unset (MSB_DEFAULT_MEMORY) */
	uint8_t cpus;	       /* 0: unset (MSB_DEFAULT_CPUS) */
	struct msb_path_pair *volumes;
	size_t nvolumes;
	struct msb_port_pair *ports;
	size_t nports;
	struct msb_env_pair *envs;
	size_t nenvs;
	struct msb_strv depends_on;
	char *workdir;		/* absolute, or NULL */
	char *shell;		/* or NULL (MSB_DEFAULT_SHELL where a shell is needed) */
	struct msb_kv *scripts; /* in file order */
	size_t nscripts;
	struct msb_strv command;
	struct msb_kv *imports, *exports;
	size_t nimports, nexports;
	struct msb_strv steps; /* builds only */
	enum msb_scope scope;  /* MSB_SCOPE_DEFAULT when unset */
};

struct msb_meta {
	bool present;
	struct msb_strv authors, tags;
	char *description, *homepage, *repository, *readme, *icon;
};

struct msb_module {
	char *path;
	struct msb_kv *components; /* value = `as` alias or NULL */
	size_t ncomponents;
};

struct msb_sandboxfile {
	char *path;	   /* as given to load, or the display name given to parse */
	char *project_dir; /* relative volume hosts and image paths are joined to it */
	struct msb_meta meta;
	struct msb_module *modules;
	size_t nmodules;
	struct msb_sandbox *builds;
	size_t nbuilds;
	struct msb_sandbox *sandboxes; /* in file order */
	size_t nsandboxes;
	bool has_sandboxes_key;
};

/* Parse `len` bytes of YAML.  `fname` is used in messages; `project_dir`
 * (absolute) resolves relative paths.  *out is caller-owned
 * (msb_sandboxfile_free).  -1 with a usage error on a bad file. */
int msb_sandboxfile_parse(const char *text, size_t len, const char *fname, const char *project_dir,
			  struct msb_sandboxfile **out, struct msb_err *err);

/* Read and parse `path`; the project directory is its parent made absolute.
 * A missing file is MSB_EK_NOT_FOUND ("... run `msb init`"). */
int msb_sandboxfile_load(const char *path, struct msb_sandboxfile **out, struct msb_err *err);

void msb_sandboxfile_free(struct msb_sandboxfile *sf);

/* Borrowed pointer into sf, or NULL. */
const struct msb_sandbox *msb_sandboxfile_find(const struct msb_sandboxfile *sf, const char *name);

/* The sandboxes to start for `names` (all sandboxes when n == 0), each after
 * the ones it depends on, transitively, each once.  *out is a caller-owned
 * array of borrowed pointers.  Unknown names: MSB_EK_NOT_FOUND. */
int msb_sandboxfile_start_order(const struct msb_sandboxfile *sf, const char *const *names,
				size_t n, const struct msb_sandbox ***out, size_t *nout,
				struct msb_err *err);

/* Helpers on the model. */
const char *msb_sandbox_script(const struct msb_sandbox *sb, const char *name);
void msb_strv_clear(struct msb_strv *v);
int msb_strv_push(struct msb_strv *v, const char *s, struct msb_err *err);

#endif
