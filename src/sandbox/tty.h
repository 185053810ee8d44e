/* The host side of an interactive session: this process's terminal in raw
 * mode, a command on a PTY in the guest, bytes pumped both ways, the window
 * size passed on at the start and on every SIGWINCH.  Used by msb exe / msb
 * run on a terminal and by msb-agent pty. */
#ifndef MSB_SANDBOX_TTY_H
#define MSB_SANDBOX_TTY_H

#include <stdbool.h>
#include <termios.h>

#include "agent/client.h"
#include "common/error.h"

struct tty_raw {
	int fd;
	bool active;
	struct termios saved;
};

/* Put terminal `fd` in raw mode (no echo, no line editing, no signals from
 * keys: Ctrl-C is a byte for the guest).  tty_raw_leave() restores it; an
 * atexit() hook restores it too should the process exit() meanwhile. */
int tty_raw_enter(int fd, struct tty_raw *t, struct msb_err *err);
void tty_raw_leave(struct tty_raw *t);

/* The window size of terminal fd; -1 when it is not a terminal. */
int tty_size(int fd, unsigned *rows, unsigned *cols);

/* Run o->argv on a PTY in the guest with this process's stdin and stdout
 * (raw mode while it runs when stdin is a terminal, restored on every
 * return).  o's pty, rows, cols, stdin_fd and stdout_fd are set here; TERM is
 * the host's unless o->term.  `stop`, when given, is asked every 200 ms and
 * by SIGTERM/SIGHUP/SIGQUIT (handled here if nobody else does): non-zero ends
 * the session with -1 (kind state, "interrupted").  *code: the command's
 * status (128 + signal when killed). */
int tty_session_run(struct agent_client *c, struct agent_exec_opts *o, int (*stop)(void), int *code,
		    struct msb_err *err);

/* ---- for msb exe / msb run ------------------------------------------------------- */
struct sandbox;
struct sandbox_cli_args;

/* Whether the command line asks for an interactive session: stdin and
 * stdout are terminals and no command was given (no --exec, no ARGS, no
 * script other than ~shell). */
bool sandbox_cli_wants_tty(const struct sandbox_cli_args *a);

/* sandbox_cli_run_foreground() on a PTY: argv runs with this terminal (raw
 * mode, window size and changes, Ctrl-C as a byte for the guest).  A fatal
 * signal (SIGTERM, SIGHUP) ends it with -1 (kind state) after the terminal
 * was restored; the handlers of sandbox_cli_signals_install() have already
 * dealt with the VM then. */
int sandbox_tty_run(struct sandbox *sb, char *const *argv, char *const *env, const char *cwd,
		    int *code, struct msb_err *err);

#endif
