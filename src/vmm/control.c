#include "vmm/control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/snapshot.h"

int vmm_control_pause(struct vmm_control *c, struct msb_err *err)
{
	if (c->vm->paused)
		return 0;
	if (vm_pause(c->vm) < 0)
		return msb_err_set(err, MSB_EK_STATE, 0, "the VM stopped: %s",
				   vm_stop_message(c->vm));
	if (vmm_devices_pause(c->devs, err) < 0) {
		vm_resume(c->vm);
		return -1;
	}
	return 0;
}

void vmm_control_resume(struct vmm_control *c)
{
	if (!c->vm->paused)
		return;
	vmm_devices_resume(c->devs);
	vm_resume(c->vm);
}

int vmm_control_snapshot(struct vmm_control *c, const char *dir, struct msb_err *err)
{
	if (vmm_control_pause(c, err) < 0)
		return -1;
	struct snapshot s;
	if (snap_capture(c->vm, &s, err) < 0)
		return msb_err_wrap(err, "reading the VM's state");
	int rc = vmm_devices_save(c->devs, &s, err);
	if (rc == 0 && c->cmdline) {
		s.cmdline = strdup(c->cmdline);
		if (!s.cmdline)
			rc = msb_err_sys(err, "allocating");
	}
	if (rc == 0)
		rc = snap_write_dir(dir, &s, &c->vm->mem, err);
	snap_free(&s);
	if (rc == 0)
		msb_info("snapshot written to %s", dir);
	return rc;
}

void vmm_control_command(struct vmm_control *c, const char *line, char *reply, size_t cap)
{
	struct msb_err err = {0};
	int rc = 0;
	if (strcmp(line, "status") == 0) {
		snprintf(reply, cap, "OK %s\n", c->vm->paused ? "paused" : "running");
		return;
	} else if (strcmp(line, "pause") == 0) {
		rc = vmm_control_pause(c, &err);
	} else if (strcmp(line, "resume") == 0) {
		vmm_control_resume(c);
	} else if (strncmp(line, "snapshot ", 9) == 0 && line[9]) {
		rc = vmm_control_snapshot(c, line + 9, &err);
	} else if (strcmp(line, "quit") == 0) {
		vm_stop(c->vm, VM_EXIT_OK, "stopped on request");
	} else {
		snprintf(reply, cap,
			 "ERR unknown command '%.64s' (status, pause, resume, snapshot DIR, "
			 "quit)\n",
			 line);
		return;
	}
	if (rc < 0) {
		/* One line: no newline inside the message. */
		for (char *p = err.msg; *p; p++)
			if (*p == '\n')
				*p = ' ';
		snprintf(reply, cap, "ERR %s\n", err.msg);
	} else {
		snprintf(reply, cap, "OK\n");
	}
}

static void drop_conn(struct vmm_control *c)
{
	if (c->conn_fd >= 0)
		close(c->conn_fd);
	c->conn_fd = -1;
	c->len = 0;
}

static void serve(struct vmm_control *c)
{
	ssize_t n = read(c->conn_fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_conn(c);
		return;
	}
	c->len += (size_t)n;
	char *nl;
	while (c->conn_fd >= 0 && (nl = memchr(c->buf, '\n', c->len))) {
		*nl = 0;
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = 0;
		char reply[MSB_ERR_MSG_MAX + 16];
		vmm_control_command(c, c->buf, reply, sizeof(reply));
		size_t used = (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, c->len - used);
		c->len -= used;
		size_t rl = strlen(reply);
		if (send(c->conn_fd, reply, rl, MSG_NOSIGNAL) != (ssize_t)rl)
			drop_conn(c);
	}
	if (c->conn_fd >= 0 && c->len == sizeof(c->buf)) {
		static const char e[] = "ERR line too long\n";
		if (send(c->conn_fd, e, sizeof(e) - 1, MSG_NOSIGNAL) < 0)
			msb_debug("control: %s", strerror(errno));
		drop_conn(c);
	}
}

static unsigned hook_fds(void *ctx, struct pollfd *p, unsigned max)
{
	struct vmm_control *c = ctx;
	if (max < 1)
		return 0;
	/* One client at a time: while one is connected, only it is polled. */
	p[0] = (struct pollfd){.fd = c->conn_fd >= 0 ? c->conn_fd : c->listen_fd, .events = POLLIN};
	return 1;
}

static void hook_ready(void *ctx, const struct pollfd *p, unsigned n)
{
	struct vmm_control *c = ctx;
	if (n < 1 || !p[0].revents)
		return;
	if (c->conn_fd >= 0) {
		serve(c);
		return;
	}
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd >= 0) {
		c->conn_fd = fd;
		c->len = 0;
	}
}

int vmm_control_open(struct vmm_control *c, const char *path, struct vm *vm,
		     struct vmm_devices *devs, const char *cmdline, struct msb_err *err)
{
	memset(c, 0, sizeof(*c));
	c->listen_fd = c->conn_fd = -1;
	c->vm = vm; /* from here on vmm_control_close() knows the fds are real */
	c->devs = devs;
	c->cmdline = cmdline;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "--control path %s is too long (at most %zu bytes)", path,
				   sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return msb_err_sys(err, "socket");
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 8) < 0) {
		msb_err_sys(err, "creating the control socket %s", path);
		close(fd);
		return -1;
	}
	c->listen_fd = fd;
	strcpy(c->path, path);
	vm->hook = (struct vm_hook){.fds = hook_fds, .ready = hook_ready, .ctx = c};
	return 0;
}

void vmm_control_close(struct vmm_control *c)
{
	if (!c->vm)
		return;
	drop_conn(c);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		unlink(c->path);
	}
	c->listen_fd = -1;
}
