/* Interactive sessions on the host terminal (see tty.h).  A signal handler
 * can only reach globals: the two flags below and the one terminal to
 * restore at exit are the whole of it. */
#include "sandbox/tty.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static volatile sig_atomic_t winch_seen; /* the window changed since the last look */
static volatile sig_atomic_t fatal_seen; /* SIGTERM/SIGHUP/SIGQUIT while nobody else handles it */
static struct tty_raw *restore_at_exit;	 /* the terminal in raw mode right now */
static bool atexit_done;

static void restore_hook(void)
{
	if (restore_at_exit && restore_at_exit->active)
		tcsetattr(restore_at_exit->fd, TCSAFLUSH, &restore_at_exit->saved);
}

int tty_raw_enter(int fd, struct tty_raw *t, struct msb_err *err)
{
	t->fd = fd;
	t->active = false;
	if (tcgetattr(fd, &t->saved) < 0)
		return msb_err_sys(err, "reading the terminal's settings");
	struct termios raw = t->saved;
	cfmakeraw(&raw);
	/* TCSANOW: what was typed ahead during the boot is kept for the guest. */
	if (tcsetattr(fd, TCSANOW, &raw) < 0)
		return msb_err_sys(err, "switching the terminal to raw mode");
	t->active = true;
	restore_at_exit = t;
	if (!atexit_done && atexit(restore_hook) == 0)
		atexit_done = true;
	return 0;
}

void tty_raw_leave(struct tty_raw *t)
{
	if (!t->active)
		return;
	/* TCSADRAIN: what the guest printed last is still shown. */
	while (tcsetattr(t->fd, TCSADRAIN, &t->saved) < 0 && errno == EINTR)
		;
	t->active = false;
	if (restore_at_exit == t)
		restore_at_exit = NULL;
}

int tty_size(int fd, unsigned *rows, unsigned *cols)
{
	struct winsize ws;
	if (ioctl(fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col)
		return -1;
	*rows = ws.ws_row;
	*cols = ws.ws_col;
	return 0;
}

static void on_winch(int sig)
{
	(void)sig;
	winch_seen = 1;
}

static void on_fatal(int sig)
{
	fatal_seen = sig;
}

static const int fatal_sigs[] = {SIGTERM, SIGHUP, SIGQUIT};
#define NFATAL (sizeof(fatal_sigs) / sizeof(fatal_sigs[0]))

int tty_session_run(struct agent_client *c, struct agent_exec_opts *o, int (*stop)(void), int *code,
		    struct msb_err *err)
{
	struct tty_raw raw = {.fd = -1};
	struct sigaction sa, old_winch, old_fatal[NFATAL];
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_winch; /* no SA_RESTART: the pump's poll returns and looks */
	sigaction(SIGWINCH, &sa, &old_winch);
	sa.sa_handler = on_fatal;
	for (size_t i = 0; i < NFATAL; i++) {
		sigaction(fatal_sigs[i], NULL, &old_fatal[i]);
		if (old_fatal[i].sa_handler == SIG_DFL)
			sigaction(fatal_sigs[i], &sa, NULL);
	}
	winch_seen = 0;
	fatal_seen = 0;
	o->pty = true;
	o->stdin_fd = 0;
	o->stdout_fd = 1;
	o->stderr_fd = -1;
	if (!o->term) {
		const char *t = getenv("TERM");
		/* The guest refuses odd names; a plain default then. */
		o->term = t && *t && strlen(t) < 64 && !strpbrk(t, " /;'\"$`\\") ? t : "xterm";
	}
	if (tty_size(0, &o->rows, &o->cols) < 0 && tty_size(1, &o->rows, &o->cols) < 0)
		o->rows = o->cols = 0;
	int rc = -1;
	struct agent_exec *e = NULL;
	if (isatty(0) && tty_raw_enter(0, &raw, err) < 0)
		goto out;
	e = agent_exec_start(c, o, err);
	if (!e)
		goto out;
	while (!agent_exec_done(e)) {
		if (fatal_seen || (stop && stop())) {
			/* The caller tears the sandbox down; the handle goes with c. */
			e = NULL;
			msb_err_set(err, MSB_EK_STATE, 0, "interrupted by a signal");
			goto out;
		}
		if (winch_seen) {
			winch_seen = 0;
			unsigned rows, cols;
			struct msb_err ignored;
			if (tty_size(0, &rows, &cols) == 0 &&
			    agent_exec_resize(c, e, rows, cols, &ignored) < 0)
				msb_err_clear(&ignored);
		}
		if (agent_client_pump(c, 200, err) < 0) {
			e = NULL;
			goto out;
		}
	}
	struct agent_exec_status st;
	struct agent_exec *done = e;
	e = NULL;
	if (agent_exec_wait(c, done, &st, err) < 0)
		goto out;
	*code = agent_exec_status_code(&st);
	rc = 0;
out:
	tty_raw_leave(&raw);
	sigaction(SIGWINCH, &old_winch, NULL);
	for (size_t i = 0; i < NFATAL; i++)
		sigaction(fatal_sigs[i], &old_fatal[i], NULL);
	return rc;
}
