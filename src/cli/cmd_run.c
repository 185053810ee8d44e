/* msb run|r NAME[~SCRIPT] (and msr): run a project sandbox in the foreground.
 * Its writable layer is an ext4 disk in .menv/rw/<config>/<name>/, so what it
 * writes survives stop and start; the state DB says RUNNING (with msb's and
 * msb-vmm's pids) while it runs; the guest console goes to the rotating log
 * .menv/log/<config>/<name>.log. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/paths.h"
#include "oci/import.h"
#include "oci/pull.h"
#include "project/exec.h"
#include "project/lifecycle.h"
#include "project/menv.h"
#include "project/project.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/snapshot.h"
#include "sandbox/usersnap.h"
#include "sandbox/tty.h"

#define RW_DISK_MIB_DEFAULT 4096

int cmd_run(int argc, char **argv);

static void run_usage(FILE *out)
{
	fprintf(out,
		"Usage: msb run NAME[~SCRIPT] [-f DIR|FILE] [-e CMD] [-- ARGS...]\n"
		"       msr NAME[~SCRIPT] ...\n\n"
		"Run a sandbox of the project in the foreground.  What runs: --exec CMD;\n"
		"else the script SCRIPT; else scripts.start; else command (ARGS replace its\n"
		"arguments); else the shell.  What the sandbox writes is kept in .menv/rw/\n"
		"across runs (msb clean removes it).  On a terminal, with no -e, ARGS or\n"
		"script, it runs on a PTY in the guest (raw terminal, window size, Ctrl-C).\n\n"
		"  -f, --file PATH      the project directory, or the config file in it\n"
		"  -e, -x, --exec CMD   run CMD (with ARGS) instead\n"
		"  -d, --detach         start it in the background\n"
		"      --snapshot NAME  resume from user snapshot NAME (msb snapshot create): its\n"
		"                       memory and processes; the sandbox's writable layer is\n"
		"                       replaced by a copy of the snapshot's\n"
		"      --cold           boot the kernel instead of restoring the base snapshot\n"
		"  -p, --port [IP:]H:G[/udp]  forward a host port to the guest, added to the\n"
		"                       Sandboxfile's ports (repeatable)\n"
		"      --scope S        none, group, public or any: replaces the Sandboxfile's\n"
		"                       scope for this run (msb exe --help says what each means)\n"
		"  -v, --volume H:G[:ro] share host directory H at guest path G, added to the\n"
		"                       Sandboxfile's volumes (at most 4 in all)\n"
		"Environment: MSB_BOOT_TIMEOUT (seconds, default 1800), MSB_STOP_TIMEOUT (seconds\n"
		"for the ordered power-off, default 300), MSB_RW_DISK_MIB (size of a new\n"
		"writable disk, default 4096, sparse).\n");
}

struct run_ctx {
	bool detached; /* this process is the background supervisor of `msb run -d` */
	struct msb_state *state;
	const struct msb_project *p;
	const char *name;
	const char *mtime;
	const char *rootfs;
	bool marked;
	int log_fd; /* detached: the command's output goes to the sandbox's log too */
};

/* A background run's marks in its log, between the console lines:
 * "msb: 2026-11-29T19:00:00Z sandbox 'app' started (msb-vmm pid 123)". */
__attribute__((format(printf, 2, 3))) static void log_mark(const struct run_ctx *r, const char *fmt,
							   ...)
{
	if (!r->detached)
		return;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	dprintf(2, "\nmsb: %s sandbox '%s' %s\n", when, r->name, what);
}

/* msb-vmm runs: record it (and tell the signal handlers which VM to kill). */
static void on_spawn(void *ctx, pid_t pid)
{
	struct run_ctx *r = ctx;
	sandbox_cli_watch_pid(NULL, pid);
	struct msb_err err = {0};
	if (msb_state_set_running(r->state, r->name, r->p->config_name, r->mtime, getpid(), pid,
				  r->rootfs, &err) < 0)
		msb_warn("recording sandbox '%s' as running: %s", r->name, err.msg);
	else
		r->marked = true;
	if (r->detached) {
		/* Errors up to here reached the caller's terminal; from now on the
		 * supervisor is alone: the command's stdout and stderr (and msb's
		 * messages) go to the sandbox's log, beside the console. */
		int nul = r->log_fd >= 0 ? -1 : open("/dev/null", O_WRONLY | O_CLOEXEC);
		int to = r->log_fd >= 0 ? r->log_fd : nul;
		if (to >= 0) {
			dup2(to, 1);
			dup2(to, 2);
		}
		if (nul >= 0)
			close(nul);
		log_mark(r, "started (msb-vmm pid %d)", (int)pid);
	}
}

