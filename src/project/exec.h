/* What a sandbox runs, in upstream's order:
 *   --exec CMD  ->  the named script (NAME~SCRIPT)  ->  scripts.start  ->
 *   command[0] with command[1..]  ->  shell  ->  error.
 * Arguments after `--` are passed to whatever runs; for `command` they replace
 * command[1..].  Scripts run as /.sandbox/scripts/<name> (absolute: upstream's
 * relative path broke when workdir was set), each written as
 * "#!<shell or /bin/sh>\n<body>\n" by the code that prepares the rootfs. */
#ifndef MSB_PROJECT_EXEC_H
#define MSB_PROJECT_EXEC_H

#include <stddef.h>

#include "common/error.h"
#include "project/sandboxfile.h"

#define MSB_SCRIPTS_DIR "/.sandbox/scripts"

enum msb_exec_source {
	MSB_EXEC_FROM_EXEC,    /* --exec */
	MSB_EXEC_FROM_SCRIPT,  /* NAME~SCRIPT */
	MSB_EXEC_FROM_START,   /* scripts.start */
	MSB_EXEC_FROM_COMMAND, /* command: */
	MSB_EXEC_FROM_SHELL,   /* shell: (or MSB_DEFAULT_SHELL for `~shell`) */
};

/* Write the sandbox's scripts into <root>/.sandbox/scripts/ (replacing what
 * was there): each as "#!<shell or /bin/sh>\n<body>\n", mode 0750, as upstream.
 * `root` is the directory that becomes the guest's / for these files (the
 * sandbox's patch directory).  Script names were checked by the loader. */
int msb_exec_write_scripts(const char *root, const struct msb_sandbox *sb, struct msb_err *err);

struct msb_exec_plan {
	enum msb_exec_source source;
	char **argv; /* NULL-terminated; argv[0] is the program (path in the guest) */
	size_t argc;
};

/* script and exec_cmd may be NULL; both set is a usage error.  A named script
 * must exist in sb->scripts, except "shell": without a script of that name it
 * runs the sandbox's shell (or /bin/sh) directly.  The plan is
 * caller-owned (msb_exec_plan_clear). */
int msb_exec_resolve(const struct msb_sandbox *sb, const char *script, const char *exec_cmd,
		     char *const *args, size_t nargs, struct msb_exec_plan *plan,
		     struct msb_err *err);
void msb_exec_plan_clear(struct msb_exec_plan *plan);

#endif
