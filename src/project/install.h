/* Installed sandboxes (`msb install`, `msb uninstall`, `msb self uninstall`):
 * a sandbox becomes a command on PATH as a small sh launcher in the bin
 * directory ($MSB_BIN_DIR, else ~/.local/bin) that runs `msb exe` with the
 * options saved at install time:
 *
 *   #!/bin/sh
 *   # MSB-ALIAS: NAME
 *   exec '<msb>' exe '--memory' '512' 'python' -- "$@"
 *
 * The marker line (upstream's) is how msb recognises its own launchers: it
 * never overwrites or removes a file without it. */
#ifndef MSB_PROJECT_INSTALL_H
#define MSB_PROJECT_INSTALL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define MSB_ALIAS_MARKER "# MSB-ALIAS: "

/* $MSB_BIN_DIR, else $HOME/.local/bin (caller frees). */
int msb_bin_dir(char **out, struct msb_err *err);

/* s in single quotes for sh ('it'\''s'); caller frees, NULL on ENOMEM. */
char *msb_shell_quote(const char *s);

/* The launcher's text: `exe_args` are msb exe's options and IMAGE[~SCRIPT];
 * after "--" come the saved `args`, then the launcher's own arguments.
 * Caller frees *out. */
int msb_launcher_text(const char *name, const char *msb_exe, const char *const *exe_args, size_t n,
		      const char *const *args, size_t nargs, char **out, struct msb_err *err);

/* True when `path` is a launcher of msb (for `name`, or any when NULL). */
bool msb_launcher_is_ours(const char *path, const char *name);

/* Write dir/name (0755), creating dir.  An existing file that is not ours is
 * never replaced (MSB_EK_EXISTS); one of ours only with `replace`. */
int msb_launcher_install(const char *dir, const char *name, const char *text, bool replace,
			 struct msb_err *err);

/* Remove dir/name if it is ours: MSB_EK_NOT_FOUND when absent, MSB_EK_STATE
 * when the file is not an msb launcher. */
int msb_launcher_remove(const char *dir, const char *name, struct msb_err *err);

/* The names of msb's launchers in dir, sorted (a missing dir has none). */
int msb_launcher_list(const char *dir, char ***names, size_t *n, struct msb_err *err);

/* The first executable `name` on $PATH (caller frees), or NULL. */
char *msb_which(const char *name);

/* The command name `msb install IMAGE[~SCRIPT]` picks without a NAME, as
 * upstream: the script, else the image's last path component without tag or
 * digest ("docker.io/library/python:3.11" -> "python").  Refused (usage) when
 * that is not a valid name. */
int msb_install_default_name(const char *image, const char *script, char **out,
			     struct msb_err *err);

#endif
