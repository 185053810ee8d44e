/* msb apply: make what runs match the Sandboxfile — start what is missing,
 * stop what was removed, restart what changed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "common/cleanup.h"
#include "project/lifecycle.h"

int cmd_apply(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb apply [-f PATH]\n\n"
		     "Make the running sandboxes match the Sandboxfile: stop the ones no longer\n"
		     "in it, restart the ones whose entry changed since they were started (image,\n"
		     "resources, envs, scripts, command, ...; not comments or key order), and\n"
		     "start the ones that do not run, each after the ones it depends on.  Started\n"
		     "sandboxes run in the background as with `msb up`.\n\n"
		     "Options:\n" PCLI_OPTS_HELP
		     "  -d, --detach     accepted for upstream compatibility (always detached)\n");
}

/* Whether the running sandbox was started from another entry than this one.
 * Rows without a hash (an msb that did not record it) count as unchanged when
 * the config file has not been modified since they started. */
static bool changed(const struct msb_state_row *row, const struct msb_sandbox *sb,
		    const char *mtime)
{
	char hash[MSB_CONFIG_HASH_LEN + 1];
	msb_sandbox_config_hash(sb, hash);
	if (row->config_hash && row->config_hash[0])
		return strcmp(row->config_hash, hash) != 0;
	return !mtime || strcmp(mtime, row->config_last_modified) != 0;
}

int cmd_apply(int argc, char **argv)
{
	const char *cmd = "apply";
	struct pcli c = {.cmd = cmd};
	int rc = pcli_lifecycle_opts(&c, argc, argv, NULL, usage);
	if (rc != PCLI_GO)
		return rc;
	if (optind < argc)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if ((rc = pcli_open_locked(&c)) != 0)
		return rc;
	const struct msb_sandbox **order = NULL;
	size_t norder = 0;
	struct msb_state_row *rows = NULL;
	size_t nrows = 0;
	struct msb_err err = {0};
	_cleanup_free_ char *mtime = NULL;
	_cleanup_free_ char *exe = pcli_self_exe(&c, &rc);
	if (!exe)
		goto out;
	if (msb_sandboxfile_start_order(c.sf, NULL, 0, &order, &norder, &err) < 0 ||
	    msb_state_list(c.st, c.p.config_name, &rows, &nrows, &err) < 0 ||
	    msb_file_mtime_rfc3339(c.p.config_path, &mtime, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	int timeout_ms = msb_stop_timeout_ms();
	size_t acted = 0;
	for (size_t i = 0; i < nrows && rc == 0; i++) {
		if (msb_sandboxfile_find(c.sf, rows[i].name) || !msb_state_row_alive(&rows[i]))
			continue;
		printf("Sandbox '%s' is no longer in %s\n", rows[i].name, c.p.config_name);
		rc = pcli_stop(&c, rows[i].name, timeout_ms);
		acted++;
	}
	for (size_t i = 0; i < norder && rc == 0; i++) {
		const struct msb_sandbox *sb = order[i];
		struct msb_state_row *row = NULL;
		for (size_t j = 0; j < nrows; j++)
			if (strcmp(rows[j].name, sb->name) == 0)
				row = &rows[j];
		bool alive = row && msb_state_row_alive(row);
		if (alive && !changed(row, sb, mtime))
			continue;
		if (alive) {
			printf("Sandbox '%s' changed since it started: restarting it\n", sb->name);
			if ((rc = pcli_stop(&c, sb->name, timeout_ms)) != 0)
				break;
		}
		if ((rc = pcli_wait_deps(&c, sb)) == 0)
			rc = pcli_start(&c, exe, sb, alive ? "Restarted" : "Started");
		acted++;
	}
	if (rc == 0 && acted == 0)
		printf("Nothing to do: the running sandboxes match %s\n", c.p.config_path);
out:
	msb_state_rows_free(rows, nrows);
	free(order);
	pcli_close(&c);
	return rc;
}
