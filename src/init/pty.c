/* Commands on a pseudo-terminal: EXEC with the PTY field, and RESIZE.
 *
 * The command gets the slave side as stdin, stdout and stderr and as the
 * controlling terminal of its new session, so a shell has job control, Ctrl-C
 * (the byte 0x03 from the host) becomes SIGINT in the guest, and a size change
 * (TIOCSWINSZ on the master) reaches the foreground job as SIGWINCH.  The
 * master is the command's stream 1 (output) and stream 0 (input); there is no
 * stream 2.  A master read fails with EIO once every slave descriptor is
 * closed: that ends stream 1 like EOF (command.c's exec_read). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "init/exec.h"
#include "init/server_int.h"

#define DEFAULT_TERM "xterm"
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41) /* Linux 4.13; some libcs do not name it */
#endif

/* The environment plus TERM (from the PTY field, unless ENV names one). */
static char **env_with_term(const struct agent_exec_req *req, char *term_kv, size_t *n)
{
	char **env = calloc(req->envc + 2, sizeof(*env));
	if (!env)
		return NULL;
	bool have_term = false;
	for (size_t i = 0; i < req->envc; i++) {
		env[i] = req->env[i];
		have_term |= strncmp(req->env[i], "TERM=", 5) == 0;
	}
	*n = req->envc;
	if (!have_term)
		env[(*n)++] = term_kv;
	env[*n] = NULL;
	return env;
}

int pty_spawn(const struct agent_exec_req *req, struct spawned *out, uint32_t *wire_err,
	      struct msb_err *err)
{
	*wire_err = AGENT_E_SYSTEM;
	_cleanup_close_ int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (master < 0)
		return msb_err_sys(err, "opening a pseudo-terminal (/dev/ptmx)");
	int peer = -1;
	if (grantpt(master) < 0 || unlockpt(master) < 0)
		return msb_err_sys(err, "unlocking the pseudo-terminal");
	/* TIOCGPTPEER opens the slave without a path lookup; a kernel older than
	 * 4.13 lacks it, then the name from ptsname. */
	peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (peer < 0) {
		char name[64];
		if (ptsname_r(master, name, sizeof(name)) != 0)
			return msb_err_sys(err, "naming the pseudo-terminal");
		peer = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (peer < 0)
			return msb_err_sys(err, "opening %s", name);
	}
	_cleanup_close_ int slave = peer;
	struct winsize ws = {.ws_row = req->rows ? req->rows : 24,
			     .ws_col = req->cols ? req->cols : 80};
	if (ioctl(master, TIOCSWINSZ, &ws) < 0)
		return msb_err_sys(err, "setting the terminal size");
	char term_kv[80];
	snprintf(term_kv, sizeof(term_kv), "TERM=%s", req->term ? req->term : DEFAULT_TERM);
	size_t envc;
	_cleanup_free_ char **env = env_with_term(req, term_kv, &envc);
	if (!env)
		return msb_err_sys(err, "allocating the environment");
	struct agent_exec_req r = *req;
	r.env = env;
	r.envc = envc;
	const int fds[3] = {slave, slave, slave};
	pid_t pid;
	if (exec_spawn_fds(&r, fds, 3, true, &pid, wire_err, err) < 0)
		return -1;
	out->pid = pid;
	out->in_fd = -1;
	if (req->stdin_stream) {
		out->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
		if (out->in_fd < 0) {
			msb_err_sys(err, "duplicating the terminal");
			kill_tree(pid);
			return -1;
		}
	}
	out->out_fd = steal_fd(&master);
	out->err_fd = -1;
	return 0;
}

void handle_resize(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct msb_err err;
	uint16_t rows, cols;
	if (agent_decode_resize(p, h->len, &rows, &cols, &err) < 0) {
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, err.msg);
		return;
	}
	struct exec *e = find_exec(s, c, h->id);
	if (!e)
		return; /* it ended while the host was resizing: nothing to do */
	if (!e->pty) {
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, "RESIZE of a command without a PTY");
		return;
	}
	if (e->fds[1] < 0)
		return; /* the terminal is gone already */
	struct winsize ws = {.ws_row = rows, .ws_col = cols};
	/* The kernel sends SIGWINCH to the terminal's foreground process group. */
	if (ioctl(e->fds[1], TIOCSWINSZ, &ws) < 0)
		send_error(c, h->id, agent_err_from_errno(errno), errno,
			   "setting the terminal size");
}

void pty_send_eof(int master)
{
	struct termios t;
	/* On Linux the master reports the slave's settings. */
	cc_t c = tcgetattr(master, &t) == 0 && t.c_cc[VEOF] != _POSIX_VDISABLE ? t.c_cc[VEOF] : 4;
	if (write(master, &c, 1) < 0)
		msb_debug("writing EOF to a terminal: %s", strerror(errno));
}
