/* msb shell NAME [-- ARGS]: an interactive shell in a project sandbox.  A
 * sandbox running in the background (msb up, msb run -d) is joined through its
 * agent: a second session beside what it runs, on a PTY when this is a
 * terminal.  A stopped one is run in the foreground with its shell as the
 * command (`msb run NAME~shell`, as upstream), which stops it again when the
 * shell exits. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client.h"
#include "cli/cli.h"
#include "cli/project_cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "oci/import.h"
#include "oci/store.h"
#include "project/exec.h"
#include "project/lifecycle.h"
#include "sandbox/sandbox.h"
#include "sandbox/tty.h"

int cmd_shell(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb shell NAME [-f PATH] [-- ARGS...]\n\n"
		     "Open a shell in the sandbox: its script `shell` if it has one, else its\n"
		     "shell (shell:, default /bin/sh), with ARGS.  On a terminal it runs on a\n"
		     "pseudo-terminal (window size, Ctrl-C and job control inside); the shell's\n"
		     "exit status is msb's.\n\n"
		     "A sandbox running in the background (msb up, msb run -d) is joined: it\n"
		     "keeps running after the shell exits.  A stopped one is started for the\n"
		     "shell and stopped in order when it exits, as `msb run NAME~shell` does\n"
		     "(what the shell writes is kept in its writable layer).\n\n"
		     "Options:\n" PCLI_OPTS_HELP);
}

/* The image's Env, then the sandbox's envs. */
static int env_of(const struct msb_sandbox *d, const struct oci_image *img, struct msb_strv *out,
		  struct msb_err *err)
{
	struct msb_strv over = {0};
	int r = 0;
	for (size_t i = 0; i < d->nenvs && r == 0; i++) {
		_cleanup_free_ char *kv = NULL;
		if (asprintf(&kv, "%s=%s", d->envs[i].name, d->envs[i].value) < 0) {
			kv = NULL;
			r = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		} else {
			r = msb_strv_push(&over, kv, err);
		}
	}
	if (r == 0)
		r = sandbox_merge_env(img ? (const char *const *)img->config.env : NULL,
				      (const char *const *)over.v, out, err);
	msb_strv_clear(&over);
	return r;
}

/* Join the running sandbox through the agent socket its supervisor recorded. */
static int join(struct pcli *c, struct msb_sandbox *d, const char *socket, char **args,
		size_t nargs)
{
	struct msb_err err = {0};
	struct oci_store *st = NULL;
	struct oci_image *img = NULL;
	struct msb_exec_plan plan = {0};
	struct msb_strv env = {0};
	struct agent_client *ac = NULL;
	int rc = 0;
	/* The image's defaults (Env, WorkingDir) as the sandbox got them; the
	 * image is in the store since the sandbox runs on it. */
	if (oci_store_open(NULL, &st, &err) == 0) {
		int r = d->image_is_path ? oci_image_from_dir(st, d->image_path, &img, &err)
					 : oci_store_get(st, d->image, &img, &err);
		oci_store_close(st);
		if (r < 0) {
			msb_debug("image defaults of '%s': %s", d->image, err.msg);
			img = NULL;
		}
	}
	err = (struct msb_err){0};
	if ((img && sandbox_apply_image_defaults(d, &img->config, &err) < 0) ||
	    msb_exec_resolve(d, MSB_SHELL_SCRIPT, NULL, args, nargs, &plan, &err) < 0 ||
	    env_of(d, img, &env, &err) < 0)
		goto fail;
	ac = agent_client_open(socket, 10000, &err);
	if (!ac) {
		if (err.kind == MSB_EK_STATE) /* "the guest is busy": it is up */
			msb_err_wrap(&err, "joining sandbox '%s'", d->name);
		else
			msb_err_wrap(
				&err,
				"joining sandbox '%s' (is it still starting? see `msb log %s`)",
				d->name, d->name);
		goto fail;
	}
	struct agent_exec_opts o = {
		.argv = (const char *const *)plan.argv,
		.env = (const char *const *)env.v,
		.cwd = d->workdir,
		.stdin_fd = 0,
		.stdout_fd = 1,
		.stderr_fd = 2,
	};
	int code = 0;
	if (cli_is_tty(0) && cli_is_tty(1)) {
		if (tty_session_run(ac, &o, NULL, &code, &err) < 0)
			goto fail;
	} else {
		struct agent_exec_status es;
		if (agent_exec(ac, &o, &es, &err) < 0)
			goto fail;
		code = agent_exec_status_code(&es);
	}
	rc = code;
	goto out;
fail:
	rc = cli_fail(c->cmd, &err);
out:
	if (ac)
		agent_client_free(ac);
	msb_strv_clear(&env);
	msb_exec_plan_clear(&plan);
	if (img)
		oci_image_free(img);
	return rc;
}