/* `msb run -d`: fork the supervisor (its own session, stdin/stdout on /dev/null)
 * and wait until its state row says RUNNING, or it failed (its exit status and
 * its messages, which still go to our stderr, are the answer).  Returns -1 in
 * the supervisor, which carries on; the caller's exit status otherwise. */
static int detach(const struct msb_project *p, const char *name)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("msb run: fork");
		return 1;
	}
	if (pid == 0) {
		setsid();
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			close(nul);
		}
		return -1;
	}
	for (;;) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFEXITED(status) ? (WEXITSTATUS(status) ? WEXITSTATUS(status) : 1)
						 : 128 + WTERMSIG(status);
		struct msb_state *st = NULL;
		struct msb_err err = {0};
		struct msb_state_row row = {0};
		bool found = false;
		if (msb_project_state(p, &st, &err) == 0 &&
		    msb_state_get(st, name, p->config_name, &row, &found, &err) == 0 && found &&
		    row.status == MSB_STATUS_RUNNING && row.supervisor_pid == pid) {
			printf("sandbox '%s' started in the background (supervisor pid %d, msb-vmm "
			       "pid %d)\n",
			       name, (int)pid, (int)row.microvm_pid);
			msb_state_row_clear(&row);
			msb_state_close(st);
			return 0;
		}
		msb_state_row_clear(&row);
		if (st)
			msb_state_close(st);
		usleep(100 * 1000);
	}
}

struct console_pump {
	int fd;
	struct msb_rotlog *log;
};

static void *pump_console(void *arg)
{
	struct console_pump *cp = arg;
	char buf[16384];
	for (;;) {
		ssize_t n = read(cp->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		struct msb_err err = {0};
		if (cp->log && msb_rotlog_write(cp->log, buf, (size_t)n, &err) < 0) {
			msb_warn("console log: %s", err.msg);
			msb_rotlog_close(cp->log);
			cp->log = NULL;
		}
	}
	return NULL;
}

/* An ordered power-off runs guest kernel code: minutes where it is emulated (PVM). */
static int stop_timeout_ms(void)
{
	const char *e = getenv("MSB_STOP_TIMEOUT");
	long v = e ? strtol(e, NULL, 10) : 0;
	return (int)((v > 0 && v < 86400 ? v : 300) * 1000);
}

static unsigned rw_disk_mib(void)
{
	const char *e = getenv("MSB_RW_DISK_MIB");
	long v = e ? strtol(e, NULL, 10) : 0;
	return v >= 64 && v <= (1l << 22) ? (unsigned)v : RW_DISK_MIB_DEFAULT;
}

/* The Sandboxfile's volumes, then the command line's -v, checked (the host
 * directories exist) before a VM boots. */
static int run_volumes(const struct msb_sandbox *d, const struct sandbox_cli_args *a,
		       struct sandbox_volumes *vols, struct msb_err *err)
{
	if (sandbox_volumes_from_pairs(vols, d->volumes, d->nvolumes, err) < 0 ||
	    sandbox_volumes_merge(vols, &a->volumes, err) < 0)
		return msb_err_wrap(err, "sandbox '%s'", d->name);
	return 0;
}

/* The Sandboxfile's ports and scope, then the command line's: its ports are
 * added, its --scope replaces the file's. */
static int run_net(const struct msb_sandbox *d, const struct sandbox_cli_args *a,
		   struct sandbox_net *out, struct msb_err *err)
{
	if (sandbox_net_from_sandboxfile(d, out, err) < 0)
		return msb_err_wrap(err, "sandbox '%s'", d->name);
	if (a->scope_set)
		out->scope = a->net.scope;
	for (size_t i = 0; i < a->net.nports; i++)
		if (sandbox_net_add_port(out, &a->net.ports[i], err) < 0)
			return -1;
	if (out->scope == MSB_SCOPE_NONE && out->nports)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "sandbox '%s': ports need a network, and scope none has none: "
				   "drop the ports or choose another scope",
				   d->name);
	return 0;
}

