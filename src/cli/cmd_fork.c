/* msb fork NAME [-n N]: start N sandboxes at once from user snapshot NAME (each
 * with its own copy of the writable layer; memory shared copy-on-write), run
 * one command in each, show each copy's output under its name, stop them. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "oci/pull.h"
#include "project/exec.h"
#include "project/pairs.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/snapshot.h"
#include "sandbox/usersnap.h"

#define FORK_MAX 64

int cmd_fork(int argc, char **argv);

static void fork_usage(FILE *out)
{
	fprintf(out,
		"Usage: msb fork NAME [-n N] [-e CMD] [--env K=V]... [--workdir P] [-- ARGS...]\n\n"
		"Start N sandboxes (default 2, at most %d) at once from user snapshot NAME (msb\n"
		"snapshot create), run the command in each, print each copy's output with its\n"
		"name in front of every line (stdout to stdout, stderr to stderr), and stop\n"
		"them.  The copies are named NAME-1..NAME-N (also their hostnames); each has its\n"
		"own copy of the snapshot's writable layer and shares the snapshot's memory\n"
		"copy-on-write, so processes that ran at snapshot time run on in every copy and\n"
		"no copy sees another's writes.  What runs: -e CMD with ARGS; else the image's\n"
		"Entrypoint+Cmd with ARGS replacing its arguments (as msb exe).\n\n"
		"  -n, --count N        how many copies\n"
		"  -e, -x, --exec CMD   the program to run in each copy\n"
		"      --env K=V        environment, after the image's Env (repeatable)\n"
		"      --workdir PATH   working directory\n"
		"Exit status: 0 when every copy's command exited 0, else the first copy's\n"
		"non-zero status (128+N for a signal), or msb's own error status.\n",
		FORK_MAX);
}

struct fork_job {
	struct sandbox_spec spec;
	char name[96];
	char *const *argv;
	char *const *env;
	const char *cwd;
	int out_fd, err_fd; /* memfds holding the output */
	int code;
	bool failed;
	/* msb-vmm as a pidfd, so that the main thread can kill it on a signal
	 * without ever hitting a recycled pid (-1: not started yet) */
	pthread_mutex_t lock;
	int vmm_fd;
	atomic_bool done;
	uint64_t ready_ms;
	struct msb_err err;
};

static void job_kill(struct fork_job *j)
{
	pthread_mutex_lock(&j->lock);
	if (j->vmm_fd >= 0)
		syscall(SYS_pidfd_send_signal, j->vmm_fd, SIGKILL, NULL, 0);
	pthread_mutex_unlock(&j->lock);
}

/* sandbox_spec.on_spawn: remember msb-vmm; after a Ctrl-C it is killed at once. */
static void fork_spawned(void *ctx, pid_t pid)
{
	struct fork_job *j = ctx;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	pthread_mutex_lock(&j->lock);
	if (j->vmm_fd >= 0)
		close(j->vmm_fd);
	j->vmm_fd = fd;
	pthread_mutex_unlock(&j->lock);
	if (sandbox_cli_signalled())
		kill(pid, SIGKILL); /* not reaped yet: this pid is still msb-vmm */
}

static void *fork_run(void *arg)
{
	struct fork_job *j = arg;
	struct sandbox *sb = NULL;
	/* This thread forks msb-vmm, whose PDEATHSIG follows the thread: it stays
	 * until its VM is gone.  Every way out removes the run directory
	 * (sandbox_free). */
	if (sandbox_start(&j->spec, &sb, &j->err) < 0) {
		j->failed = true;
		atomic_store(&j->done, true);
		return NULL;
	}
	if (sandbox_cli_signalled()) {
		msb_err_set(&j->err, MSB_EK_STATE, 0, "interrupted");
		j->failed = true;
		sandbox_free(sb);
		atomic_store(&j->done, true);
		return NULL;
	}
	j->ready_ms = sb->boot_ms;
	struct agent_exec_opts o = {.argv = (const char *const *)j->argv,
				    .env = (const char *const *)j->env,
				    .cwd = j->cwd,
				    .stdin_fd = -1,
				    .stdout_fd = j->out_fd,
				    .stderr_fd = j->err_fd};
	struct agent_exec_status st;
	if (sandbox_exec(sb, &o, &st, &j->err) < 0)
		j->failed = true;
	else
		j->code = agent_exec_status_code(&st);
	struct msb_err ignored = {0};
	sandbox_stop(sb, SANDBOX_STOP_KILL, 0, &ignored);
	sandbox_free(sb);
	atomic_store(&j->done, true);
	return NULL;
}

