/* The server backend on the sandbox library, with msb-vmm replaced by a script that
 * runs the host build of msb-init (`--serve-unix`, the same agent protocol on the
 * same socket): start (idempotent), command.run (lines per stream, exit status,
 * timeout as an error), streaming execs with stdin, files up and down, list, metrics,
 * stop, and the refusals.  Needs
 * <build>/bin/msb-init next to this test's build directory; skips without it. */
#include "test.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "oci/import.h"
#include "project/menv.h"
#include "sandbox/backend_vm.h"
#include "sandbox/backend_vm_int.h"

static char top[64];

/* More command.run calls at once than the pool keeps connections for. */
#define CALLS (CMD_CONNS_MAX + 4)

/* build/<b>/tests/unit/test_x -> build/<b>/bin/msb-init */
static int msb_init_path(char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	char *p = strstr(exe, "/tests/unit/");
	if (!p)
		return -1;
	*p = '\0';
	snprintf(out, len, "%s/bin/msb-init", exe);
	return access(out, X_OK);
}

/* A store with one image (a directory with a file) and the fake VMM; returns the
 * image reference (static buffer). */
static const char *setup(struct test_ctx *t)
{
	char init[PATH_MAX];
	if (msb_init_path(init, sizeof(init)) < 0)
		TEST_SKIP("the host build of msb-init is not built next to this test");
	snprintf(top, sizeof(top), "/tmp/msb-test-be-XXXXXX");
	CHECK(mkdtemp(top) != NULL);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/fake-vmm", top);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fprintf(f,
		"#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --vsock ] && v=$2; shift; done\n"
		"exec %s --serve-unix \"$v\"\n",
		init);
	fclose(f);
	CHECK_INT(chmod(path, 0755), ==, 0);
	setenv("MSB_VMM", path, 1);
	setenv("MSB_KERNEL", path, 1);
	setenv("MSB_INITRD", path, 1);
	setenv("MSB_KVM_DEVICE", "/dev/null", 1);
	setenv("MICROSANDBOX_HOME", top, 1);
	setenv("TMPDIR", top, 1);
	snprintf(path, sizeof(path), "%s/root/etc", top);
	struct msb_err err = {0};
	CHECK_INT(msb_mkdir_p(path, 0755, &err), ==, 0);
	snprintf(path, sizeof(path), "%s/root", top);
	struct oci_store *st = NULL;
	CHECK_INT(oci_store_open(NULL, &st, &err), ==, 0);
	struct oci_image *img = NULL;
	if (oci_image_from_dir(st, path, &img, &err) < 0) {
		oci_store_close(st);
		TEST_SKIP("cannot build a root filesystem image here: %s", err.msg);
	}
	static char ref[256];
	snprintf(ref, sizeof(ref), "%s", img->reference);
	oci_image_free(img);
	oci_store_close(st);
	return ref;
}

static bool never_alive(void *arg)
{
	return false;
}

static void teardown(void)
{
	struct msb_err err = {0};
	msb_remove_tree(top, &err);
	unsetenv("MSB_VMM");
	unsetenv("MSB_KERNEL");
	unsetenv("MSB_INITRD");
	unsetenv("MSB_KVM_DEVICE");
	unsetenv("TMPDIR");
}

