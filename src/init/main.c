/* msb-init: PID 1 of the guest and the agent that runs commands for the host.
 *
 *   msb-init                     as PID 1: mount, switch root, serve on vsock
 *   msb-init --serve-unix PATH   as a host process, for tests: serve on a Unix
 *                                socket that speaks msb-vmm's "CONNECT <port>"
 *                                handshake; announce ready to PATH_1023
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/proto.h"
#include "common/log.h"
#include "init/exec.h"
#include "init/pid1.h"
#include "init/server.h"

static int vsock_listen(unsigned port, struct msb_err *err)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return msb_err_sys(err, "creating a vsock socket");
	struct sockaddr_vm a = {
		.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		msb_err_sys(err, "listening on vsock port %u", port);
		close(fd);
		return -1;
	}
	return fd;
}

static int vsock_ready_connect(void *ctx)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_vm a = {.svm_family = AF_VSOCK,
				.svm_cid = VMADDR_CID_HOST,
				.svm_port = AGENT_PORT_HOST_READY};
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		fprintf(stderr, "msb-init: announcing ready to host port %u: %s\n",
			AGENT_PORT_HOST_READY, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int unix_addr(struct sockaddr_un *a, const char *path, struct msb_err *err)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a->sun_path))
		return msb_err_set(err, MSB_EK_USAGE, 0, "socket path too long: %s", path);
	strcpy(a->sun_path, path);
	return 0;
}

static int unix_ready_connect(void *ctx)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	struct sockaddr_un a;
	struct msb_err err;
	snprintf(path, sizeof(path), "%s_%u", (const char *)ctx, AGENT_PORT_HOST_READY);
	if (unix_addr(&a, path, &err) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		msb_debug("announcing ready to %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int serve_unix(const char *path)
{
	struct msb_err err = {0};
	struct sockaddr_un a;
	if (unix_addr(&a, path, &err) < 0)
		goto fail;
	/* Orphans of commands come back to us, so that kill_tree and the reaper see them. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		msb_err_sys(&err, "becoming a child subreaper");
		goto fail;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		msb_err_sys(&err, "creating a Unix socket");
		goto fail;
	}
	/* Bound under a temporary name and renamed once it listens: whoever sees
	 * PATH can connect (tests wait for the file; bind() alone made it appear
	 * before listen(), and a connect in between was refused). */
	struct sockaddr_un tmp = a;
	size_t n = strlen(tmp.sun_path);
	bool renamed = n + 4 < sizeof(tmp.sun_path);
	if (renamed)
		memcpy(tmp.sun_path + n, ".new", 5);
	unlink(path);
	unlink(tmp.sun_path);
	if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0 || listen(fd, 16) < 0 ||
	    (renamed && rename(tmp.sun_path, path) < 0)) {
		msb_err_sys(&err, "listening on %s", path);
		close(fd);
		goto fail;
	}
	exec_base_env_init();
	struct server_opts opts = {.ready_connect = unix_ready_connect, .ready_ctx = (void *)path};
	struct server *s = server_new(&opts, &err);
	if (!s) {
		close(fd);
		goto fail;
	}
	if (server_add_listener(s, fd, LISTEN_HYBRID, &err) < 0 || server_run(s, &err) < 0) {
		server_free(s);
		goto fail;
	}
	server_free(s);
	unlink(path);
	return 0;
fail:
	fprintf(stderr, "msb-init: %s\n", err.msg);
	return 1;
}

static int run_pid1(void)
{
	static struct pid1 p;
	struct init_cmdline cl = {0};
	struct msb_err err = {0};
	pid1_early(&p);
	if (pid1_read_cmdline(&cl, &err) < 0)
		pid1_record(&p, &err);
	if (pid1_mount_root(&p, &cl, &err) < 0) {
		msb_err_wrap(&err, "mounting the root filesystem");
		pid1_record(&p, &err);
	}
	if (pid1_loopback_up(&err) < 0)
		pid1_record(&p, &err);
	const char *tunables = exec_base_env_init();
	if (tunables)
		fprintf(stderr, "msb-init: the kernel does not save AVX state: commands get %s\n",
			tunables);
	if (cl.hostname[0] && sethostname(cl.hostname, strlen(cl.hostname)) < 0) {
		msb_err_sys(&err, "setting the hostname to %s", cl.hostname);
		pid1_record(&p, &err);
	}
	struct server_opts opts = {.pid1 = true, .p1 = &p, .ready_connect = vsock_ready_connect};
	struct server *s = server_new(&opts, &err);
	if (!s) {
		pid1_record(&p, &err);
		pid1_power_off(&p);
	}
	for (int i = 0; i < p.nerrors; i++)
		server_add_boot_error(s, &p.errors[i]);
	int fd = vsock_listen(AGENT_PORT_AGENT, &err);
	if (fd < 0 || server_add_listener(s, fd, LISTEN_AGENT, &err) < 0) {
		pid1_record(&p, &err);
		pid1_power_off(&p); /* nobody could ever talk to us */
	}
	fd = vsock_listen(AGENT_PORT_POWER, &err);
	if (fd < 0 || server_add_listener(s, fd, LISTEN_POWER, &err) < 0) {
		pid1_record(&p, &err);
		server_add_boot_error(s, &err);
	}
	if (server_run(s, &err) < 0)
		pid1_record(&p, &err);
	server_free(s);
	pid1_power_off(&p);
}

int main(int argc, char **argv)
{
	msb_log_init("msb-init");
	/* As PID 1 the arguments are whatever the kernel did not recognise on
	 * its command line: not ours to interpret. */
	if (getpid() == 1)
		return run_pid1();
	if (argc == 3 && strcmp(argv[1], "--serve-unix") == 0)
		return serve_unix(argv[2]);
	fprintf(stderr, "usage: msb-init                    (as PID 1 of the guest)\n"
			"       msb-init --serve-unix PATH  (serve the agent on a Unix socket)\n");
	return 2;
}
