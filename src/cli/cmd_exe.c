/* msb exe|x (and msx): run a command in a throwaway sandbox.  The VM, its run
 * directory and its writable layer (tmpfs in the guest) are gone afterwards,
 * whatever happened, Ctrl-C included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"

#include "agent/files_client.h"
#include "cli/cli.h"
#include "common/log.h"
#include "oci/pull.h"
#include "project/exec.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/snapshot.h"
#include "sandbox/tty.h"
#include "sandbox/usersnap.h"

struct vmstat_buf {
	char data[16384];
	size_t len;
};

static int vmstat_sink(void *ctx, const void *data, size_t len, struct msb_err *err)
{
	struct vmstat_buf *b = ctx;
	size_t room = sizeof(b->data) - 1 - b->len;
	memcpy(b->data + b->len, data, len < room ? len : room);
	b->len += len < room ? len : room;
	return 0;
}

/* A command killed by SIGKILL in a fresh sandbox: if msb-init's memory guard
 * did it (EXIT's OOM_KILLED) or the guest kernel's OOM killer (the backstop: an
 * "oom_kill N" line in /proc/vmstat, read through the agent: no process to
 * start), say so and what to do; a kill -9 of the user's own is left alone. */
static void explain_sigkill(struct sandbox *sb, bool guard_killed)
{
	if (guard_killed) {
		fprintf(stderr,
			"msb exe: the guest ran out of memory and its memory guard killed the "
			"command: the sandbox has %u MiB; give it more with --memory MIB\n",
			sb->memory_mib);
		return;
	}
	struct vmstat_buf b = {.data = "\n", .len = 1};
	struct msb_err ignored = {0};
	if (!sb->agent)
		return;
	agent_file_read(sb->agent, "/proc/vmstat", vmstat_sink, &b, NULL, &ignored);
	b.data[b.len] = '\0';
	const char *p = strstr(b.data, "\noom_kill ");
	if (p && strtoul(p + 10, NULL, 10) > 0)
		fprintf(stderr,
			"msb exe: the command was killed by the guest's out-of-memory killer: "
			"the sandbox has %u MiB; give it more with --memory MIB\n",
			sb->memory_mib);
}

static void exe_usage(FILE *out)
{
	fprintf(out,
		"Usage: msb exe [--image] IMAGE[~SCRIPT] [options] [-- ARGS...]\n"
		"       msx IMAGE [options] [-- ARGS...]\n\n"
		"Run a command in a throwaway sandbox; nothing is left behind afterwards.\n"
		"What runs: --exec CMD with ARGS; else ~shell (the image's /bin/sh); else the\n"
		"image's Entrypoint+Cmd, with ARGS replacing everything after its first word.\n\n"
		"  -i, --image IMAGE    the image (reference as for msb pull)\n"
		"  -e, -x, --exec CMD   the program to run (looked up in the image's PATH)\n"
		"      --cpus N         vCPUs (default 1)\n"
		"      --memory MIB     guest memory in MiB (default %u)\n"
		"      --env K=V        environment, after the image's Env (repeatable)\n"
		"      --workdir PATH   working directory (default: the image's WorkingDir, /)\n"
		"      --snapshot NAME  start from user snapshot NAME (msb snapshot create) "
		"instead\n"
		"                       of an image: its processes, files and memory as they were\n"
		"      --cold           boot the kernel instead of restoring the base snapshot\n"
		"  -v, --volume H:G[:ro] share host directory H at guest path G (at most 4;\n"
		"                       :ro read-only)\n"
		"  -p, --port [IP:]H:G[/udp]  forward host port H (on IP, default all\n"
		"                       addresses) to guest port G, TCP unless /udp (repeatable)\n"
		"      --scope S        network: none (no network at all), group or public\n"
		"                       (outbound only), any (outbound, and the gateway\n"
		"                       10.0.2.2 reaches the host's 127.0.0.1); default public\n\n"
		"stdin is forwarded, stdout and stderr are streamed separately, the exit status\n"
		"is the command's (128+N when killed by signal N).  Ctrl-C goes to the command;\n"
		"a second Ctrl-C stops the sandbox.  On a terminal without a command (no\n"
		"--exec, no ARGS) it runs interactively on a PTY in the guest: raw terminal,\n"
		"window size, Ctrl-C inside; the exit status is the shell's.\n"
		"Environment: MSB_BOOT_TIMEOUT (seconds, default 1800), MSB_NO_SNAPSHOT=1 (as\n"
		"--cold), MSB_NO_WARM_SNAPSHOT=1 (restore the base, not the image's warm\n"
		"snapshot), MSB_RESTORE_TIMEOUT (seconds), MSB_KERNEL, MSB_INITRD, MSB_VMM.\n",
		MSB_DEFAULT_MEMORY);
}

static void pull_status(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "msb: %s\n", msg);
}

/* The image from the store, pulled when absent: before any VM, so that a wrong
 * name costs nothing. */
static int load_image(const char *ref, struct oci_image **img, struct msb_err *err)
{
	struct oci_store *st = NULL;
	if (oci_store_open(NULL, &st, err) < 0)
		return msb_err_wrap(err, "opening the image store");
	struct oci_pull_opts po = {.status = pull_status};
	int r = oci_image_ensure(st, ref, &po, img, err);
	oci_store_close(st);
	return r < 0 ? msb_err_wrap(err, "image '%s'", ref) : 0;
}

