/* msb clean [NAMES...] [--force]: remove sandboxes' state in .menv/ (their
 * persistent writable layers, generated files, logs, state rows), or the
 * whole .menv/ without names. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "project/lifecycle.h"
#include "project/menv.h"

int cmd_clean(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: msb clean [NAME...] [-f PATH] [-F]\n\n"
		"Remove what the named sandboxes keep in .menv/: the writable layer (what\n"
		"they wrote), generated files, logs and state.  Without names, remove the\n"
		"whole .menv/ of the project (`msb init` makes a new one).\n\n"
		"Refused while a sandbox runs, while a named sandbox is still in the\n"
		"Sandboxfile, and (without names) while the Sandboxfile exists, unless:\n"
		"  -F, --force      stop the running ones first (in order), and clean anyway\n\n"
		"Options:\n" PCLI_OPTS_HELP);
}

/* Whether there is anything of `name` to clean: a config entry, a state row,
 * or files. */
static int known(struct pcli *c, const char *name, bool *yes, struct msb_err *err)
{
	*yes = c->sf && msb_sandboxfile_find(c->sf, name);
	if (*yes)
		return 0;
	if (c->st) {
		struct msb_state_row row;
		bool found = false;
		if (msb_state_get(c->st, name, c->p.config_name, &row, &found, err) < 0)
			return -1;
		if (found) {
			msb_state_row_clear(&row);
			*yes = true;
			return 0;
		}
	}
	char *paths[3] = {msb_project_rw_dir(&c->p, name), msb_project_patch_dir(&c->p, name),
			  msb_project_log_path(&c->p, name)};
	for (int i = 0; i < 3; i++) {
		if (paths[i] && access(paths[i], F_OK) == 0)
			*yes = true;
		free(paths[i]);
	}
	return 0;
}

int cmd_clean(int argc, char **argv)
{
	const char *cmd = "clean";
	static const struct option opts[] = {
		PCLI_LONG_OPTS,
		{"force", no_argument, NULL, 'F'},
		{"user", no_argument, NULL, 'u'},
		{"all", no_argument, NULL, 'a'},
		{0},
	};
	struct pcli c = {.cmd = cmd};
	bool force = false;
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS "Fua", opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		case 'F':
			force = true;
			break;
		case 'u':
		case 'a':
			return cli_usage_error(cmd, "removing $MICROSANDBOX_HOME is `msb self "
						    "uninstall` here");
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	char **names = argv + optind;
	size_t n = (size_t)(argc - optind);
	for (size_t i = 0; i < n; i++) {
		if (!msb_sandbox_name_valid(names[i]))
			return cli_usage_error(cmd, "'%s' is not a sandbox name", names[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return cli_usage_error(cmd, "'%s' is named twice", names[i]);
	}
	struct msb_err err = {0};
	int rc = 0;
	if (msb_project_resolve(c.file, false, &c.p, &err) < 0)
		return cli_fail(cmd, &err);
	if (access(c.p.menv, F_OK) < 0) {
		printf("Nothing to clean: %s has no %s/\n", c.p.dir, MSB_MENV_DIR);
		goto out;
	}
	/* A Sandboxfile that does not load does not stop a forced clean. */
	if (msb_project_load(&c.p, &c.sf, &err) < 0) {
		if (!force && err.kind != MSB_EK_NOT_FOUND) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		c.sf = NULL;
		err = (struct msb_err){0};
	}
	if ((rc = pcli_lock(&c)) != 0)
		goto out;
	if (msb_project_state(&c.p, &c.st, &err) < 0 || msb_state_reconcile(c.st, NULL, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		bool yes;
		if (known(&c, names[i], &yes, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		if (!yes) {
			msb_err_set(&err, MSB_EK_NOT_FOUND, 0,
				    "nothing to clean for '%s': it is not in %s and has no state",
				    names[i], c.p.config_path);
			rc = cli_fail(cmd, &err);
			goto out;
		}
		/* Every refusal before anything is removed. */
		if (!force && c.sf && msb_sandboxfile_find(c.sf, names[i])) {
			msb_err_set(&err, MSB_EK_STATE, 0,
				    "'%s' is still in %s; remove it from there first (msb remove "
				    "%s) or pass --force",
				    names[i], c.p.config_path, names[i]);
			rc = cli_fail(cmd, &err);
			goto out;
		}
		struct msb_state_row row;
		bool found = false;
		if (!force &&
		    msb_state_get(c.st, names[i], c.p.config_name, &row, &found, &err) == 0 &&
		    found) {
			bool alive = msb_state_row_alive(&row);
			msb_state_row_clear(&row);
			if (alive) {
				msb_err_set(&err, MSB_EK_STATE, 0,
					    "sandbox '%s' is running; stop it first (msb down %s) "
					    "or pass --force",
					    names[i], names[i]);
				rc = cli_fail(cmd, &err);
				goto out;
			}
		}
	}
	if (force) {
		/* Stop in reverse start order when the file loads; else row order. */
		struct msb_state_row *rows = NULL;
		size_t nrows = 0;
		if (msb_state_list(c.st, c.p.config_name, &rows, &nrows, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		const struct msb_sandbox **order = NULL;
		size_t norder = 0;
		if (c.sf && msb_sandboxfile_start_order(c.sf, NULL, 0, &order, &norder, &err) < 0)
			norder = 0;
		int timeout_ms = msb_stop_timeout_ms();
		for (size_t k = norder + nrows; k-- > 0 && rc == 0;) {
			const char *nm = k < norder ? order[k]->name : rows[k - norder].name;
			if (pcli_named(names, n, nm))
				rc = pcli_stop(&c, nm, timeout_ms);
		}
		free(order);
		msb_state_rows_free(rows, nrows);
		if (rc)
			goto out;
	}
	msb_state_close(c.st);
	c.st = NULL;
	if (n == 0) {
		if (msb_project_clean(&c.p, NULL, force, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		printf("Removed %s\n", c.p.menv);
	}
	for (size_t i = 0; i < n; i++) {
		if (msb_project_clean(&c.p, names[i], force, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		printf("Cleaned sandbox '%s'\n", names[i]);
	}
out:
	pcli_close(&c);
	return rc;
}