/* Wait for every started copy; on Ctrl-C, SIGTERM or SIGHUP kill their VMs
 * (again as more of them spawn) so that each thread cleans up and ends. */
static void wait_jobs(struct fork_job *jobs, pthread_t *th, unsigned started)
{
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < started; i++)
			all = all && atomic_load(&jobs[i].done);
		if (all)
			break;
		if (sandbox_cli_signalled())
			for (unsigned i = 0; i < started; i++)
				job_kill(&jobs[i]);
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
}

/* Copy fd's contents to `out`, each line prefixed with "[name] ". */
static void print_prefixed(int fd, FILE *out, const char *name)
{
	if (lseek(fd, 0, SEEK_SET) < 0)
		return;
	_cleanup_fclose_ FILE *in = fdopen(dup(fd), "r");
	if (!in)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, in)) > 0) {
		fprintf(out, "[%s] %s", name, line);
		if (line[n - 1] != '\n')
			fputc('\n', out);
	}
	free(line);
}

static int parse_count(const char *v, unsigned *n)
{
	char *end = NULL;
	long x = v && *v ? strtol(v, &end, 10) : 0;
	if (!v || !*v || *end || x < 1 || x > FORK_MAX)
		return -1;
	*n = (unsigned)x;
	return 0;
}

int cmd_fork(int argc, char **argv)
{
	const char *cmd = "fork";
	static const struct option opts[] = {
		{"count", required_argument, NULL, 'n'}, {"exec", required_argument, NULL, 'e'},
		{"env", required_argument, NULL, 'E'},	 {"workdir", required_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},	 {NULL, 0, NULL, 0},
	};
	unsigned count = 2;
	struct sandbox_cli_args a = {0};
	struct msb_err err = {0};
	int c, rc = 1;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":n:e:x:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_count(optarg, &count) < 0) {
				sandbox_cli_args_clear(&a);
				return cli_usage_error(cmd,
						       "-n needs a number from 1 to %d, not '%s'",
						       FORK_MAX, optarg);
			}
			break;
		case 'e':
		case 'x':
			a.exec = optarg;
			break;
		case 'E': {
			struct msb_env_pair p = {0};
			if (msb_env_pair_parse(optarg, &p, &err) < 0) {
				sandbox_cli_args_clear(&a);
				return cli_usage_error(cmd, "--env '%s': %s", optarg, err.msg);
			}
			msb_env_pair_clear(&p);
			if (msb_strv_push(&a.envs, optarg, &err) < 0) {
				sandbox_cli_args_clear(&a);
				return cli_fail(cmd, &err);
			}
			break;
		}
		case 'w':
			if (optarg[0] != '/') {
				sandbox_cli_args_clear(&a);
				return cli_usage_error(cmd, "--workdir must be absolute, not '%s'",
						       optarg);
			}
			a.workdir = optarg;
			break;
		case 'h':
			fork_usage(stdout);
			sandbox_cli_args_clear(&a);
			return 0;
		default:
			sandbox_cli_args_clear(&a);
			return cli_bad_option(cmd, c, argv);
		}
	}
	if (optind >= argc) {
		sandbox_cli_args_clear(&a);
		return cli_usage_error(cmd, "no snapshot given (msb fork NAME)");
	}
	const char *name = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	a.args = argv + optind;
	a.nargs = (size_t)(argc - optind);

	struct sandbox_spec base = {.console_fd = -1};
	struct sandbox_snapmeta snap = {0};
	_cleanup_free_ char *snap_dir = NULL;
	struct oci_image *img = NULL;
	struct msb_sandbox desc = {0};
	struct msb_exec_plan plan = {0};
	struct msb_strv env = {0};
	struct fork_job *jobs = NULL;
	pthread_t *th = NULL;
	unsigned started = 0;
	/* From here a signal no longer ends msb at once: the copies are stopped
	 * and their run directories removed first. */
	sandbox_cli_signals_install(false);
	if (sandbox_check_kvm(&err) < 0 ||
	    sandbox_snapshot_spec(name, &base, &snap_dir, &snap, &err) < 0)
		goto fail;
	struct oci_store *st = NULL;
	if (oci_store_open(NULL, &st, &err) < 0)
		goto fail;
	int r = oci_image_ensure(st, snap.image, NULL, &img, &err);
	oci_store_close(st);
	if (r < 0) {
		msb_err_wrap(&err, "the snapshot's image '%s'", snap.image);
		goto fail;
	}
	if (sandbox_cli_exe_sandbox(snap.image, &img->config, &a, &desc, &err) < 0 ||
	    msb_exec_resolve(&desc, NULL, a.exec, a.args, a.nargs, &plan, &err) < 0 ||
	    sandbox_merge_env((const char *const *)img->config.env, (const char *const *)a.envs.v,
			      &env, &err) < 0)
		goto fail;
	jobs = calloc(count, sizeof(*jobs));
	th = calloc(count, sizeof(*th));
	if (!jobs || !th) {
		msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < count; i++) {
		pthread_mutex_init(&jobs[i].lock, NULL);
		jobs[i].vmm_fd = -1;
	}
	if (cli_is_tty(2))
		fprintf(stderr, "msb: starting %u sandboxes from snapshot '%s'...\n", count, name);
	for (unsigned i = 0; i < count; i++) {
		struct fork_job *j = &jobs[i];
		snprintf(j->name, sizeof(j->name), "%s-%u", name, i + 1);
		j->spec = base;
		j->spec.name = j->name;
		j->spec.on_spawn = fork_spawned;
		j->spec.ctx = j;
		j->argv = plan.argv;
		j->env = env.v;
		j->cwd = desc.workdir;
		j->out_fd = memfd_create("msb-fork-out", MFD_CLOEXEC);
		j->err_fd = memfd_create("msb-fork-err", MFD_CLOEXEC);
		if (j->out_fd < 0 || j->err_fd < 0) {
			msb_err_sys(&err, "memfd_create");
			goto join;
		}
		if (sandbox_cli_signalled())
			goto join; /* no more copies after a Ctrl-C */
		if (pthread_create(&th[i], NULL, fork_run, j) != 0) {
			msb_err_set(&err, MSB_EK_SYSTEM, 0, "starting a thread");
			goto join;
		}
		started++;
	}