int cmd_shell(int argc, char **argv)
{
	const char *cmd = "shell";
	static const struct option opts[] = {PCLI_LONG_OPTS, {0}};
	struct pcli c = {.cmd = cmd};
	int o;
	optind = 0;
	opterr = 0;
	/* '+': stop at the first non-option (NAME); ARGS follow "--". */
	while ((o = getopt_long(argc, argv, "+:" PCLI_SHORT_OPTS, opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "which sandbox? msb shell NAME");
	const char *name = argv[optind++];
	/* Options may follow the name too (msb shell web -f dir -- ls). */
	while (optind < argc && strcmp(argv[optind], "--") != 0) {
		if ((o = getopt_long(argc, argv, "+:" PCLI_SHORT_OPTS, opts, NULL)) == -1)
			return cli_usage_error(cmd,
					       "unexpected argument '%s' (arguments for the "
					       "shell go after --)",
					       argv[optind]);
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	char **args = NULL;
	size_t nargs = 0;
	if (optind < argc) {
		args = argv + optind + 1;
		nargs = (size_t)(argc - optind - 1);
	}
	if (strchr(name, '~'))
		return cli_usage_error(cmd,
				       "'%s': msb shell takes a sandbox name; for a script "
				       "use msb run NAME~SCRIPT",
				       name);
	int rc = pcli_open(&c, true);
	if (rc)
		return rc;
	struct msb_err err = {0};
	struct msb_state_row row = {0};
	bool found = false;
	_cleanup_free_ char *exe = NULL, *target = NULL;
	struct msb_sandbox *d = (struct msb_sandbox *)msb_sandboxfile_find(c.sf, name);
	if (!d) {
		msb_err_set(&err, MSB_EK_NOT_FOUND, 0,
			    "no sandbox '%s' in %s; run `msb list` to see the names", name,
			    c.p.config_path);
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (msb_state_get(c.st, name, c.p.config_name, &row, &found, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (found && msb_state_row_alive(&row) && !row.agent_socket[0]) {
		/* Started, still booting: the supervisor records the socket once the
		 * agent answers. */
		if (cli_is_tty(2))
			fprintf(stderr,
				"msb shell: waiting for sandbox '%s' to finish starting...\n",
				name);
		if (pcli_wait_ready(&c, name, &row, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
	}
	if (found && msb_state_row_alive(&row)) {
		rc = join(&c, d, row.agent_socket, args, nargs);
		goto out;
	}
	/* Stopped: `msb run NAME~shell -f CONFIG [-- ARGS]` in this process. */
	exe = msb_self_exe();
	if (!exe || asprintf(&target, "%s~%s", name, MSB_SHELL_SCRIPT) < 0) {
		target = NULL;
		msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "cannot find the msb executable");
		rc = cli_fail(cmd, &err);
		goto out;
	}
	char **v = calloc(nargs + 8, sizeof(char *));
	if (!v) {
		rc = 1;
		goto out;
	}
	size_t k = 0;
	v[k++] = exe;
	v[k++] = (char *)"run";
	v[k++] = target;
	v[k++] = (char *)"-f";
	v[k++] = c.p.config_path;
	v[k++] = (char *)"--";
	for (size_t i = 0; i < nargs; i++)
		v[k++] = args[i];
	v[k] = NULL;
	fflush(NULL);
	execv(exe, v);
	msb_err_sys(&err, "running %s", exe);
	free(v);
	rc = cli_fail(cmd, &err);
out:
	msb_state_row_clear(&row);
	pcli_close(&c);
	return rc;
}