TEST(start_run_stop)
{
	const char *ref = setup(t);
	struct msb_err err = {0};
	struct sandbox_backend *b = sandbox_backend_vm_new(NULL, &err);
	CHECK(b != NULL);
	const char *envs[] = {"GREETING=hi"};
	struct sb_start_config cfg = {.image = ref, .envs = {envs, 1}, .workdir = "/tmp"};
	char *msg = NULL;
	CHECK_INT(b->start(b->self, "web", &cfg, &msg, &err), ==, 0);
	CHECK_STR(msg, "Sandbox web started successfully");
	free(msg);
	/* starting it again is not an error, with or without a config */
	CHECK_INT(b->start(b->self, "web", &cfg, &msg, &err), ==, 0);
	free(msg);
	CHECK_INT(b->start(b->self, "web", NULL, &msg, &err), ==, 0);
	CHECK_STR(msg, "Sandbox web started successfully");
	free(msg);

	const char *args[] = {"-c", "echo \"$GREETING\"; pwd; echo e1 >&2; printf tail; exit 4"};
	struct sb_strv av = {args, 2};
	struct sb_command_result res = {0};
	CHECK_INT(b->command_run(b->self, "web", "sh", &av, 0, &res, &err), ==, 0);
	CHECK_INT(res.exit_code, ==, 4);
	CHECK_INT(res.output.n, ==, 4);
	CHECK_STR(res.output.lines[0].text, "hi");
	CHECK_INT(res.output.lines[0].stream, ==, SB_STDOUT);
	CHECK_STR(res.output.lines[1].text, "/tmp");
	/* stderr's line may arrive before or after "tail"; both are there */
	int saw_e1 = 0, saw_tail = 0;
	for (size_t i = 2; i < 4; i++) {
		saw_e1 += strcmp(res.output.lines[i].text, "e1") == 0 &&
			  res.output.lines[i].stream == SB_STDERR;
		saw_tail += strcmp(res.output.lines[i].text, "tail") == 0;
	}
	CHECK(saw_e1 == 1 && saw_tail == 1);
	sb_command_result_release(&res);

	/* a timeout is an error, not a success */
	const char *sl[] = {"5"};
	struct sb_strv sv = {sl, 1};
	memset(&res, 0, sizeof(res));
	CHECK_INT(b->command_run(b->self, "web", "sleep", &sv, 0.3, &res, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_TIMEOUT);
	sb_command_result_release(&res);

	struct sb_info *rows = NULL;
	size_t n = 0;
	CHECK_INT(b->list(b->self, &rows, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1);
	CHECK_STR(rows[0].status, "running");
	CHECK(rows[0].pid > 0);
	sb_info_free(rows, n);
	struct sb_metrics *m = NULL;
	CHECK_INT(b->metrics(b->self, "other", &m, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1);
	CHECK(!m[0].running);
	sb_metrics_free(m, n);

	/* a streaming exec with stdin */
	const char *sa[] = {"-c", "read l; echo got $l; echo e >&2; exit 3"};
	struct sb_exec_spec es = {
		.sandbox = "web", .command = "sh", .args = {sa, 2}, .stdin_open = true};
	char id[SB_EXEC_ID_MAX];
	CHECK_INT(b->exec_start(b->self, &es, id, &err), ==, 0);
	CHECK_INT(b->exec_stdin(b->self, id, "hi\n", 3, true, &err), ==, 0);
	char out[64] = "";
	size_t ol = 0;
	int code = -99;
	for (int i = 0; i < 600 && code == -99; i++) {
		struct sb_exec_event ev;
		int r = b->exec_next(b->self, id, 100, &ev, &err);
		CHECK(r >= 0);
		if (r == 1 && ev.type == SB_EV_STDOUT && ol + ev.len < sizeof(out)) {
			memcpy(out + ol, ev.data, ev.len);
			ol += ev.len;
		}
		if (r == 1 && ev.type == SB_EV_EXIT)
			code = ev.exit_code;
	}
	CHECK_INT(code, ==, 3);
	CHECK_STR(out, "got hi\n");
	b->exec_release(b->self, id);
	CHECK_INT(b->exec_wait(b->self, id, 0, &(struct sb_exec_status){0}, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);

	/* a file up and down (msb-init serves the host here: a path in our directory) */
	char fpath[PATH_MAX];
	snprintf(fpath, sizeof(fpath), "%s/sub/f.bin", top);
	void *h = NULL;
	static char big[200000], back[200001];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	CHECK_INT(b->file_open_write(b->self, "web", fpath, 0600, &h, &err), ==, 0);
	CHECK_INT(b->file_write(b->self, h, big, sizeof(big), &err), ==, 0);
	CHECK_INT(b->file_close_write(b->self, h, true, &err), ==, 0);
	struct stat fst;
	CHECK_INT(stat(fpath, &fst), ==, 0);
	CHECK_INT(fst.st_mode & 0777, ==, 0600);
	uint64_t size = 0;
	CHECK_INT(b->file_open_read(b->self, "web", fpath, &h, &size, &err), ==, 0);
	CHECK_INT(size, ==, sizeof(big));
	size_t got = 0;
	ssize_t k;
	while ((k = b->file_read(b->self, h, back + got, sizeof(back) - got, &err)) > 0)
		got += (size_t)k;
	CHECK_INT(k, ==, 0);
	b->file_close_read(b->self, h);
	CHECK_INT(got, ==, sizeof(big));
	CHECK(memcmp(back, big, sizeof(big)) == 0);
	/* an upload that is not committed leaves nothing */
	snprintf(fpath, sizeof(fpath), "%s/sub/dropped", top);
	CHECK_INT(b->file_open_write(b->self, "web", fpath, 0644, &h, &err), ==, 0);
	CHECK_INT(b->file_write(b->self, h, "x", 1, &err), ==, 0);
	CHECK_INT(b->file_close_write(b->self, h, false, &err), ==, 0);
	CHECK_INT(access(fpath, F_OK), ==, -1);
	snprintf(fpath, sizeof(fpath), "%s/sub", top);
	DIR *d = opendir(fpath);
	CHECK(d != NULL);
	int others = 0;
	for (struct dirent *de; (de = readdir(d));)
		others += de->d_name[0] != '.' && strcmp(de->d_name, "f.bin") != 0;
	closedir(d);
	CHECK_INT(others, ==, 0); /* nor a temporary file */
	CHECK_INT(b->file_open_read(b->self, "web", "/no/such/file", &h, &size, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_STR(err.msg, "no such file: /no/such/file");

	/* a command whose HTTP client went away is killed and the call returns */
	sb_client_set(never_alive, NULL);
	const char *long_sleep[] = {"100"};
	struct sb_strv lsv = {long_sleep, 1};
	memset(&res, 0, sizeof(res));
	time_t t0 = time(NULL);
	CHECK_INT(b->command_run(b->self, "web", "sleep", &lsv, 0, &res, &err), ==, -1);
	CHECK(strstr(err.msg, "the client went away") != NULL);
	CHECK(time(NULL) - t0 < 30);
	sb_client_set(NULL, NULL);
	sb_command_result_release(&res);

	/* an exec nobody streams goes with its sandbox (here the host build of
	 * msb-init is killed with it and its sleep outlives it: keep it short; on
	 * a VM it ends with the VM) */
	const char *zz[] = {"5"};
	struct sb_exec_spec idle = {.sandbox = "web", .command = "sleep", .args = {zz, 1}};
	CHECK_INT(b->exec_start(b->self, &idle, id, &err), ==, 0);

	CHECK_INT(b->stop(b->self, "web", &msg, &err), ==, 0);
	CHECK_STR(msg, "Sandbox web stopped successfully");
	free(msg);
	CHECK_INT(b->exec_wait(b->self, id, 0, &(struct sb_exec_status){0}, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	memset(&res, 0, sizeof(res));
	CHECK_INT(b->command_run(b->self, "web", "true", &sv, 0, &res, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(b->stop(b->self, "web", &msg, &err), ==, -1);
	sandbox_backend_vm_free(b);
	teardown();
}

/* command.run calls of one sandbox run at once, each on its own connection. */
struct cmd_call {
	struct sandbox_backend *b;
	const char *script;
	int rc, code;
	char out[64];
	double done_at;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *cmd_thread(void *arg)
{
	struct cmd_call *c = arg;
	const char *args[] = {"-c", c->script};
	struct sb_strv av = {args, 2};
	struct sb_command_result res = {0};
	struct msb_err err = {0};
	c->rc = c->b->command_run(c->b->self, "web", "sh", &av, 0, &res, &err);
	c->code = res.exit_code;
	if (res.output.n)
		snprintf(c->out, sizeof(c->out), "%s", res.output.lines[0].text);
	c->done_at = now_s();
	sb_command_result_release(&res);
	return NULL;
}

TEST(concurrency_and_hung_guests)
{
	const char *ref = setup(t);
	setenv("MSB_SERVER_FILE_TIMEOUT", "2", 1);
	struct msb_err err = {0};
	struct sandbox_backend *b = sandbox_backend_vm_new(NULL, &err);
	unsetenv("MSB_SERVER_FILE_TIMEOUT");
	CHECK(b != NULL);
	struct sb_start_config cfg = {.image = ref};
	char *msg = NULL;
	CHECK_INT(b->start(b->self, "web", &cfg, &msg, &err), ==, 0);
	free(msg);

	/* a quick command is not held up by a slow one */
	struct cmd_call slow = {.b = b, .script = "sleep 1.5; echo slow"};
	struct cmd_call quick = {.b = b, .script = "echo quick"};
	pthread_t ts, tq;
	CHECK_INT(pthread_create(&ts, NULL, cmd_thread, &slow), ==, 0);
	usleep(200 * 1000);
	CHECK_INT(pthread_create(&tq, NULL, cmd_thread, &quick), ==, 0);
	pthread_join(tq, NULL);
	pthread_join(ts, NULL);
	CHECK_INT(slow.rc, ==, 0);
	CHECK_INT(quick.rc, ==, 0);
	CHECK_STR(slow.out, "slow");
	CHECK_STR(quick.out, "quick");
	CHECK(quick.done_at < slow.done_at - 0.5);

	/* more at once than the pool holds: all finish, each with its own output */
	enum { N = CALLS };
	static struct cmd_call many[N];
	static char scripts[N][64];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		snprintf(scripts[i], sizeof(scripts[i]), "sleep 0.3; echo out-%d; exit %d", i,
			 i % 7);
		many[i] = (struct cmd_call){.b = b, .script = scripts[i]};
		CHECK_INT(pthread_create(&th[i], NULL, cmd_thread, &many[i]), ==, 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		char want[32];
		snprintf(want, sizeof(want), "out-%d", i);
		CHECK_INT(many[i].rc, ==, 0);
		CHECK_STR(many[i].out, want);
		CHECK_INT(many[i].code, ==, i % 7);
	}

	/* a guest that stops answering: file requests fail with a timeout */
	struct sb_info *rows = NULL;
	size_t n = 0;
	CHECK_INT(b->list(b->self, &rows, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1);
	pid_t guest = (pid_t)rows[0].pid;
	sb_info_free(rows, n);
	char fpath[PATH_MAX];
	snprintf(fpath, sizeof(fpath), "%s/hung.bin", top);
	void *h = NULL;
	CHECK_INT(b->file_open_write(b->self, "web", fpath, 0644, &h, &err), ==, 0);
	CHECK_INT(b->file_write(b->self, h, "abc", 3, &err), ==, 0);
	CHECK_INT(kill(guest, SIGSTOP), ==, 0);
	double t0 = now_s();
	CHECK_INT(b->file_close_write(b->self, h, true, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_TIMEOUT);
	CHECK(strstr(err.msg, "did not answer the file request") != NULL);
	uint64_t size = 0;
	CHECK_INT(b->file_open_read(b->self, "web", fpath, &h, &size, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_TIMEOUT);
	double took = now_s() - t0;
	CHECK(took >= 3.5 && took < 15);
	/* metrics: the host's view once the guest has been silent for the limit */
	struct sb_metrics *m = NULL;
	t0 = now_s();
	CHECK_INT(b->metrics(b->self, "web", &m, &n, &err), ==, 0);
	took = now_s() - t0;
	CHECK(took >= 1.5 && took < 10);
	CHECK_INT(n, ==, 1);
	CHECK(m[0].running && m[0].has_cpu && m[0].has_memory && !m[0].has_disk);
	sb_metrics_free(m, n);
	CHECK_INT(kill(guest, SIGCONT), ==, 0);
	/* and work again once it answers */
	CHECK_INT(b->file_open_write(b->self, "web", fpath, 0644, &h, &err), ==, 0);
	CHECK_INT(b->file_write(b->self, h, "abc", 3, &err), ==, 0);
	CHECK_INT(b->file_close_write(b->self, h, true, &err), ==, 0);
	CHECK_INT(b->file_open_read(b->self, "web", fpath, &h, &size, &err), ==, 0);
	CHECK_INT(size, ==, 3);
	b->file_close_read(b->self, h);
	CHECK_INT(b->metrics(b->self, "web", &m, &n, &err), ==, 0);
	CHECK(m[0].running && m[0].has_disk); /* the guest's own figures again */
	sb_metrics_free(m, n);

	CHECK_INT(b->stop(b->self, "web", &msg, &err), ==, 0);
	free(msg);
	sandbox_backend_vm_free(b);
	teardown();
}

/* A REPL run or a command on a guest that stops answering ends with a timeout
 * (no host-side limit of its own otherwise: without a timeout it would wait
 * for ever), while silent code on a guest that answers goes on. */
struct repl_call {
	struct sandbox_backend *b;
	const char *code;
	double timeout_s;
	int rc;
	struct msb_err err;
	char out[64];
};

static void *repl_thread(void *arg)
{
	struct repl_call *c = arg;
	struct sb_repl_result res = {0};
	c->rc = c->b->repl_run(c->b->self, "web", "python", c->code, c->timeout_s, &res, &c->err);
	if (c->rc == 0 && res.output.n)
		snprintf(c->out, sizeof(c->out), "%s", res.output.lines[0].text);
	sb_repl_result_release(&res);
	return NULL;
}

static pid_t guest_pid(struct sandbox_backend *b)
{
	struct sb_info *rows = NULL;
	size_t n = 0;
	struct msb_err err = {0};
	if (b->list(b->self, &rows, &n, &err) < 0 || n != 1)
		return -1;
	pid_t pid = (pid_t)rows[0].pid;
	sb_info_free(rows, n);
	return pid;
}

/* A REPL run started in a thread; the guest is stopped 300 ms later; returns
 * the seconds the run took. */
static double repl_on_stopped_guest(struct sandbox_backend *b, pid_t guest, struct repl_call *c)
{
	pthread_t th;
	double t0 = now_s();
	if (pthread_create(&th, NULL, repl_thread, c) != 0)
		return -1;
	usleep(300 * 1000);
	kill(guest, SIGSTOP);
	pthread_join(th, NULL);
	return now_s() - t0;
}

TEST(hung_guest_repl_and_command)
{
	const char *ref = setup(t);
	if (access("/usr/bin/python3", X_OK) != 0)
		TEST_SKIP("no python3 on this host for the REPL");
	setenv("MSB_SERVER_FILE_TIMEOUT", "2", 1);
	struct msb_err err = {0};
	struct sandbox_backend *b = sandbox_backend_vm_new(NULL, &err);
	unsetenv("MSB_SERVER_FILE_TIMEOUT");
	CHECK(b != NULL);
	const char *envs[] = {"PATH=/usr/bin:/bin"};
	struct sb_start_config cfg = {.image = ref, .envs = {envs, 1}};
	char *msg = NULL;
	CHECK_INT(b->start(b->self, "web", &cfg, &msg, &err), ==, 0);
	free(msg);
	pid_t guest = guest_pid(b);
	CHECK(guest > 0);

	/* silent for longer than the limit on a guest that answers: it goes on */
	struct repl_call quiet = {.b = b, .code = "import time\ntime.sleep(5)\nprint('slept')"};
	repl_thread(&quiet);
	CHECK_INT(quiet.rc, ==, 0);
	CHECK_STR(quiet.out, "slept");

	/* no timeout, the guest stops: a timeout error once it is silent for the
	 * limit (2 s) and does not answer a probe within it (2 s) */
	struct repl_call hung = {.b = b, .code = "time.sleep(1)\nprint('late')"};
	double took = repl_on_stopped_guest(b, guest, &hung);
	CHECK_INT(hung.rc, ==, -1);
	CHECK_INT(hung.err.kind, ==, MSB_EK_TIMEOUT);
	CHECK(strstr(hung.err.msg, "the sandbox stopped answering during the python run") != NULL);
	CHECK(took >= 3.5 && took < 15);
	kill(guest, SIGCONT);

	/* with a timeout the same (not the timeout + 30 s) */
	struct repl_call hung_t = {.b = b, .code = "time.sleep(1)\nprint('late')", .timeout_s = 60};
	took = repl_on_stopped_guest(b, guest, &hung_t);
	CHECK_INT(hung_t.rc, ==, -1);
	CHECK_INT(hung_t.err.kind, ==, MSB_EK_TIMEOUT);
	CHECK(took >= 3.5 && took < 15);
	CHECK_INT(kill(guest, SIGCONT), ==, 0);

	/* a command without a timeout on the stopped guest, on a pooled connection */
	const char *ea[] = {"back"};
	struct sb_strv ev = {ea, 1};
	struct sb_command_result res = {0};
	CHECK_INT(b->command_run(b->self, "web", "echo", &ev, 0, &res, &err), ==, 0);
	sb_command_result_release(&res); /* one idle connection now */
	const char *sl[] = {"1"};
	struct sb_strv sv = {sl, 1};
	memset(&res, 0, sizeof(res));
	CHECK_INT(kill(guest, SIGSTOP), ==, 0);
	double t0 = now_s();
	CHECK_INT(b->command_run(b->self, "web", "sleep", &sv, 0, &res, &err), ==, -1);
	took = now_s() - t0;
	CHECK_INT(err.kind, ==, MSB_EK_TIMEOUT);
	CHECK(strstr(err.msg, "the sandbox stopped answering during 'sleep'") != NULL);
	CHECK(took >= 3.5 && took < 15);
	sb_command_result_release(&res);
	/* and on a new one: the connection is refused within the limit */
	memset(&res, 0, sizeof(res));
	t0 = now_s();
	CHECK_INT(b->command_run(b->self, "web", "sleep", &sv, 0, &res, &err), ==, -1);
	took = now_s() - t0;
	CHECK_INT(err.kind, ==, MSB_EK_TIMEOUT);
	CHECK(strstr(err.msg, "sandbox 'web' did not accept an agent connection within 2 s") !=
	      NULL);
	CHECK(took >= 1.5 && took < 10);
	sb_command_result_release(&res);
	CHECK_INT(kill(guest, SIGCONT), ==, 0);

	/* a stream read on a guest that stops: its exec ends with the same error */
	const char *s30[] = {"30"};
	struct sb_exec_spec sp = {.sandbox = "web", .command = "sleep", .args = {s30, 1}};
	char id[SB_EXEC_ID_MAX];
	CHECK_INT(b->exec_start(b->self, &sp, id, &err), ==, 0);
	CHECK_INT(kill(guest, SIGSTOP), ==, 0);
	t0 = now_s();
	int r = 0;
	for (int i = 0; i < 100 && r == 0; i++) {
		struct sb_exec_event event;
		r = b->exec_next(b->self, id, 200, &event, &err);
	}
	took = now_s() - t0;
	CHECK_INT(r, ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_TIMEOUT);
	CHECK(strstr(err.msg, "the sandbox stopped answering during 'sleep'") != NULL);
	CHECK(took >= 3.5 && took < 15);
	CHECK_INT(kill(guest, SIGCONT), ==, 0);
	b->exec_release(b->self, id);

	/* the guest answers again: both work (the interpreter kept its state) */
	struct repl_call again = {.b = b, .code = "print(time.time() > 0)"};
	repl_thread(&again);
	CHECK_INT(again.rc, ==, 0);
	CHECK_STR(again.out, "True");
	memset(&res, 0, sizeof(res));
	CHECK_INT(b->command_run(b->self, "web", "echo", &ev, 0, &res, &err), ==, 0);
	CHECK_INT(res.output.n, ==, 1);
	CHECK_STR(res.output.lines[0].text, "back");
	sb_command_result_release(&res);

	/* a REPL run whose HTTP client went away is interrupted, and returns */
	sb_client_set(never_alive, NULL);
	struct repl_call left = {.b = b, .code = "time.sleep(100)"};
	t0 = now_s();
	repl_thread(&left);
	sb_client_set(NULL, NULL);
	CHECK_INT(left.rc, ==, -1);
	CHECK(strstr(left.err.msg, "the client went away") != NULL);
	CHECK(now_s() - t0 < 10);
	struct repl_call after = {.b = b, .code = "print('still here')"};
	repl_thread(&after);
	CHECK_INT(after.rc, ==, 0);
	CHECK_STR(after.out, "still here");

	CHECK_INT(b->stop(b->self, "web", &msg, &err), ==, 0);
	free(msg);
	sandbox_backend_vm_free(b);
	teardown();
}

/* The server opens at most VM_CONNS_MAX agent connections to a sandbox
 * (msb-init serves 32): past that, streams, transfers, commands and REPL runs
 * fail at once with a "busy" error instead of waiting on a guest that refuses. */
TEST(connection_budget)
{
	const char *ref = setup(t);
	struct msb_err err = {0};
	struct sandbox_backend *b = sandbox_backend_vm_new(NULL, &err);
	CHECK(b != NULL);
	struct sb_start_config cfg = {.image = ref};
	char *msg = NULL;
	CHECK_INT(b->start(b->self, "web", &cfg, &msg, &err), ==, 0);
	free(msg);
	/* one idle command connection, which a stream may take the place of */
	const char *ea[] = {"hi"};
	struct sb_strv ev = {ea, 1};
	struct sb_command_result res = {0};
	CHECK_INT(b->command_run(b->self, "web", "echo", &ev, 0, &res, &err), ==, 0);
	sb_command_result_release(&res);

	static char ids[VM_CONNS_MAX + 1][SB_EXEC_ID_MAX];
	const char *zz[] = {"100"};
	struct sb_exec_spec sp = {.sandbox = "web", .command = "sleep", .args = {zz, 1}};
	int started = 0;
	double t0 = now_s();
	while (started <= VM_CONNS_MAX && b->exec_start(b->self, &sp, ids[started], &err) == 0)
		started++;
	CHECK_INT(started, ==, VM_CONNS_MAX);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK(strstr(err.msg, "sandbox 'web' is busy: a stream needs an agent connection") != NULL);
	CHECK(now_s() - t0 < 20); /* nothing waited for a refusing guest */
	/* every one of them runs in the guest (its agent answered each HELLO) */
	struct sb_exec_status st;
	CHECK_INT(b->exec_wait(b->self, ids[VM_CONNS_MAX - 1], 100, &st, &err), ==, 0);
	CHECK(!st.exited);

	void *h = NULL;
	char fpath[PATH_MAX];
	snprintf(fpath, sizeof(fpath), "%s/busy.txt", top);
	CHECK_INT(b->file_open_write(b->self, "web", fpath, 0644, &h, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK(strstr(err.msg, "a file transfer needs an agent connection") != NULL);
	memset(&res, 0, sizeof(res));
	CHECK_INT(b->command_run(b->self, "web", "echo", &ev, 0, &res, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK(strstr(err.msg, "is busy: a command needs") != NULL);
	sb_command_result_release(&res);
	struct sb_repl_result rr = {0};
	CHECK_INT(b->repl_run(b->self, "web", "python", "1", 0, &rr, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	sb_repl_result_release(&rr);
	/* metrics still answer (the host's view) */
	struct sb_metrics *m = NULL;
	size_t n = 0;
	CHECK_INT(b->metrics(b->self, "web", &m, &n, &err), ==, 0);
	CHECK(n == 1 && m[0].running && m[0].has_cpu);
	sb_metrics_free(m, n);

	/* one stream released: a command runs again */
	b->exec_release(b->self, ids[0]);
	memset(&res, 0, sizeof(res));
	CHECK_INT(b->command_run(b->self, "web", "echo", &ev, 0, &res, &err), ==, 0);
	CHECK_INT(res.output.n, ==, 1);
	CHECK_STR(res.output.lines[0].text, "hi");
	sb_command_result_release(&res);
	for (int i = 1; i < started; i++)
		b->exec_release(b->self, ids[i]);
	/* all places are back: a file goes up */
	CHECK_INT(b->file_open_write(b->self, "web", fpath, 0644, &h, &err), ==, 0);
	CHECK_INT(b->file_write(b->self, h, "ok", 2, &err), ==, 0);
	CHECK_INT(b->file_close_write(b->self, h, true, &err), ==, 0);
	CHECK_INT(access(fpath, F_OK), ==, 0);

	CHECK_INT(b->stop(b->self, "web", &msg, &err), ==, 0);
	free(msg);
	sandbox_backend_vm_free(b);
	teardown();
}

/* With a project directory, the sandbox's log (what `msb server log NAME`
 * shows) has its start, config.exec's output and exit, and its stop. */
TEST(sandbox_log)
{
	const char *ref = setup(t);
	char proj[PATH_MAX], logp[PATH_MAX];
	snprintf(proj, sizeof(proj), "%s/projects", top);
	snprintf(logp, sizeof(logp), "%s/.menv/log/Sandboxfile/web.log", proj);
	struct msb_err err = {0};
	struct sandbox_backend *b = sandbox_backend_vm_new(proj, &err);
	CHECK(b != NULL);
	struct sb_start_config cfg = {.image = ref, .exec = "echo exec-says-hi; echo oops >&2"};
	char *msg = NULL;
	CHECK_INT(b->start(b->self, "web", &cfg, &msg, &err), ==, 0);
	free(msg);
	/* config.exec runs beside the start: wait for its end in the log */
	char text[8192] = "";
	for (int i = 0; i < 200 && !strstr(text, "config.exec exited with 0"); i++) {
		usleep(50 * 1000);
		FILE *f = fopen(logp, "r");
		size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
		text[n] = '\0';
		if (f)
			fclose(f);
	}
	CHECK(strstr(text, "msb: starting sandbox web (image ") != NULL);
	CHECK(strstr(text, "msb: sandbox web started (msb-vmm pid ") != NULL);
	CHECK(strstr(text, "\nexec-says-hi\n") != NULL);
	CHECK(strstr(text, "\noops\n") != NULL);
	CHECK(strstr(text, "msb: config.exec exited with 0\n") != NULL);
	CHECK_INT(b->stop(b->self, "web", &msg, &err), ==, 0);
	free(msg);
	FILE *f = fopen(logp, "r");
	CHECK(f != NULL);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	CHECK(strstr(text, "msb: sandbox web stopped\n") != NULL);
	sandbox_backend_vm_free(b);
	teardown();
}

TEST(refusals)
{
	const char *ref = setup(t);
	struct msb_err err = {0};
	struct sandbox_backend *b = sandbox_backend_vm_new(NULL, &err);
	char *msg = NULL;
	/* no config and no project */
	CHECK_INT(b->start(b->self, "x", NULL, &msg, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	const char *ports[] = {"80:http"}; /* ports work; a bad one is refused */
	struct sb_start_config cfg = {.image = ref, .ports = {ports, 1}};
	CHECK_INT(b->start(b->self, "x", &cfg, &msg, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	struct sb_start_config missing = {.image = "localhost/does-not-exist:1"};
	CHECK_INT(b->start(b->self, "x", &missing, &msg, &err), ==, -1);
	struct sb_info *rows = NULL;
	size_t n = 9;
	CHECK_INT(b->list(b->self, &rows, &n, &err), ==, 0);
	CHECK_INT(n, ==, 0); /* failed starts leave nothing */
	sb_info_free(rows, n);
	struct sb_repl_result rr = {0};
	CHECK_INT(b->repl_run(b->self, "x", "python", "1", 0, &rr, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	sandbox_backend_vm_free(b);
	teardown();
}

TEST_MAIN(T(start_run_stop), T(concurrency_and_hung_guests), T(hung_guest_repl_and_command),
	  T(connection_budget), T(sandbox_log), T(refusals))
