/* One sandbox VM: spawn msb-vmm, wait for msb-init's READY, talk to the agent,
 * stop in order, clean up. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/files_client.h"
#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"
#include "project/menv.h"
#include "sandbox/child.h"
#include "sandbox/net.h"
#include "sandbox/scope.h"
#include "sandbox/sandbox.h"
#include "sandbox/snapshot.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/vm_int.h"
#include "sandbox/volumes.h"

#define DEFAULT_BOOT_TIMEOUT_S 1800

uint64_t sandbox_now_ms(void)
{
	return (uint64_t)msb_now_ms();
}

char *sandbox_path_join(const char *dir, const char *name)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* A private directory for the sockets and logs of one VM.  Unix socket paths are
 * limited to 108 bytes, so $TMPDIR is used only when it is short. */
char *sandbox_make_run_dir(struct msb_err *err)
{
	const char *base = getenv("TMPDIR");
	if (!base || !*base || strlen(base) > 70)
		base = "/tmp";
	char *tmpl = NULL;
	if (asprintf(&tmpl, "%s/msb-sandbox-XXXXXX", base) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	if (!mkdtemp(tmpl)) { /* mkdtemp makes it 0700 */
		msb_err_sys(err, "creating a run directory in %s", base);
		free(tmpl);
		return NULL;
	}
	return tmpl;
}

int sandbox_listen_unix(const char *path, struct msb_err *err)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return msb_err_set(err, MSB_EK_SYSTEM, ENAMETOOLONG, "socket path %s", path);
	memcpy(a.sun_path, path, strlen(path) + 1);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return msb_err_sys(err, "socket");
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0)
		return msb_err_sys(err, "listening on %s", path);
	return steal_fd(&fd);
}

static char *read_tail(const char *path, size_t max)
{
	if (!path)
		return NULL;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return NULL;
	off_t off = st.st_size > (off_t)max ? st.st_size - (off_t)max : 0;
	size_t want = (size_t)(st.st_size - off);
	char *buf = malloc(want + 1);
	if (!buf)
		return NULL;
	ssize_t n = pread(fd, buf, want, off);
	buf[n > 0 ? n : 0] = '\0';
	/* Control bytes of a console would garble the terminal the message goes to. */
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\t')
			buf[i] = '.';
	return buf;
}

char *sandbox_console_tail(const struct sandbox *sb, size_t max)
{
	return read_tail(sb->console_path, max);
}