static int env_of(const struct msb_sandbox *d, const struct oci_image *img, struct msb_strv *out,
		  struct msb_err *err)
{
	struct msb_strv over = {0};
	for (size_t i = 0; i < d->nenvs; i++) {
		_cleanup_free_ char *kv = NULL;
		if (asprintf(&kv, "%s=%s", d->envs[i].name, d->envs[i].value) < 0) {
			msb_strv_clear(&over);
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		}
		if (msb_strv_push(&over, kv, err) < 0) {
			msb_strv_clear(&over);
			return -1;
		}
	}
	int r = sandbox_merge_env((const char *const *)img->config.env, (const char *const *)over.v,
				  out, err);
	msb_strv_clear(&over);
	return r;
}

static int write_scripts(struct sandbox *sb, const struct msb_sandbox *d, struct msb_err *err)
{
	for (size_t i = 0; i < d->nscripts; i++) {
		_cleanup_free_ char *path = NULL, *body = NULL;
		if (asprintf(&path, "%s/%s", MSB_SCRIPTS_DIR, d->scripts[i].key) < 0 ||
		    asprintf(&body, "#!%s\n%s\n", d->shell ? d->shell : MSB_DEFAULT_SHELL,
			     d->scripts[i].value ? d->scripts[i].value : "") < 0)
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		if (sandbox_write_file(sb, path, body, strlen(body), 0750, err) < 0)
			return -1;
	}
	return 0;
}

/* `msb run --snapshot`: the sandbox's writable layer becomes a copy of the
 * snapshot's, which its memory expects (the old layer is replaced). */
