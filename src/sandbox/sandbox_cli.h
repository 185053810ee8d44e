/* What `msb exe` and `msb run` share: their command-line parser (pure) and
 * running one command in the foreground with signals handled so that nothing
 * outlives msb (Ctrl-C goes to the command; a second one, SIGTERM or SIGHUP
 * kills the VM). */
#ifndef MSB_SANDBOX_SANDBOX_CLI_H
#define MSB_SANDBOX_SANDBOX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"
#include "oci/manifest.h"
#include "project/sandboxfile.h"
#include "sandbox/net.h"
#include "sandbox/volumes.h"

struct sandbox;

enum sandbox_cli_kind { SANDBOX_CLI_EXE, SANDBOX_CLI_RUN };

struct sandbox_cli_args {
	char *target;			/* IMAGE (exe) or NAME (run), without ~SCRIPT; owned */
	const char *script;		/* after '~' (points into target's buffer), or NULL */
	const char *exec;		/* -e/--exec/-x, or NULL (borrowed from argv) */
	unsigned cpus;			/* 0: unset */
	unsigned memory_mib;		/* 0: unset */
	struct msb_strv envs;		/* --env K=V, checked */
	const char *workdir;		/* --workdir, absolute, or NULL */
	const char *file;		/* run: -f/--file, or NULL */
	const char *unsupported;	/* the first option given that is not supported yet */
	bool detach;			/* run: -d/--detach */
	const char *snapshot;		/* --snapshot NAME (exe: target is then NAME), or NULL */
	bool cold;			/* --cold: boot without the base snapshot */
	struct sandbox_net net;		/* -p ports (owned) and --scope (default public) */
	struct sandbox_volumes volumes; /* -v, checked (owned); run: added to the file's */
	bool scope_set;			/* --scope was given */
	char **args;			/* after "--" (borrowed from argv) */
	size_t nargs;
	bool help;
};

/* argv[0] is the command's name.  -1 with a usage error (never exits). */
int sandbox_cli_parse(enum sandbox_cli_kind kind, int argc, char **argv, struct sandbox_cli_args *a,
		      struct msb_err *err);
void sandbox_cli_args_clear(struct sandbox_cli_args *a);

/* Install the handlers for SIGINT, SIGTERM, SIGHUP and SIGQUIT (and ignore
 * SIGPIPE).  From now on a signal during a boot kills the VM being booted
 * (sandbox_cli_watch_pid) and sandbox_cli_signalled() reports it.  With
 * `ordered`, a first fatal signal while a command runs only ends
 * sandbox_cli_run_foreground() and the caller stops the VM in order (a second
 * signal kills it); without, the VM is killed at once. */
void sandbox_cli_signals_install(bool ordered);
/* The pid of the msb-vmm the handlers kill on SIGTERM/SIGHUP or a second SIGINT
 * (0: none).  Usable as a sandbox_spec.on_spawn callback (ctx unused). */
void sandbox_cli_watch_pid(void *ctx, pid_t pid);
/* The last fatal signal received, or 0. */
int sandbox_cli_signalled(void);
/* A command runs in the foreground (or no longer): signals are handled as
 * during sandbox_cli_run_foreground(), for callers that pump it themselves
 * (the interactive path, tty_cli.c). */
void sandbox_cli_command_runs(bool running);

/* Run argv in the sandbox with stdin/stdout/stderr of this process forwarded,
 * env and cwd as given.  *code: the command's status (128+signal when killed);
 * *oom_killed (unless NULL): the guest's memory guard killed it (EXIT's
 * OOM_KILLED, docs/agent-protocol.md).
 * A first Ctrl-C is sent to the command; a second one, SIGTERM or SIGHUP makes
 * this return -1 (kind state, "interrupted"), with the VM already killed unless
 * signals were installed `ordered`. */
int sandbox_cli_run_foreground(struct sandbox *sb, char *const *argv, char *const *env,
			       const char *cwd, bool forward_stdin, int *code, bool *oom_killed,
			       struct msb_err *err);

/* A Sandboxfile-shaped description of a throwaway sandbox for `image`, with the
 * image defaults applied (command, workdir) and `envs` as its envs. */
int sandbox_cli_exe_sandbox(const char *image, const struct oci_image_config *cfg,
			    const struct sandbox_cli_args *a, struct msb_sandbox *out,
			    struct msb_err *err);
/* Free what sandbox_cli_exe_sandbox() filled. */
void sandbox_cli_exe_sandbox_clear(struct msb_sandbox *sb);

#endif