/* Reap msb-vmm if it ended (or wait up to timeout_ms; -1: forever).  1 reaped, 0 running. */
int sandbox_reap(struct sandbox *sb, int timeout_ms)
{
	if (sb->vmm_pid <= 0)
		return 1;
	uint64_t deadline = sandbox_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	for (;;) {
		int status = 0;
		pid_t r = waitpid(sb->vmm_pid, &status, timeout_ms < 0 ? 0 : WNOHANG);
		if (r == sb->vmm_pid || (r < 0 && errno == ECHILD)) {
			sb->vmm_status = r == sb->vmm_pid ? status : 0;
			sb->vmm_pid = 0;
			return 1;
		}
		if (r < 0 && errno != EINTR)
			return 0;
		if (timeout_ms >= 0 && sandbox_now_ms() >= deadline)
			return 0;
		if (r == 0) {
			struct timespec ts = {0, 20 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
}

/* Explain why msb-vmm ended during start-up, from its status, stderr and the console. */
int sandbox_vmm_died(struct sandbox *sb, struct msb_err *err)
{
	_cleanup_free_ char *vpath = sandbox_path_join(sb->run_dir, "vmm.stderr");
	_cleanup_free_ char *verr = read_tail(vpath, 1024);
	_cleanup_free_ char *tail = sandbox_console_tail(sb, SANDBOX_TAIL_BYTES);
	int st = sb->vmm_status;
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	enum msb_err_kind kind = code == 7   ? MSB_EK_GUEST
				 : code == 3 ? MSB_EK_CORRUPT
					     : MSB_EK_SYSTEM;
	const char *what = code == 7   ? "the guest crashed or reset while starting"
			   : code == 2 ? "msb-vmm refused its options (a bug of ours)"
			   : code == 3 ? "msb-vmm cannot restore this snapshot"
				       : "msb-vmm failed";
	return msb_err_set(err, kind, 0, "%s (msb-vmm exit %d)%s%s%s%s", what, code,
			   verr && *verr ? "\n--- msb-vmm said:\n" : "", verr ? verr : "",
			   tail && *tail ? "\n--- last console output:\n" : "", tail ? tail : "");
}

int sandbox_vmm_exit_code(const struct sandbox *sb)
{
	int st = sb->vmm_status;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void sandbox_vm_discard(struct sandbox *sb)
{
	if (sb->agent) {
		agent_client_free(sb->agent);
		sb->agent = NULL;
	}
	if (sb->vmm_pid > 0) {
		kill(sb->vmm_pid, SIGKILL);
		sandbox_reap(sb, -1);
	}
	sandbox_net_stop(sb); /* the next msb-vmm gets a passt of its own */
	/* A killed msb-vmm leaves its sockets behind; the next one binds them again. */
	if (sb->vsock_path)
		unlink(sb->vsock_path);
	if (sb->control_path)
		unlink(sb->control_path);
}

int sandbox_spawn_vmm(struct sandbox *sb, const struct msb_strv *argv, int console_fd,
		      struct msb_err *err)
{
	_cleanup_free_ char *epath = sandbox_path_join(sb->run_dir, "vmm.stderr");
	if (!epath)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	_cleanup_close_ int efd = open(epath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (efd < 0)
		return msb_err_sys(err, "creating %s", epath);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return msb_err_sys(err, "fork");
	if (pid == 0) /* the network pair's end is descriptor 3 (msb-vmm --net fd:3) */
		sandbox_child_exec(parent, console_fd, efd, sb->net_fd, argv->v);
	sb->vmm_pid = pid;
	sandbox_net_spawned(sb);
	return 0;
}

/* Wait for msb-init's READY on <vsock>_1023 while watching msb-vmm. */
int sandbox_wait_ready(struct sandbox *sb, int lfd, int timeout_ms, struct msb_err *err)
{
	uint64_t deadline = sandbox_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (sandbox_reap(sb, 0))
			return sandbox_vmm_died(sb, err);
		uint64_t now = sandbox_now_ms();
		if (now >= deadline) {
			_cleanup_free_ char *tail = sandbox_console_tail(sb, SANDBOX_TAIL_BYTES);
			return msb_err_set(err, MSB_EK_TIMEOUT, 0,
					   "the guest's agent was not ready after %d s (raise "
					   "MSB_BOOT_TIMEOUT if this machine is slow)%s%s",
					   timeout_ms / 1000,
					   tail && *tail ? "\n--- last console output:\n" : "",
					   tail ? tail : "");
		}
		struct pollfd pfd = {.fd = lfd, .events = POLLIN};
		int r = poll(&pfd, 1, 250);
		if (r < 0 && errno != EINTR)
			return msb_err_sys(err, "waiting for the guest");
		if (r <= 0)
			continue;
		_cleanup_close_ int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		/* The frame itself (version, name, hostname) is not needed: HELLO on the
		 * agent connection carries the same. */
		return 0;
	}
}

static int boot_timeout_ms(const struct sandbox_spec *spec)
{
	if (spec->boot_timeout_ms > 0)
		return spec->boot_timeout_ms;
	const char *e = getenv("MSB_BOOT_TIMEOUT");
	long s = e ? strtol(e, NULL, 10) : 0;
	return (int)((s > 0 && s < 86400 ? s : DEFAULT_BOOT_TIMEOUT_S) * 1000);
}

static int get_image(const struct sandbox_spec *spec, struct oci_image **img, struct msb_err *err)
{
	struct oci_store *st = NULL;
	if (oci_store_open(NULL, &st, err) < 0)
		return msb_err_wrap(err, "opening the image store");
	int r = oci_image_ensure(st, spec->image, spec->pull_opts, img, err);
	oci_store_close(st);
	if (r < 0)
		return msb_err_wrap(err, "image '%s'", spec->image);
	return 0;
}

/* <run dir>/sandbox.meta: what `msb snapshot create` needs to know about this VM. */
static int write_run_meta(struct sandbox *sb, const struct sandbox_spec *spec, struct msb_err *err)
{
	struct sandbox_snapmeta m = {
		.name = sb->name,
		.image = sb->img->reference,
		.rootfs = sb->img->rootfs_path,
		.rootfs_format = sb->img->rootfs_format,
		.rw_disk = sb->rw_disk,
		.cpus = sb->cpus,
		.memory_mib = sb->memory_mib,
		.disks = sb->disks,
		.net = sb->net_slot,
		.fs_slots = sb->fs_slots,
		.volumes = sb->nvolumes,
	};
	(void)spec;
	_cleanup_free_ char *p = sandbox_path_join(sb->run_dir, "sandbox.meta");
	if (!p)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	return sandbox_snapmeta_write(p, &m, err);
}

static bool snapshots_off(const struct sandbox_spec *spec)
{
	const char *e = getenv("MSB_NO_SNAPSHOT");
	return spec->cold || (e && *e && strcmp(e, "0") != 0);
}

/* A cold guest has its root: one SETUP gives it the network (passt behind the
 * NIC) and its volumes, if it has either. */
static int cold_setup(struct sandbox *sb, const struct sandbox_volumes *vols, struct msb_err *err)
{
	bool net = sb->passt_pid > 0, vol = vols && vols->n;
	if (!net && !vol)
		return 0;
	struct msb_strv mounts = {0};
	int r = sandbox_volumes_mounts(vols, &mounts, err);
	if (r == 0) {
		struct agent_setup_opts o = {.mounts = (const char *const *)mounts.v,
					     .nmounts = mounts.n};
		if (net)
			o.net = SANDBOX_NET_SETUP;
		r = agent_setup(sb->agent, &o, err);
	}
	msb_strv_clear(&mounts);
	if (r < 0)
		return msb_err_wrap(err, net && vol ? "configuring the guest's network and volumes"
					 : net	    ? "configuring the guest's network (eth0)"
						    : "mounting the volumes");
	sb->nvolumes = vols ? vols->n : 0;
	return 0;
}

/* The way without snapshots: kernel + initramfs with the root on msb-init's
 * command line, READY on <vsock>_1023, then the agent. */
static int cold_start(struct sandbox *sb, const struct sandbox_spec *spec, int tmo,
		      struct msb_err *err)
{
	struct msb_strv argv = {0};
	_cleanup_free_ char *cmdline = NULL, *ready_path = NULL;
	_cleanup_close_ int lfd = -1;
	int rc = -1;
	if (asprintf(&ready_path, "%s_1023", sb->vsock_path) < 0) {
		ready_path = NULL;
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	if ((lfd = sandbox_listen_unix(ready_path, err)) < 0)
		return -1;
	if (!(cmdline = sandbox_guest_cmdline(sb->img->rootfs_format, spec->rw_disk != NULL,
					      sb->name, err)))
		return -1;
	struct sandbox_vmm_args va = {
		.parts = &sb->parts,
		.rootfs_path = sb->img->rootfs_path,
		.rw_disk = spec->rw_disk,
		.guest_cmdline = cmdline,
		.vsock_path = sb->vsock_path,
		.console = spec->console_fd >= 0 ? "-" : sb->console_path,
		.control = sb->control_path,
		.cpus = spec->cpus,
		.memory_mib = spec->memory_mib,
		.fs_slots = spec->volumes ? spec->volumes->n : 0,
		.volumes = spec->volumes,
	};
	sb->fs_slots = va.fs_slots;
	if (sandbox_net_prepare(sb, spec, true, &va.net, err) < 0 ||
	    sandbox_vmm_argv(&va, &argv, err) < 0)
		goto out;
	sb->cpus = spec->cpus ? spec->cpus : 1;
	sb->memory_mib = spec->memory_mib ? spec->memory_mib : MSB_DEFAULT_MEMORY;
	sb->disks = spec->rw_disk ? 2 : 1;
	if (spec->rw_disk && !(sb->rw_disk = strdup(spec->rw_disk))) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	uint64_t t0 = sandbox_now_ms();
	if (sandbox_spawn_vmm(sb, &argv, spec->console_fd, err) < 0)
		goto out;
	msb_info("sandbox %s: cold boot, msb-vmm pid %d, run dir %s", sb->name, (int)sb->vmm_pid,
		 sb->run_dir);
	if (spec->on_spawn)
		spec->on_spawn(spec->ctx, sb->vmm_pid);
	if (sandbox_wait_ready(sb, lfd, tmo, err) < 0)
		goto out;
	uint64_t el = sandbox_now_ms() - t0;
	uint64_t left = el < (uint64_t)tmo ? (uint64_t)tmo - el : 1000;
	if (!(sb->agent =
		      agent_client_open(sb->vsock_path, left < 60000 ? 60000 : (int)left, err))) {
		msb_err_wrap(err, "connecting to the guest's agent");
		goto out;
	}
	if (cold_setup(sb, spec->volumes, err) < 0)
		goto out;
	sb->boot_ms = sandbox_now_ms() - t0;
	msb_info("sandbox %s: agent ready after %llu ms (cold boot)", sb->name,
		 (unsigned long long)sb->boot_ms);
	rc = 0;
out:
	unlink(ready_path);
	msb_strv_clear(&argv);
	return rc;
}

static int restore_timeout_ms(int boot_tmo)
{
	const char *e = getenv("MSB_RESTORE_TIMEOUT");
	long s = e ? strtol(e, NULL, 10) : 0;
	if (s > 0 && s < 86400)
		return (int)(s * 1000);
	return boot_tmo < 600000 ? boot_tmo : 600000;
}

/* Restore the base snapshot (built on first use).  0: started; 1: not possible,
 * the caller boots cold (a warning said why); -1: interrupted by a signal. */
static int try_base(struct sandbox *sb, const struct sandbox_spec *spec, int tmo,
		    struct msb_err *err)
{
	unsigned cpus = spec->cpus ? spec->cpus : 1;
	unsigned mem = spec->memory_mib ? spec->memory_mib : MSB_DEFAULT_MEMORY;
	for (int attempt = 0; attempt < 2; attempt++) {
		struct msb_err e = {0};
		_cleanup_free_ char *dir = NULL;
		if (sandbox_base_ensure(&sb->parts, cpus, mem, tmo, &dir, &e) < 0) {
			if (sandbox_cli_signalled())
				return msb_err_set(err, MSB_EK_STATE, 0, "interrupted");
			msb_warn("the base snapshot for %u vCPU / %u MiB could not be made, so "
				 "this sandbox boots cold (slow): %s",
				 cpus, mem, e.msg);
			return 1;
		}
		if (attempt == 0 && sandbox_warm_wanted(spec)) {
			int w = sandbox_warm_start(sb, spec, dir, restore_timeout_ms(tmo), err);
			if (w <= 0)
				return w;
		}
		struct sandbox_restore r = {.dir = dir,
					    .disks = 2,
					    .net = true,
					    .fs_slots = SANDBOX_FS_SLOTS,
					    .rw_disk = spec->rw_disk,
					    .timeout_ms = restore_timeout_ms(tmo)};
		bool refused = false;
		if (sandbox_restore_start(sb, spec, &r, &refused, &e) == 0)
			return 0;
		sandbox_vm_discard(sb);
		if (sandbox_cli_signalled())
			return msb_err_set(err, MSB_EK_STATE, 0, "interrupted");
		if (refused && attempt == 0) {
			msb_warn("msb-vmm refused the base snapshot (%s); rebuilding it", e.msg);
			struct msb_err e2 = {0};
			if (sandbox_base_discard(dir, &e2) < 0)
				msb_warn("%s", e2.msg);
			continue;
		}
		msb_warn("restoring the base snapshot failed, so this sandbox boots cold (slow): "
			 "%s",
			 e.msg);
		return 1;
	}
	return 1;
}

int sandbox_start(const struct sandbox_spec *spec, struct sandbox **out, struct msb_err *err)
{
	if (sandbox_check_kvm(err) < 0)
		return -1;
	enum msb_scope scope = spec->net ? spec->net->scope : MSB_SCOPE_PUBLIC;
	bool filtered = (scope == MSB_SCOPE_PUBLIC || scope == MSB_SCOPE_GROUP) &&
			(!spec->snapshot_dir || spec->snapshot_net);
	if (filtered && scope_check_privileges(msb_scope_name(scope), err) < 0)
		return -1;
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	if (!(sb->name = strdup(spec->name ? spec->name : "sandbox"))) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto fail;
	}
	if (sandbox_find_parts(NULL, &sb->parts, err) < 0 || get_image(spec, &sb->img, err) < 0)
		goto fail;
	if (!(sb->run_dir = sandbox_make_run_dir(err)))
		goto fail;
	sb->vsock_path = sandbox_path_join(sb->run_dir, "vsock");
	sb->control_path = sandbox_path_join(sb->run_dir, "control");
	if (spec->console_fd < 0)
		sb->console_path = spec->console_path
					   ? strdup(spec->console_path)
					   : sandbox_path_join(sb->run_dir, "console.log");
	if (!sb->vsock_path || !sb->control_path || (spec->console_fd < 0 && !sb->console_path)) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto fail;
	}
	int tmo = boot_timeout_ms(spec);
	if (spec->snapshot_dir) {
		/* A user snapshot is what was asked for: no cold boot instead. */
		struct sandbox_restore r = {.dir = spec->snapshot_dir,
					    .user = true,
					    .disks =
						    spec->snapshot_disks ? spec->snapshot_disks : 1,
					    .net = spec->snapshot_net,
					    .fs_slots = spec->snapshot_fs_slots,
					    .rw_disk = spec->rw_disk,
					    .timeout_ms = restore_timeout_ms(tmo)};
		bool refused = false;
		if (sandbox_restore_start(sb, spec, &r, &refused, err) < 0)
			goto fail;
	} else {
		int r = snapshots_off(spec) ? 1 : try_base(sb, spec, tmo, err);
		if (r < 0 || (r == 1 && cold_start(sb, spec, tmo, err) < 0))
			goto fail;
	}
	if (write_run_meta(sb, spec, err) < 0)
		goto fail;
	*out = sb;
	return 0;
fail:
	msb_err_wrap(err, "starting sandbox '%s'", spec->name ? spec->name : "sandbox");
	sandbox_free(sb);
	return -1;
}

int sandbox_exec(struct sandbox *sb, const struct agent_exec_opts *o, struct agent_exec_status *st,
		 struct msb_err *err)
{
	if (!sb->agent)
		return msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' is not running", sb->name);
	return agent_exec(sb->agent, o, st, err);
}

int sandbox_ensure_dir(struct sandbox *sb, const char *path, struct msb_err *err)
{
	if (!path || !*path || strcmp(path, "/") == 0)
		return 0;
	/* The agent's own mkdir -p: no process to start in the guest (a fork and
	 * exec there cost ~1 s of emulated kernel work on PVM) and no mkdir needed
	 * in the image. */
	if (!sb->agent)
		return msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' is not running", sb->name);
	if (agent_file_mkdir(sb->agent, path, -1, true, err) < 0)
		return msb_err_wrap(err, "creating %s in the sandbox", path);
	return 0;
}

int sandbox_write_file(struct sandbox *sb, const char *path, const void *data, size_t len,
		       unsigned mode, struct msb_err *err)
{
	_cleanup_close_ int fd = memfd_create("msb-file", MFD_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "memfd_create");
	const char *p = data;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return msb_err_sys(err, "buffering %s", path);
		off += (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) < 0)
		return msb_err_sys(err, "lseek");
	char mode_s[16];
	snprintf(mode_s, sizeof(mode_s), "%o", mode & 07777);
	const char *argv[] = {"/bin/sh",
			      "-c",
			      "d=\"${1%/*}\"; [ -z \"$d\" ] || mkdir -p \"$d\" && cat > \"$1\" && "
			      "chmod \"$2\" \"$1\"",
			      "sh",
			      path,
			      mode_s,
			      NULL};
	struct agent_exec_opts o = {.argv = argv, .stdin_fd = fd, .stdout_fd = -1, .stderr_fd = 2};
	struct agent_exec_status st;
	if (sandbox_exec(sb, &o, &st, err) < 0)
		return msb_err_wrap(err, "writing %s in the sandbox", path);
	if (agent_exec_status_code(&st) != 0)
		return msb_err_set(err, MSB_EK_GUEST, 0,
				   "writing %s in the sandbox: /bin/sh exit %d", path,
				   agent_exec_status_code(&st));
	return 0;
}

int sandbox_stop(struct sandbox *sb, enum sandbox_stop_mode mode, int timeout_ms,
		 struct msb_err *err)
{
	if (timeout_ms <= 0)
		timeout_ms = 120000;
	if (mode == SANDBOX_STOP_ORDERED && sb->vmm_pid > 0) {
		struct msb_err ignored = {0};
		if (sb->agent && agent_client_shutdown(sb->agent, timeout_ms, &ignored) < 0)
			msb_debug("sandbox %s: shutdown request: %s", sb->name, ignored.msg);
		if (!sandbox_reap(sb, timeout_ms)) {
			msb_warn("sandbox %s: the guest did not power off within %d s; "
				 "sending SIGTERM to msb-vmm",
				 sb->name, timeout_ms / 1000);
			kill(sb->vmm_pid, SIGTERM);
			if (!sandbox_reap(sb, timeout_ms))
				msb_warn("sandbox %s: msb-vmm did not end; killing it", sb->name);
		}
	}
	if (sb->agent) {
		agent_client_free(sb->agent);
		sb->agent = NULL;
	}
	if (sb->vmm_pid > 0) {
		kill(sb->vmm_pid, SIGKILL);
		sandbox_reap(sb, -1);
		if (mode == SANDBOX_STOP_ORDERED)
			return msb_err_set(err, MSB_EK_TIMEOUT, 0,
					   "sandbox '%s' did not stop in order and was killed",
					   sb->name);
	}
	return 0;
}

void sandbox_kill_from_signal(const struct sandbox *sb)
{
	if (sb && sb->vmm_pid > 0)
		kill(sb->vmm_pid, SIGKILL);
}

void sandbox_free(struct sandbox *sb)
{
	if (!sb)
		return;
	if (sb->agent)
		agent_client_free(sb->agent);
	if (sb->vmm_pid > 0) {
		kill(sb->vmm_pid, SIGKILL);
		sandbox_reap(sb, -1);
	}
	sandbox_net_stop(sb);
	if (sb->run_dir) {
		struct msb_err ignored = {0};
		if (msb_remove_tree(sb->run_dir, &ignored) < 0)
			msb_warn("removing %s: %s", sb->run_dir, ignored.msg);
	}
	if (sb->img)
		oci_image_free(sb->img);
	sandbox_parts_clear(&sb->parts);
	free(sb->name);
	free(sb->run_dir);
	free(sb->vsock_path);
	free(sb->console_path);
	free(sb->control_path);
	free(sb->rw_disk);
	free(sb);
}
