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

#endif
