#include "project/exec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/paths.h"
#include "project/edit.h"
#include "project/menv.h"

static int push(struct msb_exec_plan *p, const char *s, struct msb_err *err)
{
	char **v = realloc(p->argv, (p->argc + 2) * sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	p->argv = v;
	if (!(v[p->argc] = strdup(s)))
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	v[++p->argc] = NULL;
	return 0;
}

static int script_path(struct msb_exec_plan *p, const char *name, struct msb_err *err)
{
	char *path;
	if (asprintf(&path, "%s/%s", MSB_SCRIPTS_DIR, name) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	int rc = push(p, path, err);
	free(path);
	return rc;
}

int msb_exec_resolve(const struct msb_sandbox *sb, const char *script, const char *exec_cmd,
		     char *const *args, size_t nargs, struct msb_exec_plan *plan,
		     struct msb_err *err)
{
	memset(plan, 0, sizeof(*plan));
	int rc;
	if (script && exec_cmd)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "give either NAME~SCRIPT or --exec, not both");
	if (exec_cmd) {
		if (!*exec_cmd)
			return msb_err_set(err, MSB_EK_USAGE, 0, "--exec needs a command");
		plan->source = MSB_EXEC_FROM_EXEC;
		rc = push(plan, exec_cmd, err);
	} else if (script && strcmp(script, MSB_SHELL_SCRIPT) == 0 &&
		   !msb_sandbox_script(sb, script)) {
		/* `~shell` without a user script of that name: the shell itself
		 * (upstream ran a file holding only the shell's path). */
		plan->source = MSB_EXEC_FROM_SHELL;
		rc = push(plan, sb->shell ? sb->shell : MSB_DEFAULT_SHELL, err);
	} else if (script) {
		if (!msb_sandbox_script(sb, script)) {
			msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				    "the sandbox '%s' has no script '%s'; add it under scripts: "
				    "or run `msb list` to see the scripts",
				    sb->name, script);
			return -1;
		}
		plan->source = MSB_EXEC_FROM_SCRIPT;
		rc = script_path(plan, script, err);
	} else if (msb_sandbox_script(sb, MSB_START_SCRIPT)) {
		plan->source = MSB_EXEC_FROM_START;
		rc = script_path(plan, MSB_START_SCRIPT, err);
	} else if (sb->command.n) {
		plan->source = MSB_EXEC_FROM_COMMAND;
		rc = push(plan, sb->command.v[0], err);
		for (size_t i = 1; rc == 0 && nargs == 0 && i < sb->command.n; i++)
			rc = push(plan, sb->command.v[i], err);
	} else if (sb->shell) {
		plan->source = MSB_EXEC_FROM_SHELL;
		rc = push(plan, sb->shell, err);
	} else {
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "the sandbox '%s' has nothing to run: add scripts.start, "
				   "command or shell to it, or pass --exec CMD",
				   sb->name);
	}
	for (size_t i = 0; rc == 0 && i < nargs; i++)
		rc = push(plan, args[i], err);
	if (rc < 0)
		msb_exec_plan_clear(plan);
	return rc;
}

void msb_exec_plan_clear(struct msb_exec_plan *plan)
{
	for (size_t i = 0; i < plan->argc; i++)
		free(plan->argv[i]);
	free(plan->argv);
	memset(plan, 0, sizeof(*plan));
}

int msb_exec_write_scripts(const char *root, const struct msb_sandbox *sb, struct msb_err *err)
{
	char *dir = NULL;
	if (asprintf(&dir, "%s%s", root, MSB_SCRIPTS_DIR) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	int rc = msb_remove_tree(dir, err);
	if (rc == 0)
		rc = msb_mkdir_p(dir, 0755, err);
	const char *shell = sb->shell ? sb->shell : MSB_DEFAULT_SHELL;
	for (size_t i = 0; rc == 0 && i < sb->nscripts; i++) {
		char *path = NULL, *text = NULL;
		if (asprintf(&path, "%s/%s", dir, sb->scripts[i].key) < 0)
			path = NULL;
		if (path && asprintf(&text, "#!%s\n%s\n", shell, sb->scripts[i].value) < 0)
			text = NULL;
		if (!path || !text) {
			rc = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		} else {
			rc = msb_write_file_atomic(path, text, strlen(text), 0750, err);
		}
		free(path);
		free(text);
	}
	free(dir);
	return rc < 0 ? msb_err_wrap(err, "writing the scripts of '%s'", sb->name) : 0;
}
