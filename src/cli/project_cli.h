/* What the project verbs (up, down, apply, status, log, clean, shell) share:
 * the -f/--file and -p/--path project option, loading the project, its
 * Sandboxfile and state DB, and checking the names a user typed. */
#ifndef MSB_CLI_PROJECT_CLI_H
#define MSB_CLI_PROJECT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "project/project.h"

/* getopt_long rows and short letters every project verb takes; the verb's
 * switch handles them with PCLI_CASES. */
#define PCLI_SHORT_OPTS "f:p:sbh"
#define PCLI_LONG_OPTS                                                                  \
	{"file", required_argument, NULL, 'f'}, {"path", required_argument, NULL, 'p'}, \
		{"sandbox", no_argument, NULL, 's'}, {"build", no_argument, NULL, 'b'}, \
	{                                                                               \
		"help", no_argument, NULL, 'h'                                          \
	}

#define PCLI_CASES(c, cmd, usage)                                            \
	case 'f':                                                            \
	case 'p':                                                            \
		(c).file = optarg;                                           \
		break;                                                       \
	case 's':                                                            \
		break;                                                       \
	case 'b':                                                            \
		return cli_usage_error(cmd, "builds are not supported yet"); \
	case 'h':                                                            \
		usage(stdout);                                               \
		return 0

#define PCLI_OPTS_HELP                                                                      \
	"  -f, --file PATH  the project directory, or the config file in it (default: .)\n" \
	"  -p, --path DIR   the same (the project directory)\n"                             \
	"  -h, --help       show this help\n"

struct pcli {
	const char *cmd;
	const char *file; /* -f/-p, or NULL */
	struct msb_project p;
	struct msb_sandboxfile *sf;
	struct msb_state *st;
	bool locked; /* lock_fd holds the flock on .menv/ (pcli_lock) */
	int lock_fd;
};

/* Resolve the project, load its Sandboxfile (line:column errors) and, with
 * `state`, open its DB and correct RUNNING rows whose processes are gone.  On
 * failure the message is printed and the exit status returned (> 0). */
int pcli_open(struct pcli *c, bool state);
void pcli_close(struct pcli *c);

/* Verbs that start or stop sandboxes (up, down, apply, clean) run one at a
 * time per project: an exclusive flock on the .menv/ directory, held until
 * pcli_close.  Says so on stderr when it has to wait.  0, or the message
 * printed and the exit status. */
int pcli_lock(struct pcli *c);

/* pcli_open(c, true), then pcli_lock(c): what the verbs that start or stop
 * sandboxes begin with.  0, or the message printed, c closed and the exit
 * status. */
int pcli_open_locked(struct pcli *c);

/* The options of the verbs that start or stop sandboxes: the project ones,
 * and -d/--detach (up, apply: accepted, they always detach) or, when
 * `timeout_ms` is given, -t/--timeout SECONDS (down).  PCLI_GO to go on
 * (optind at the first operand), else the exit status to return (0 after
 * --help). */
#define PCLI_GO (-1)
int pcli_lifecycle_opts(struct pcli *c, int argc, char **argv, int *timeout_ms,
			void (*usage)(FILE *out));

/* Whether sandbox `name` runs now (*pid: its msb-vmm, when given).  0, or the
 * message printed and the exit status. */
int pcli_running(struct pcli *c, const char *name, bool *alive, int *pid);
/* msb itself, to start sandboxes with (caller frees).  NULL: message printed,
 * *rc the exit status. */
char *pcli_self_exe(struct pcli *c, int *rc);

/* Every name must be a sandbox of the Sandboxfile (or, with `or_state`, have
 * a row in the state DB) and appear once: else the message and exit status. */
int pcli_check_names(struct pcli *c, char **names, size_t n, bool or_state);
/* Whether `name` is one of the n names typed (no names: every sandbox is). */
bool pcli_named(char **names, size_t n, const char *name);

/* Start one sandbox detached (msb run NAME -d), record the hash of the
 * config it was started with, print "<verb> sandbox 'NAME' (...)".  0, or the
 * message printed and the exit status. */
int pcli_start(struct pcli *c, const char *exe, const struct msb_sandbox *sb, const char *verb);
/* Stop one sandbox in order if it runs ("Stopped sandbox 'NAME'"). */
int pcli_stop(struct pcli *c, const char *name, int timeout_ms);

/* Wait until the running sandbox `name` is up (its supervisor recorded the
 * agent socket: the guest answers), or it stops; *row is its row then.
 * Bounded by $MSB_BOOT_TIMEOUT (default 1800 s): MSB_EK_TIMEOUT. */
int pcli_wait_ready(struct pcli *c, const char *name, struct msb_state_row *row,
		    struct msb_err *err);
/* Before starting sb: wait for each of its dependencies that is still
 * booting ("Waiting for sandbox 'db' to be up before starting 'web'").  One
 * that runs and exits (a one-shot job) does not hold it back.  0, or the
 * message printed and the exit status. */
int pcli_wait_deps(struct pcli *c, const struct msb_sandbox *sb);

/* "1h02m", "3m05s", "12s" into buf. */
void pcli_duration(char *buf, size_t len, int64_t seconds);
/* "1.5 GiB", "12.0 MiB", "512 B" into buf. */
void pcli_bytes(char *buf, size_t len, uint64_t bytes);

#endif
