/* msb-init's pure parts: the kernel command line, the environment merge, and
 * kill_tree() against real processes. */
#include "tests/unit/test.h"
#include "tests/unit/test_sock.h"
#include "agent/client.h"
#include "init/cmdline.h"
#include "init/exec.h"
#include "init/server.h"
#include "init/server_int.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TEST(cmdline_takes_msb_words_and_ignores_the_kernels)
{
	struct init_cmdline cl;
	struct msb_err err;
	CHECK_INT(init_parse_cmdline("console=hvc0 reboot=k msb.root=/dev/vda "
				     "msb.rootfstype=erofs msb.overlay=/dev/vdb "
				     "msb.hostname=web-1 panic=-1\n",
				     &cl, &err),
		  ==, 0);
	CHECK_STR(cl.root, "/dev/vda");
	CHECK_STR(cl.rootfstype, "erofs");
	CHECK_STR(cl.overlay, "/dev/vdb");
	CHECK_STR(cl.hostname, "web-1");
	CHECK_INT(init_parse_cmdline("", &cl, &err), ==, 0);
	CHECK_STR(cl.root, "");
	CHECK_INT(init_parse_cmdline("msb.overlay=tmpfs", &cl, &err), ==, 0);
	CHECK_STR(cl.overlay, "tmpfs");
}

TEST(cmdline_refuses_bad_values_but_keeps_the_rest)
{
	struct init_cmdline cl;
	struct msb_err err;
	CHECK_INT(init_parse_cmdline("msb.root=/etc/passwd msb.hostname=ok", &cl, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK_STR(cl.root, "");
	CHECK_STR(cl.hostname, "ok");
	CHECK_INT(init_parse_cmdline("msb.root=/dev/../etc", &cl, &err), ==, -1);
	CHECK_INT(init_parse_cmdline("msb.rootfstype=xfs", &cl, &err), ==, -1);
	CHECK_INT(init_parse_cmdline("msb.hostname=a;b", &cl, &err), ==, -1);
	CHECK_INT(init_parse_cmdline("msb.hostname=", &cl, &err), ==, -1);
	char longname[200];
	memset(longname, 'a', sizeof(longname));
	memcpy(longname, "msb.hostname=", 13);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(init_parse_cmdline(longname, &cl, &err), ==, -1);
}

TEST(env_overrides_replace_by_name_and_append_the_rest)
{
	const char *base[] = {"PATH=/bin", "HOME=/root", NULL};
	char *over[] = {"HOME=/tmp", "X=1", "PATHX=2"};
	char **env = exec_merge_env(base, over, 3);
	CHECK(env != NULL);
	CHECK_STR(env[0], "PATH=/bin");
	CHECK_STR(env[1], "HOME=/tmp");
	CHECK_STR(env[2], "X=1");
	CHECK_STR(env[3], "PATHX=2");
	CHECK(env[4] == NULL);
	free(env);
}

TEST(kill_tree_reaches_grandchildren_that_left_the_session)
{
	/* leader (new session) -> child -> grandchild that calls setsid(): only
	 * the parent link ties the grandchild to the tree.  (Killing the child
	 * before the scan would cut that link; whether it does is a race, which
	 * the host integration test under load lost before kill_tree stopped
	 * the tree first.  Here: the path itself.) */
	int p[2];
	CHECK_INT(pipe(p), ==, 0);
	pid_t leader = fork();
	CHECK(leader >= 0);
	if (leader == 0) {
		setsid();
		if (fork() == 0) {
			if (fork() == 0) {
				setsid();
				pid_t me = getpid();
				if (write(p[1], &me, sizeof(me)) != sizeof(me))
					_exit(1);
				for (;;)
					pause();
			}
			for (;;)
				pause();
		}
		for (;;)
			pause();
	}
	pid_t grandchild;
	CHECK_INT(read(p[0], &grandchild, sizeof(grandchild)), ==, sizeof(grandchild));
	close(p[0]);
	close(p[1]);
	CHECK_INT(kill_tree(leader), >=, 3);
	int status;
	CHECK_INT(waitpid(leader, &status, 0), ==, leader);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* The grandchild is not ours to reap; it must be gone or a zombie soon. */
	for (int i = 0; i < 100; i++) {
		char path[64], buf[256];
		snprintf(path, sizeof(path), "/proc/%d/stat", grandchild);
		FILE *f = fopen(path, "r");
		if (!f)
			return;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *s = strrchr(buf, ')');
		if (s && (s[2] == 'Z' || s[2] == 'X'))
			return;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	TEST_FAIL("grandchild %d survived kill_tree", grandchild);
}

/* The agent server at its connection cap: one more host gets ERROR limit to its
 * HELLO ("busy"), which the client reports at once as kind state; a place that
 * frees up is served again, at once. */
TEST(server_answers_busy_at_its_connection_cap)
{
	char path[108];
	snprintf(path, sizeof(path), "/tmp/msb-test-cap-%d.sock", (int)getpid());
	int lfd = test_unix_listen(path, 64);
	CHECK(lfd >= 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct msb_err err;
		struct server_opts o = {.hostname = "capped"};
		struct server *s = server_new(&o, &err);
		if (!s || server_add_listener(s, lfd, LISTEN_HYBRID, &err) < 0)
			_exit(20);
		_exit(server_run(s, &err) < 0 ? 21 : 0);
	}
	close(lfd);
	struct agent_client *c[MAX_CONNS] = {0};
	struct msb_err err = {0};
	for (int i = 0; i < MAX_CONNS; i++) {
		c[i] = agent_client_open(path, 5000, &err);
		if (!c[i])
			break;
	}
	for (int i = 0; i < MAX_CONNS; i++)
		CHECK(c[i] != NULL);
	for (int round = 0; round < 2; round++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		struct agent_client *over = agent_client_open(path, 5000, &err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK(over == NULL);
		agent_client_free(over);
		CHECK_INT(err.kind, ==, MSB_EK_STATE);
		CHECK(strstr(err.msg, "the guest is busy") != NULL);
		CHECK(strstr(err.msg, "32 connections") != NULL);
		CHECK_INT(t1.tv_sec - t0.tv_sec, <, 2); /* no retrying */
	}
	/* A host that closes one and opens the next at once gets the place: the
	 * agent sees the close (queued, not yet read) before it refuses. */
	agent_client_free(c[0]);
	c[0] = NULL;
	struct agent_client *again = agent_client_open(path, 5000, &err);
	if (!again)
		TEST_FAIL("the freed place was refused: %s", err.msg);
	CHECK_STR(agent_client_hostname(again), "capped");
	agent_client_free(again);
	for (int i = 0; i < MAX_CONNS; i++)
		agent_client_free(c[i]);
	unlink(path);
	kill(pid, SIGKILL);
	CHECK_INT(waitpid(pid, NULL, 0), ==, pid);
}

TEST_MAIN(T(cmdline_takes_msb_words_and_ignores_the_kernels),
	  T(cmdline_refuses_bad_values_but_keeps_the_rest),
	  T(env_overrides_replace_by_name_and_append_the_rest),
	  T(kill_tree_reaches_grandchildren_that_left_the_session),
	  T(server_answers_busy_at_its_connection_cap))
