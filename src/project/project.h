/* A project: a directory with a Sandboxfile and its .menv/ state.
 *
 *   <dir>/Sandboxfile                  the configuration (or another name, -f)
 *   <dir>/.menv/sandbox.db             state (project/state.h)
 *   <dir>/.menv/log/<config>/<name>.log
 *   <dir>/.menv/rw/<config>/<name>/    each sandbox's persistent writable layer
 *   <dir>/.menv/patch/<config>/<name>/ generated files (scripts, fstab)
 *
 * This is the C API the sandbox code (run/up/down/status/clean) builds on. */
#ifndef MSB_PROJECT_PROJECT_H
#define MSB_PROJECT_PROJECT_H

#include <stdbool.h>

#include "common/error.h"
#include "project/sandboxfile.h"
#include "project/state.h"

#define MSB_MENV_DIR	".menv"
#define MSB_STATE_DB	"sandbox.db"
#define MSB_DEFAULT_CFG "# Sandbox configurations\nsandboxes:\n"

struct msb_project {
	char *dir;	   /* absolute */
	char *config_name; /* one path segment: "Sandboxfile" unless -f named a file */
	char *config_path; /* dir/config_name */
	char *menv;	   /* dir/.menv */
};

/* Upstream's -f/--file: NULL -> the current directory; an existing directory ->
 * that directory; anything else -> a file: its parent ("." when none) is the
 * project and its base name the config.  With for_init, a path that does not
 * exist is a directory to create (as `msb init -f newdir` does upstream).
 * The project directory must exist otherwise (MSB_EK_NOT_FOUND). */
int msb_project_resolve(const char *file_opt, bool for_init, struct msb_project *p,
			struct msb_err *err);
void msb_project_release(struct msb_project *p);

/* Create .menv/{log,rw,patch}, .menv/sandbox.db, the config file with
 * MSB_DEFAULT_CFG when missing, and ".menv/" in .gitignore when absent.
 * Idempotent: an existing config, DB and .gitignore line are left as they are.
 * *created_config tells whether the config file was written. */
int msb_project_init(const struct msb_project *p, bool *created_config, struct msb_err *err);

/* Load the project's config (MSB_EK_NOT_FOUND with "run `msb init`" hint). */
int msb_project_load(const struct msb_project *p, struct msb_sandboxfile **out,
		     struct msb_err *err);
/* Open the state DB (requires .menv/: MSB_EK_NOT_FOUND otherwise). */
int msb_project_state(const struct msb_project *p, struct msb_state **out, struct msb_err *err);

/* Caller-owned paths of one sandbox's files. */
char *msb_project_log_path(const struct msb_project *p, const char *sandbox);
char *msb_project_rw_dir(const struct msb_project *p, const char *sandbox);
char *msb_project_patch_dir(const struct msb_project *p, const char *sandbox);

#endif