static int rw_from_snapshot(const char *name, const char *dir, const struct sandbox_snapmeta *m,
			    const char *rw_disk, struct msb_err *err)
{
	if (!m->rw)
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"snapshot '%s' has no writable layer (it was taken from a "
			"throwaway sandbox); start it with msb exe --snapshot or msb fork",
			m->name ? m->name : "?");
	_cleanup_free_ char *src = NULL, *tmp = NULL, *rdir = strdup(rw_disk);
	if (!rdir || asprintf(&src, "%s/rw.ext4", dir) < 0 ||
	    asprintf(&tmp, "%s.snap", rw_disk) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	char *slash = strrchr(rdir, '/');
	if (slash)
		*slash = '\0';
	if (msb_mkdir_p(rdir, 0755, err) < 0)
		return -1;
	unlink(tmp);
	const char *how = "";
	if (sandbox_copy_file(src, tmp, &how, err) < 0)
		return msb_err_wrap(err, "sandbox '%s': copying the snapshot's writable layer",
				    name);
	if (rename(tmp, rw_disk) < 0) {
		msb_err_sys(err, "replacing %s", rw_disk);
		unlink(tmp);
		return -1;
	}
	msb_info("sandbox %s: writable layer replaced by the snapshot's (%s)", name, how);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	const char *cmd = "run";
	struct msb_err err = {0};
	struct sandbox_cli_args a;
	if (sandbox_cli_parse(SANDBOX_CLI_RUN, argc, argv, &a, &err) < 0)
		return cli_usage_error(cmd, "%s", err.msg);
	if (a.help) {
		run_usage(stdout);
		return 0;
	}
	int rc = 1;
	struct msb_project p = {0};
	struct msb_sandboxfile *sf = NULL;
	struct msb_state *state = NULL;
	struct oci_image *img = NULL;
	struct msb_exec_plan plan = {0};
	struct msb_strv env = {0};
	struct sandbox *sb = NULL;
	struct msb_rotlog *log = NULL;
	_cleanup_free_ char *mtime = NULL, *rw_dir = NULL, *rw_disk = NULL, *log_path = NULL;
	int cpipe[2] = {-1, -1};
	pthread_t pump_thread;
	bool pumping = false;
	struct run_ctx rctx = {0};
	struct console_pump cp = {.fd = -1};
	struct sandbox_spec snapspec = {0};
	struct sandbox_snapmeta snap = {0};
	struct sandbox_net net = {0};
	struct sandbox_volumes vols = {0};
	_cleanup_free_ char *snap_dir = NULL;

	if (a.unsupported) {
		msb_err_set(&err, MSB_EK_USAGE, 0, "%s is not supported yet; run without it",
			    a.unsupported);
		goto fail;
	}
	sandbox_cli_signals_install(true);
	if (msb_project_resolve(a.file, false, &p, &err) < 0 || msb_project_load(&p, &sf, &err) < 0)
		goto fail;
	struct msb_sandbox *d = (struct msb_sandbox *)msb_sandboxfile_find(sf, a.target);
	if (!d) {
		msb_err_set(&err, MSB_EK_NOT_FOUND, 0,
			    "no sandbox '%s' in %s; run `msb list` to see the names, or `msb add`",
			    a.target, p.config_path);
		goto fail;
	}
	if (run_volumes(d, &a, &vols, &err) < 0 || run_net(d, &a, &net, &err) < 0 ||
	    sandbox_net_add_group(&net, sf, &err) < 0)
		goto fail;
	/* What `msb apply` compares, taken before the image defaults change d. */
	char cfg_hash[MSB_CONFIG_HASH_LEN + 1];
	msb_sandbox_config_hash(d, cfg_hash);
	if (a.detach) {
		int drc = detach(&p, d->name);
		if (drc >= 0) {
			rc = drc;
			goto out;
		}
		rctx.detached = true;
	}
	if (msb_project_state(&p, &state, &err) < 0)
		goto fail;
	struct msb_state_row row = {0};
	bool found = false;
	if (msb_state_get(state, d->name, p.config_name, &row, &found, &err) < 0)
		goto fail;
	bool alive = found && msb_state_row_alive(&row);
	msb_state_row_clear(&row);
	if (alive) {
		msb_err_set(&err, MSB_EK_STATE, 0,
			    "sandbox '%s' is already running; stop it first (msb down %s)", d->name,
			    d->name);
		goto fail;
	}
	if (sandbox_check_kvm(&err) < 0)
		goto fail;
	struct oci_store *st = NULL;
	if (oci_store_open(NULL, &st, &err) < 0)
		goto fail;
	/* image: ./dir is built into (or found in) the store as localhost/dir-<hash>. */
	int r = d->image_is_path ? oci_image_from_dir(st, d->image_path, &img, &err)
				 : oci_image_ensure(st, d->image, NULL, &img, &err);
	oci_store_close(st);
	if (r < 0) {
		msb_err_wrap(&err, "sandbox '%s': image '%s'", d->name, d->image);
		goto fail;
	}
	if (sandbox_apply_image_defaults(d, &img->config, &err) < 0 ||
	    msb_exec_resolve(d, a.script, a.exec, a.args, a.nargs, &plan, &err) < 0 ||
	    env_of(d, img, &env, &err) < 0 ||
	    msb_file_mtime_rfc3339(p.config_path, &mtime, &err) < 0)
		goto fail;
	rw_dir = msb_project_rw_dir(&p, d->name);
	log_path = msb_project_log_path(&p, d->name);
	if (!rw_dir || !log_path || asprintf(&rw_disk, "%s/rw.ext4", rw_dir) < 0) {
		rw_disk = NULL;
		msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto fail;
	}
	bool created = false;
	if (a.snapshot &&
	    (sandbox_snapshot_spec(a.snapshot, &snapspec, &snap_dir, &snap, &err) < 0 ||
	     rw_from_snapshot(d->name, snap_dir, &snap, rw_disk, &err) < 0))
		goto fail;
	if (sandbox_rw_disk_ensure(rw_disk, rw_disk_mib(), &created, &err) < 0)
		goto fail;
	if (msb_rotlog_open(log_path, MSB_LOG_MAX_BYTES, &log, &err) < 0)
		goto fail;
	if (pipe2(cpipe, O_CLOEXEC) < 0) {
		msb_err_sys(&err, "pipe");
		goto fail;
	}
	cp.fd = cpipe[0];
	cp.log = log;
	log = NULL;
	if (pthread_create(&pump_thread, NULL, pump_console, &cp) != 0) {
		msb_err_set(&err, MSB_EK_SYSTEM, 0, "starting the console log thread");
		goto fail;
	}
	pumping = true;
	rctx = (struct run_ctx){.detached = rctx.detached,
				.log_fd = cpipe[1],
				.state = state,
				.p = &p,
				.name = d->name,
				.mtime = mtime,
				.rootfs = img->rootfs_path};
	struct sandbox_spec spec = {
		.name = d->name,
		.image = img->reference,
		.cpus = d->cpus ? d->cpus : MSB_DEFAULT_CPUS,
		.memory_mib = d->memory_mib ? d->memory_mib : MSB_DEFAULT_MEMORY,
		.rw_disk = rw_disk,
		.console_fd = cpipe[1],
		.on_spawn = on_spawn,
		.ctx = &rctx,
		.cold = a.cold,
		.net = &net,
		.volumes = &vols,
	};
	if (a.snapshot) {
		spec.cpus = snapspec.cpus;
		spec.memory_mib = snapspec.memory_mib;
		spec.snapshot_dir = snapspec.snapshot_dir;
		spec.snapshot_disks = snapspec.snapshot_disks;
		spec.snapshot_net = snapspec.snapshot_net;
		spec.snapshot_fs_slots = snapspec.snapshot_fs_slots;
		spec.snapshot_rootfs = snapspec.snapshot_rootfs;
	}
	if (cli_is_tty(2))
		fprintf(stderr, "msb: starting sandbox '%s' (%s)%s...\n", d->name, img->reference,
			created ? " with a new writable disk" : "");
	int sr = sandbox_start(&spec, &sb, &err);
	close(cpipe[1]); /* msb-vmm holds the write end now */
	cpipe[1] = -1;
	if (sr < 0)
		goto fail_sig;
	/* `msb apply` compares the config hash; `msb shell NAME` joins a sandbox
	 * running in the background through the agent socket. */
	struct msb_err sock_err = {0};
	if (rctx.marked &&
	    (msb_state_set_config_hash(state, d->name, p.config_name, cfg_hash, &sock_err) < 0 ||
	     msb_state_set_agent_socket(state, d->name, p.config_name, sb->vsock_path, &sock_err) <
		     0))
		msb_warn("recording the state of '%s': %s", d->name, sock_err.msg);
	int code = 0;
	if (write_scripts(sb, d, &err) < 0 ||
	    (sandbox_cli_wants_tty(&a)
		     ? sandbox_tty_run(sb, plan.argv, env.v, d->workdir, &code, &err)
		     : sandbox_cli_run_foreground(sb, plan.argv, env.v, d->workdir, true, &code,
						  NULL, &err)) < 0)
		goto fail_sig;
	rc = code;
	log_mark(&rctx, "command exited with status %d; stopping", code);
	/* In order: the guest syncs and unmounts the writable disk. */
	if (sandbox_stop(sb, SANDBOX_STOP_ORDERED, stop_timeout_ms(), &err) < 0)
		msb_warn("%s", err.msg);
	goto out;
fail_sig:
	if (sandbox_cli_signalled()) {
		/* The first signal while the command ran left the VM up: power it off
		 * in order so that the writable disk is clean (a second signal kills). */
		if (sb && sb->vmm_pid > 0 &&
		    sandbox_stop(sb, SANDBOX_STOP_ORDERED, stop_timeout_ms(), &err) < 0)
			msb_warn("%s", err.msg);
		fprintf(stderr, "msb run: interrupted; sandbox '%s' was stopped\n", a.target);
		rc = 128 + sandbox_cli_signalled();
		goto out;
	}
fail:
	rc = cli_fail(cmd, &err);
out:
	sandbox_free(sb);
	if (rctx.marked) {
		struct msb_err e2 = {0};
		if (msb_state_set_stopped(state, rctx.name, p.config_name, &e2) < 0)
			msb_warn("recording sandbox '%s' as stopped: %s", rctx.name, e2.msg);
	}
	if (cpipe[1] >= 0)
		close(cpipe[1]);
	if (rctx.detached) {
		/* stdout and stderr may hold the log pipe's write end (on_spawn). */
		fflush(NULL);
		int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, 1);
			dup2(nul, 2);
			close(nul);
		}
	}
	if (pumping)
		pthread_join(pump_thread, NULL);
	if (cpipe[0] >= 0)
		close(cpipe[0]);
	if (cp.log)
		msb_rotlog_close(cp.log);
	if (log)
		msb_rotlog_close(log);
	msb_strv_clear(&env);
	msb_exec_plan_clear(&plan);
	sandbox_snapmeta_clear(&snap);
	if (img)
		oci_image_free(img);
	if (state)
		msb_state_close(state);
	msb_sandboxfile_free(sf);
	msb_project_release(&p);
	sandbox_net_clear(&net);
	sandbox_volumes_clear(&vols);
	sandbox_cli_args_clear(&a);
	return rc;
}