join:
	wait_jobs(jobs, th, started);
	if (sandbox_cli_signalled()) {
		fprintf(stderr, "msb fork: interrupted; the copies were stopped and removed\n");
		rc = 128 + sandbox_cli_signalled();
		goto out;
	}
	if (started < count)
		goto fail;
	rc = 0;
	for (unsigned i = 0; i < count; i++) {
		struct fork_job *j = &jobs[i];
		fflush(stdout);
		print_prefixed(j->out_fd, stdout, j->name);
		fflush(stdout);
		print_prefixed(j->err_fd, stderr, j->name);
		if (j->failed) {
			fprintf(stderr, "[%s] msb fork: %s\n", j->name, j->err.msg);
			if (!rc)
				rc = msb_err_exit_code(j->err.kind);
		} else {
			msb_info("%s: ready after %llu ms, exit %d", j->name,
				 (unsigned long long)j->ready_ms, j->code);
			if (!rc && j->code)
				rc = j->code;
		}
	}
	goto out;
fail:
	rc = cli_fail(cmd, &err);
out:
	for (unsigned i = 0; jobs && i < count; i++) {
		if (jobs[i].out_fd > 0)
			close(jobs[i].out_fd);
		if (jobs[i].err_fd > 0)
			close(jobs[i].err_fd);
		if (jobs[i].vmm_fd >= 0)
			close(jobs[i].vmm_fd);
		pthread_mutex_destroy(&jobs[i].lock);
	}
	free(jobs);
	free(th);
	msb_strv_clear(&env);
	msb_exec_plan_clear(&plan);
	sandbox_cli_exe_sandbox_clear(&desc);
	if (img)
		oci_image_free(img);
	sandbox_snapmeta_clear(&snap);
	sandbox_cli_args_clear(&a);
	return rc;
}
