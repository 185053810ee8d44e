/* The interactive path of msb exe / msb run (see tty.h).  Apart from tty.c
 * so that tty.c needs only the agent client (msb-agent links it alone). */
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "project/sandboxfile.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/tty.h"

bool sandbox_cli_wants_tty(const struct sandbox_cli_args *a)
{
	if (a->exec || a->nargs || (a->script && strcmp(a->script, MSB_SHELL_SCRIPT) != 0))
		return false;
	return isatty(0) && isatty(1);
}

static int cli_stop(void)
{
	return sandbox_cli_signalled();
}

int sandbox_tty_run(struct sandbox *sb, char *const *argv, char *const *env, const char *cwd,
		    int *code, struct msb_err *err)
{
	if (!sb->agent)
		return msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' is not running", sb->name);
	struct msb_err dir_err = {0};
	if (sandbox_ensure_dir(sb, cwd, &dir_err) < 0)
		msb_debug("%s", dir_err.msg);
	struct agent_exec_opts o = {
		.argv = (const char *const *)argv,
		.env = (const char *const *)env,
		.cwd = cwd,
	};
	/* A first SIGTERM/SIGHUP then leaves a persistent sandbox to the caller's
	 * ordered stop, as for a command on pipes. */
	sandbox_cli_command_runs(true);
	int rc = tty_session_run(sb->agent, &o, cli_stop, code, err);
	sandbox_cli_command_runs(false);
	if (rc < 0)
		return msb_err_wrap(err, "running %s on a terminal", argv[0]);
	return 0;
}
