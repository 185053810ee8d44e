/* A listening Unix socket for unit tests that play the other side of one
 * (a fake msb-vmm, an agent server in a child): test_agent_init.c,
 * test_agent_setup.c, test_sandbox_snapshot.c. */
#ifndef MSB_TEST_SOCK_H
#define MSB_TEST_SOCK_H

#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Binds and listens on `path` (a stale file there is removed first); -1 on
 * failure. */
static inline int test_unix_listen(const char *path, int backlog)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, backlog) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

#endif
