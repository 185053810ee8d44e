/* One command in the foreground of the CLI, and what a signal does meanwhile.
 * Signal handlers can only reach globals: the three below are the whole of it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"

static volatile sig_atomic_t watched_pid;   /* msb-vmm to kill on a fatal signal */
static volatile sig_atomic_t interrupts;    /* SIGINTs received */
static volatile sig_atomic_t fatal_sig;	    /* the signal that means "tear down" */
static volatile sig_atomic_t in_command;    /* a command runs: Ctrl-C is its */
static volatile sig_atomic_t stop_in_order; /* while a command runs, leave the VM to the caller */

static void on_signal(int sig)
{
	/* The first Ctrl-C is the command's; during a boot there is none. */
	if (sig == SIGINT && in_command && ++interrupts < 2)
		return;
	bool first = !fatal_sig;
	fatal_sig = sig;
	/* A persistent sandbox is stopped in order by the caller after the first
	 * signal; a throwaway one, a boot, or a second signal: at once. */
	if (stop_in_order && in_command && first)
		return;
	if (watched_pid > 0)
		kill((pid_t)watched_pid, SIGKILL);
}

void sandbox_cli_signals_install(bool ordered)
{
	stop_in_order = ordered;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: waits return EINTR and look again */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void sandbox_cli_watch_pid(void *ctx, pid_t pid)
{
	(void)ctx;
	watched_pid = pid;
	/* A signal that came before msb-vmm ran still stops it.  (0: none; never
	 * kill(0), which is the whole process group.) */
	if (fatal_sig && pid > 0)
		kill(pid, SIGKILL);
}

int sandbox_cli_signalled(void)
{
	return fatal_sig;
}

void sandbox_cli_command_runs(bool running)
{
	interrupts = 0;
	in_command = running;
}

int sandbox_cli_run_foreground(struct sandbox *sb, char *const *argv, char *const *env,
			       const char *cwd, bool forward_stdin, int *code, bool *oom_killed,
			       struct msb_err *err)
{
	if (!sb->agent)
		return msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' is not running", sb->name);
	interrupts = 0;
	/* Best effort: a missing working directory is created, as Docker does; if
	 * that fails the command's own start reports the directory. */
	struct msb_err dir_err = {0};
	if (sandbox_ensure_dir(sb, cwd, &dir_err) < 0)
		msb_debug("%s", dir_err.msg);
	struct agent_exec_opts o = {
		.argv = (const char *const *)argv,
		.env = (const char *const *)env,
		.cwd = cwd,
		.stdin_fd = forward_stdin ? 0 : -1,
		.stdout_fd = 1,
		.stderr_fd = 2,
	};
	struct agent_exec *e = agent_exec_start(sb->agent, &o, err);
	if (!e)
		return msb_err_wrap(err, "running %s", argv[0]);
	sig_atomic_t sent = 0;
	in_command = 1;
	while (!agent_exec_done(e)) {
		if (fatal_sig) {
			in_command = 0;
			if (!stop_in_order)
				sandbox_kill_from_signal(sb);
			return msb_err_set(err, MSB_EK_STATE, 0, "interrupted by signal %d",
					   (int)fatal_sig);
		}
		if (interrupts > sent) {
			sent = interrupts;
			struct msb_err ignored = {0};
			if (agent_exec_signal(sb->agent, e, SIGINT, &ignored) < 0)
				msb_debug("forwarding SIGINT: %s", ignored.msg);
		}
		if (agent_client_pump(sb->agent, 200, err) < 0) {
			if (fatal_sig)
				continue;
			in_command = 0;
			return msb_err_wrap(err, "running %s", argv[0]);
		}
	}
	in_command = 0;
	struct agent_exec_status st;
	if (agent_exec_wait(sb->agent, e, &st, err) < 0)
		return msb_err_wrap(err, "running %s", argv[0]);
	*code = agent_exec_status_code(&st);
	if (oom_killed)
		*oom_killed = st.oom_killed;
	return 0;
}

int sandbox_cli_exe_sandbox(const char *image, const struct oci_image_config *cfg,
			    const struct sandbox_cli_args *a, struct msb_sandbox *out,
			    struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	/* Upstream names the throwaway sandbox "tmp" too. */
	out->name = strdup("tmp");
	out->image = strdup(image);
	out->workdir = a->workdir ? strdup(a->workdir) : NULL;
	if (!out->name || !out->image || (a->workdir && !out->workdir)) {
		sandbox_cli_exe_sandbox_clear(out);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	out->cpus = (uint8_t)a->cpus;
	out->memory_mib = a->memory_mib;
	if (sandbox_apply_image_defaults(out, cfg, err) < 0) {
		sandbox_cli_exe_sandbox_clear(out);
		return -1;
	}
	return 0;
}

void sandbox_cli_exe_sandbox_clear(struct msb_sandbox *sb)
{
	free(sb->name);
	free(sb->image);
	free(sb->workdir);
	msb_strv_clear(&sb->command);
	memset(sb, 0, sizeof(*sb));
}