/* The exit status of a failed start or run: 128+N after signal N (the VM and
 * its run directory are gone by then), else the error's. */
static int exe_failed(const char *cmd, struct msb_err *err)
{
	int sig = sandbox_cli_signalled();
	if (!sig)
		return cli_fail(cmd, err);
	fprintf(stderr, "msb exe: interrupted; the sandbox was removed\n");
	return 128 + sig;
}

int cmd_exe(int argc, char **argv);
int cmd_exe(int argc, char **argv)
{
	const char *cmd = "exe";
	struct msb_err err = {0};
	struct sandbox_cli_args a;
	if (sandbox_cli_parse(SANDBOX_CLI_EXE, argc, argv, &a, &err) < 0)
		return cli_usage_error(cmd, "%s", err.msg);
	if (a.help) {
		exe_usage(stdout);
		return 0;
	}
	int rc = 1;
	struct oci_image *img = NULL;
	struct msb_sandbox desc = {0};
	struct msb_exec_plan plan = {0};
	struct msb_strv env = {0};
	struct sandbox *sb = NULL;
	struct sandbox_snapmeta snap = {0};
	_cleanup_free_ char *snap_dir = NULL;
	struct sandbox_spec spec = {
		.name = "tmp",
		.cpus = a.cpus,
		.memory_mib = a.memory_mib,
		.cold = a.cold,
		.console_fd = -1,
		.on_spawn = sandbox_cli_watch_pid,
		.net = &a.net,
		.volumes = &a.volumes,
	};
	if (a.unsupported) {
		msb_err_set(&err, MSB_EK_USAGE, 0,
			    "%s is not supported yet; run without it (nothing was started)",
			    a.unsupported);
		rc = cli_fail(cmd, &err);
		goto out;
	}
	sandbox_cli_signals_install(false);
	/* Checked first: without KVM nothing else matters. */
	if (a.script && strcmp(a.script, MSB_SHELL_SCRIPT) != 0) {
		msb_err_set(&err, MSB_EK_USAGE, 0,
			    "an image has no scripts: only IMAGE~shell works with msb exe (scripts "
			    "live in a Sandboxfile: msb add, then msb run NAME~SCRIPT)");
		rc = cli_fail(cmd, &err);
		goto out;
	}
	struct sandbox_parts parts;
	if (sandbox_check_kvm(&err) < 0 || sandbox_find_parts(NULL, &parts, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	sandbox_parts_clear(&parts);
	if (a.snapshot && sandbox_snapshot_spec(a.snapshot, &spec, &snap_dir, &snap, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	const char *image = a.snapshot ? snap.image : a.target;
	spec.image = image;
	if (load_image(image, &img, &err) < 0 ||
	    sandbox_cli_exe_sandbox(image, &img->config, &a, &desc, &err) < 0 ||
	    msb_exec_resolve(&desc, a.script, a.exec, a.args, a.nargs, &plan, &err) < 0 ||
	    sandbox_merge_env((const char *const *)img->config.env, (const char *const *)a.envs.v,
			      &env, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (cli_is_tty(2))
		fprintf(stderr, "msb: starting a sandbox from %s...\n", img->reference);
	bool interactive = sandbox_cli_wants_tty(&a);
	/* A throwaway sandbox starts from its image's warm snapshot (made by the
	 * first run, with this run's program read into its page cache). */
	const char *warm[3];
	spec.warm = true;
	spec.warm_programs = warm;
	spec.nwarm_programs = sandbox_warm_programs(
		plan.argv[0], (const char *const *)img->config.entrypoint,
		(const char *const *)img->config.cmd, warm, sizeof(warm) / sizeof(warm[0]));
	for (size_t i = 0; i < env.n; i++)
		if (strncmp(env.v[i], "PATH=", 5) == 0)
			spec.warm_path = env.v[i] + 5;
	if (sandbox_start(&spec, &sb, &err) < 0) {
		rc = exe_failed(cmd, &err);
		goto out;
	}
	int code = 0;
	bool oom_killed = false;
	msb_debug("running %s", plan.argv[0]);
	if ((interactive ? sandbox_tty_run(sb, plan.argv, env.v, desc.workdir, &code, &err)
			 : sandbox_cli_run_foreground(sb, plan.argv, env.v, desc.workdir, true,
						      &code, &oom_killed, &err)) < 0) {
		rc = exe_failed(cmd, &err);
		goto out;
	}
	rc = code;
	msb_debug("%s exited with status %d", plan.argv[0], code);
	if (code == 128 + 9)
		explain_sigkill(sb, oom_killed);
	/* The writable layer is the guest's tmpfs and the image is read-only:
	 * nothing needs an ordered power-off, which costs minutes of emulated
	 * guest kernel time on PVM. */
	if (sandbox_stop(sb, SANDBOX_STOP_KILL, 0, &err) < 0)
		msb_warn("stopping the sandbox: %s", err.msg);
	msb_debug("msb-vmm stopped");
out:
	sandbox_free(sb);
	msb_debug("sandbox removed");
	msb_strv_clear(&env);
	msb_exec_plan_clear(&plan);
	sandbox_cli_exe_sandbox_clear(&desc);
	if (img)
		oci_image_free(img);
	sandbox_snapmeta_clear(&snap);
	sandbox_cli_args_clear(&a);
	return rc;
}
