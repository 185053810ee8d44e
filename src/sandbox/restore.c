/* Starting sandboxes from snapshots: the base snapshot (built by a cold boot the
 * first time a VM shape is needed, under a file lock) and restores of it or of
 * a user snapshot, followed by the agent's SETUP (root, clock, entropy,
 * identity). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/paths.h"
#include "project/menv.h"
#include "sandbox/net.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/snapshot.h"
#include "sandbox/vm_int.h"
#include "sandbox/volumes.h"

#define CONTROL_TIMEOUT_MS (600 * 1000) /* a snapshot writes all of guest memory */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static bool is_file(const char *dir, const char *name)
{
	_cleanup_free_ char *p = sandbox_path_join(dir, name);
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool snapshot_complete(const char *dir)
{
	return is_file(dir, "state") && is_file(dir, "memory");
}

/* ---- restore ------------------------------------------------------------------ */

/* A vsock CID of its own (3 and up; 0-2 are reserved). */
static unsigned random_cid(void)
{
	uint32_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	return 3 + (v % (1u << 30));
}

/* The guest's agent, retried while msb-vmm runs.  A base snapshot hands the
 * first connection its parked one (docs/snapshot.md); a user snapshot's first
 * connection is a new one, which a guest answers once it runs again. */
static int connect_agent(struct sandbox *sb, int timeout_ms, bool *refused, struct msb_err *err)
{
	uint64_t deadline = sandbox_now_ms() + (uint64_t)timeout_ms;
	struct msb_err last = {0};
	for (;;) {
		if (sandbox_reap(sb, 0)) {
			*refused = sandbox_vmm_exit_code(sb) == 3;
			return sandbox_vmm_died(sb, err);
		}
		uint64_t now = sandbox_now_ms();
		if (now >= deadline)
			return msb_err_set(
				err, MSB_EK_TIMEOUT, 0,
				"the restored guest's agent did not answer within %d s "
				"(raise MSB_RESTORE_TIMEOUT if this machine is slow)%s%s",
				timeout_ms / 1000, last.msg[0] ? "; last try: " : "", last.msg);
		int step = deadline - now < 5000 ? (int)(deadline - now) : 5000;
		msb_err_clear(&last);
		if ((sb->agent = agent_client_open(sb->vsock_path, step < 200 ? 200 : step, &last)))
			return 0;
		sleep_ms(20);
	}
}

static void machine_id(char out[33])
{
	uint8_t b[16];
	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (uint8_t)(rand() ^ (int)i);
	for (size_t i = 0; i < sizeof(b); i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void guest_hostname(const char *name, char out[64])
{
	size_t n = 0;
	for (const char *c = name; *c && n < 63; c++) {
		char ch = *c;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || (n > 0 && (ch == '.' || ch == '-'));
		out[n++] = ok ? ch : 'x';
	}
	out[n] = '\0';
	if (n == 0)
		snprintf(out, 64, "sandbox");
}

/* After a restore the guest's clock stood still, its RNG state is the
 * snapshot's and its identity the base VM's: all of it is set again here.  A
 * base restore also mounts the root (the image on slot 1, the layer on 2); a
 * warm snapshot has it mounted already; the build of a warm snapshot mounts
 * it and reads the programs, and sets nothing a copy must have of its own. */
static int setup_guest(struct sandbox *sb, const struct sandbox_restore *r, bool rw,
		       const struct sandbox_spec *spec, struct msb_err *err)
{
	const struct sandbox_volumes *vols = r->warm_build ? NULL : spec->volumes;
	struct msb_strv mounts = {0};
	if (sandbox_volumes_mounts(vols, &mounts, err) < 0) {
		msb_strv_clear(&mounts);
		return -1;
	}
	uint8_t entropy[64];
	if (getrandom(entropy, sizeof(entropy), 0) != sizeof(entropy))
		return msb_err_sys(err, "getrandom");
	char mid[33], host[64];
	machine_id(mid);
	guest_hostname(sb->name, host);
	struct agent_setup_opts o = {
		.hostname = host,
		.clock_now = true, /* taken when the request leaves, not before */
		.entropy = entropy,
		.entropy_len = sizeof(entropy),
	};
	if (!r->user && !r->warm) {
		o.root_dev = "/dev/vda";
		o.root_fstype = sb->img->rootfs_format;
		o.overlay = rw ? "/dev/vdb" : "tmpfs";
	}
	if (!r->user)
		o.machine_id = mid;
	if (r->warm_build) {
		/* Every copy gets its own of these: none in the snapshot. */
		o.hostname = NULL;
		o.entropy = NULL;
		o.entropy_len = 0;
		o.machine_id = NULL;
		o.warm = spec->warm_programs;
		o.nwarm = spec->nwarm_programs;
		o.warm_path = spec->warm_path;
	}
	/* passt is behind the NIC: eth0, the route and DNS (again after a user
	 * snapshot: it may come from a sandbox without network).  A warm snapshot
	 * has them already: every passt gives the guest the same address, so
	 * they are set up once, when it is built (only sandboxes with a network
	 * use one: sandbox_warm_wanted()). */
	if (r->warm_build)
		o.net = SANDBOX_NET_SETUP;
	else if (sb->passt_pid > 0 && !r->warm)
		o.net = SANDBOX_NET_SETUP;
	o.mounts = (const char *const *)mounts.v;
	o.nmounts = mounts.n;
	int rc = agent_setup(sb->agent, &o, err);
	explicit_bzero(entropy, sizeof(entropy));
	msb_strv_clear(&mounts);
	if (rc < 0)
		return msb_err_wrap(err,
				    r->user || r->warm
					    ? "resynchronising the restored guest"
					    : "setting up the restored guest (mounting its root)");
	sb->nvolumes = vols ? vols->n : 0;
	return 0;
}

static const char *restore_kind(const struct sandbox_restore *r)
{
	return r->user ? "user" : r->warm ? "warm" : "base";
}

int sandbox_restore_start(struct sandbox *sb, const struct sandbox_spec *spec,
			  const struct sandbox_restore *r, bool *refused, struct msb_err *err)
{
	*refused = false;
	struct msb_strv argv = {0};
	if (r->user && spec->snapshot_rootfs &&
	    strcmp(spec->snapshot_rootfs, sb->img->rootfs_path) != 0)
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "the image %s changed since the snapshot was taken (its root "
				   "filesystem was %s, now %s): the snapshot's memory would not "
				   "match it",
				   sb->img->reference, spec->snapshot_rootfs, sb->img->rootfs_path);
	free(sb->rw_disk);
	sb->rw_disk = NULL;
	const char *rw = r->rw_disk;
	if (r->user && spec->snapshot_rw && !rw) {
		/* Each restore writes to its own copy of the snapshot's layer. */
		_cleanup_free_ char *src = sandbox_path_join(r->dir, "rw.ext4");
		_cleanup_free_ char *dst = sandbox_path_join(sb->run_dir, "rw.ext4");
		const char *how = "";
		if (!src || !dst)
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		unlink(dst);
		if (sandbox_copy_file(src, dst, &how, err) < 0)
			return msb_err_wrap(err, "copying the snapshot's writable layer");
		msb_info("sandbox %s: writable layer from the snapshot (%s)", sb->name, how);
		sb->rw_disk = steal_pointer(&dst);
	} else if (rw && !(sb->rw_disk = strdup(rw))) {
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	if (r->disks < 2 && sb->rw_disk)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "this snapshot's VM has no slot for a writable disk");
	struct sandbox_vmm_args va = {
		.parts = &sb->parts,
		.restore = r->dir,
		.rootfs_path = sb->img->rootfs_path,
		.rw_disk = sb->rw_disk,
		.disks = r->disks,
		.fs_slots = r->fs_slots,
		.volumes = spec->volumes,
		.vsock_path = sb->vsock_path,
		.cid = random_cid(),
		.console = spec->console_fd >= 0 ? "-" : sb->console_path,
		.control = sb->control_path,
	};
	if (r->warm_build)
		va.net = "none"; /* as in the base: the copies get their passt */
	else if (sandbox_net_prepare(sb, spec, r->net, &va.net, err) < 0)
		return -1;
	if (sandbox_vmm_argv(&va, &argv, err) < 0)
		return -1;
	uint64_t t0 = sandbox_now_ms();
	int rc = sandbox_spawn_vmm(sb, &argv, spec->console_fd, err);
	msb_strv_clear(&argv);
	if (rc < 0)
		return -1;
	msb_info("sandbox %s: restoring %s snapshot %s, msb-vmm pid %d, run dir %s", sb->name,
		 restore_kind(r), r->dir, (int)sb->vmm_pid, sb->run_dir);
	if (spec->on_spawn)
		spec->on_spawn(spec->ctx, sb->vmm_pid);
	if (connect_agent(sb, r->timeout_ms, refused, err) < 0)
		return msb_err_wrap(err, "restoring snapshot %s", r->dir);
	uint64_t t1 = sandbox_now_ms();
	if (setup_guest(sb, r, sb->rw_disk != NULL, spec, err) < 0)
		return -1;
	sb->restored = true;
	sb->disks = r->disks;
	sb->fs_slots = r->fs_slots;
	sb->cpus = spec->cpus ? spec->cpus : 1;
	sb->memory_mib = spec->memory_mib ? spec->memory_mib : MSB_DEFAULT_MEMORY;
	sb->boot_ms = sandbox_now_ms() - t0;
	msb_info("sandbox %s: restored from the %s snapshot: agent after %llu ms, ready after %llu "
		 "ms",
		 sb->name, restore_kind(r), (unsigned long long)(t1 - t0),
		 (unsigned long long)sb->boot_ms);
	return 0;
}

/* ---- the base snapshot ------------------------------------------------------------ */

/* A connection to the agent port opened with "PARK 1024", for the base and for
 * user snapshots (usersnap.c). */
int sandbox_park_connection(const char *vsock, int timeout_ms, struct msb_err *err)
{
	return agent_vsock_park(vsock, AGENT_PORT_AGENT, timeout_ms, err);
}

/* The base VM's agent, HELLO exchanged, on a connection opened with
 * "PARK 1024" instead of "CONNECT 1024" when it can be: msb-vmm keeps a parked
 * connection across snapshots for the first client after a restore.  The
 * agent is first reached the usual way (retried while it does not listen
 * yet); a PARK refused after that means a VMM without it: no parking. */
static struct agent_client *park_agent(const char *vsock, int timeout_ms, struct msb_err *err)
{
	struct agent_client *plain = agent_client_open(vsock, timeout_ms, err);
	if (!plain)
		return NULL;
	struct msb_err perr = {0};
	int fd = sandbox_park_connection(vsock, timeout_ms, &perr);
	struct agent_client *parked = fd >= 0 ? agent_client_from_fd(fd, timeout_ms, &perr) : NULL;
	if (!parked) {
		msb_info("base snapshot: no parked agent connection (%s); restores will connect "
			 "anew",
			 perr.msg);
		return plain;
	}
	agent_client_free(plain);
	return parked;
}

/* sandbox_free() clears sb->parts: it gets copies. */
static int copy_parts(struct sandbox_parts *d, const struct sandbox_parts *p)
{
	d->vmm = strdup(p->vmm);
	d->kernel = strdup(p->kernel);
	d->initrd = strdup(p->initrd);
	d->base_cmdline = p->base_cmdline ? strdup(p->base_cmdline) : NULL;
	return d->vmm && d->kernel && d->initrd && (!p->base_cmdline || d->base_cmdline) ? 0 : -1;
}

/* Boot kernel + msb-init (no root), wait for its agent, snapshot into `tmp`. */
static int build_base(const struct sandbox_parts *parts, unsigned cpus, unsigned mem, int boot_tmo,
		      const char *tmp, struct msb_err *err)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	struct msb_strv argv = {0};
	_cleanup_free_ char *ready = NULL, *line = NULL;
	_cleanup_close_ int lfd = -1;
	int rc = -1;
	sb->name = strdup("base");
	if (!sb->name || copy_parts(&sb->parts, parts) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	if (!(sb->run_dir = sandbox_make_run_dir(err)))
		goto out;
	sb->vsock_path = sandbox_path_join(sb->run_dir, "vsock");
	sb->control_path = sandbox_path_join(sb->run_dir, "control");
	sb->console_path = sandbox_path_join(sb->run_dir, "console.log");
	if (!sb->vsock_path || !sb->control_path || !sb->console_path ||
	    asprintf(&ready, "%s_1023", sb->vsock_path) < 0) {
		ready = NULL;
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	if ((lfd = sandbox_listen_unix(ready, err)) < 0)
		goto out;
	struct sandbox_vmm_args va = {
		.parts = &sb->parts,
		.rootfs_path = NULL, /* both slots empty: the sandbox's disks come later */
		.disks = 2,
		.fs_slots = SANDBOX_FS_SLOTS, /* empty: volumes come later */
		.guest_cmdline = "msb.hostname=base",
		.vsock_path = sb->vsock_path,
		.console = sb->console_path,
		.control = sb->control_path,
		.cpus = cpus,
		.memory_mib = mem,
		.net = "none", /* a sandbox's passt is attached after the restore */
	};
	if (sandbox_vmm_argv(&va, &argv, err) < 0)
		goto out;
	if (sandbox_spawn_vmm(sb, &argv, -1, err) < 0)
		goto out;
	/* A Ctrl-C during the build kills this VM like any other. */
	sandbox_cli_watch_pid(NULL, sb->vmm_pid);
	msb_info("base snapshot: cold boot, msb-vmm pid %d, run dir %s", (int)sb->vmm_pid,
		 sb->run_dir);
	uint64_t t0 = sandbox_now_ms();
	if (sandbox_wait_ready(sb, lfd, boot_tmo, err) < 0)
		goto out;
	/* The agent answers HELLO: everything a sandbox needs runs.  That
	 * connection is parked: the snapshot keeps it, and the first client of
	 * each restored copy gets it (docs/snapshot.md), so a restore is ready
	 * after one request instead of a new guest connection.  (An unparked
	 * one would be a detached connection in every copy: harmless.) */
	if (!(sb->agent = park_agent(sb->vsock_path, 120000, err))) {
		msb_err_wrap(err, "connecting to the base VM's agent");
		goto out;
	}
	msb_info("base snapshot: agent ready after %llu ms; saving",
		 (unsigned long long)(sandbox_now_ms() - t0));
	if (asprintf(&line, "snapshot %s", tmp) < 0) {
		line = NULL;
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	if (sandbox_vmm_control(sb->control_path, line, NULL, 0, CONTROL_TIMEOUT_MS, err) < 0) {
		msb_err_wrap(err, "saving the base VM");
		goto out;
	}
	struct msb_err ignored = {0};
	if (sandbox_vmm_control(sb->control_path, "quit", NULL, 0, 30000, &ignored) < 0)
		msb_debug("base snapshot: quit: %s", ignored.msg);
	sandbox_reap(sb, 10000);
	rc = 0;
out:
	if (rc < 0 && sb->vmm_pid > 0 && sandbox_reap(sb, 0))
		sandbox_vmm_died(sb, err);
	sandbox_cli_watch_pid(NULL, 0);
	msb_strv_clear(&argv);
	if (ready)
		unlink(ready);
	sandbox_free(sb);
	return rc;
}

static int lock_path(const char *dir, char **out, struct msb_err *err)
{
	if (asprintf(out, "%s.lock", dir) < 0) {
		*out = NULL;
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	return 0;
}

/* The lock file may be unlinked by `msb snapshot prune` while we wait for it
 * (it deletes the lock of a base it removes, holding that lock): a lock on a
 * file no longer at `path` guards nothing, so take the one that is there. */
static bool lock_is_current(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* `waiting`: said on stderr when another msb holds the lock, or NULL. */
static int take_lock(const char *path, const char *waiting, struct msb_err *err)
{
	bool announce = waiting != NULL;
	for (;;) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return msb_err_sys(err, "opening %s", path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (announce)
				fprintf(stderr, "msb: %s\n", waiting);
			announce = false;
			while (flock(fd, LOCK_EX) < 0) {
				if (errno != EINTR || sandbox_cli_signalled()) {
					msb_err_sys(err, "locking %s", path);
					close(fd);
					return -1;
				}
			}
		}
		if (lock_is_current(fd, path))
			return fd;
		close(fd);
	}
}

/* A snapshot directory built once by whichever msb gets its lock first: into
 * DIR.tmp-PID, renamed to DIR when complete.  `build` fills the temporary
 * directory (state, memory, meta) and may announce itself on stderr. */
struct snapshot_build {
	const char *waiting; /* shown while another msb holds the lock */
	const char *what;    /* "building the base snapshot": wraps a failure */
	int (*build)(void *ctx, const char *tmp, struct msb_err *err);
	void *ctx;
};

/* 1: built now (*ms: how long it took), 0: it was there, -1: error. */
static int snapshot_build_locked(const char *d, const struct snapshot_build *b, uint64_t *ms,
				 struct msb_err *err)
{
	_cleanup_free_ char *lock = NULL;
	if (lock_path(d, &lock, err) < 0)
		return -1;
	if (snapshot_complete(d))
		return 0;
	_cleanup_close_ int lfd = take_lock(lock, b->waiting, err);
	if (lfd < 0)
		return -1;
	if (snapshot_complete(d)) /* another msb built it meanwhile */
		return 0;
	struct msb_err ignored = {0};
	if (access(d, F_OK) == 0 && msb_remove_tree(d, &ignored) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "removing the incomplete %s: %s", d,
				   ignored.msg);
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-%d", d, (int)getpid()) < 0) {
		tmp = NULL;
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	if (access(tmp, F_OK) == 0)
		msb_remove_tree(tmp, &ignored);
	if (mkdir(tmp, 0700) < 0)
		return msb_err_sys(err, "creating %s", tmp);
	uint64_t t0 = sandbox_now_ms();
	if (b->build(b->ctx, tmp, err) < 0 || !snapshot_complete(tmp)) {
		if (err->kind == MSB_EK_NONE)
			msb_err_set(err, MSB_EK_SYSTEM, 0, "msb-vmm wrote no state/memory in %s",
				    tmp);
		msb_remove_tree(tmp, &ignored);
		return msb_err_wrap(err, "%s", b->what);
	}
	if (rename(tmp, d) < 0) {
		msb_err_sys(err, "renaming %s", tmp);
		msb_remove_tree(tmp, &ignored);
		return -1;
	}
	*ms = sandbox_now_ms() - t0;
	return 1;
}

struct base_build {
	const struct sandbox_parts *p;
	unsigned cpus, memory_mib;
	int boot_timeout_ms;
	const char *key;
};

static int base_build(void *ctx, const char *tmp, struct msb_err *err)
{
	const struct base_build *c = ctx;
	fprintf(stderr,
		"msb: building the base snapshot for %u vCPU / %u MiB (first run only: one cold "
		"boot, which takes minutes where guest kernel code is emulated)...\n",
		c->cpus, c->memory_mib);
	if (build_base(c->p, c->cpus, c->memory_mib, c->boot_timeout_ms, tmp, err) < 0 ||
	    !snapshot_complete(tmp))
		return -1;
	return sandbox_base_record(tmp, c->key, c->p, c->cpus, c->memory_mib, err);
}

int sandbox_base_ensure(const struct sandbox_parts *p, unsigned cpus, unsigned memory_mib,
			int boot_timeout_ms, char **dir, struct msb_err *err)
{
	*dir = NULL;
	char key[17];
	if (sandbox_base_key(p, cpus, memory_mib, key, err) < 0)
		return -1;
	_cleanup_free_ char *root = sandbox_base_root(err);
	if (!root || msb_mkdir_p(root, 0700, err) < 0)
		return -1;
	_cleanup_free_ char *d = sandbox_path_join(root, key);
	if (!d)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	struct base_build ctx = {p, cpus, memory_mib, boot_timeout_ms, key};
	const struct snapshot_build b = {
		.waiting = "another msb is building the base snapshot; waiting for it...",
		.what = "building the base snapshot",
		.build = base_build,
		.ctx = &ctx,
	};
	uint64_t ms = 0;
	int built = snapshot_build_locked(d, &b, &ms, err);
	if (built < 0)
		return -1;
	if (built) {
		fprintf(stderr, "msb: base snapshot ready (%llu s); later sandboxes restore it\n",
			(unsigned long long)(ms / 1000));
		sandbox_base_prune_after_build(p, key);
	}
	*dir = steal_pointer(&d);
	return 0;
}

int sandbox_base_discard(const char *dir, struct msb_err *err)
{
	_cleanup_free_ char *lock = NULL;
	if (lock_path(dir, &lock, err) < 0)
		return -1;
	_cleanup_close_ int lfd = take_lock(lock, NULL, err);
	if (lfd < 0)
		return -1;
	if (access(dir, F_OK) == 0 && msb_remove_tree(dir, err) < 0)
		return msb_err_wrap(err, "removing the base snapshot %s", dir);
	return 0;
}

/* ---- the warm snapshot ------------------------------------------------------------ */

bool sandbox_warm_wanted(const struct sandbox_spec *spec)
{
	const char *e = getenv("MSB_NO_WARM_SNAPSHOT");
	/* Its eth0 is configured: a sandbox without network restores the base. */
	bool net = !spec->net || spec->net->scope != MSB_SCOPE_NONE;
	return spec->warm && net && !spec->rw_disk && !spec->snapshot_dir &&
	       !(e && *e && strcmp(e, "0") != 0);
}

/* Pause the VM of `sb` with a parked agent connection and write it into `tmp`,
 * then end it. */
static int save_vm(struct sandbox *sb, const char *tmp, const char *what, struct msb_err *err)
{
	_cleanup_free_ char *line = NULL;
	struct agent_client *parked = park_agent(sb->vsock_path, 120000, err);
	if (!parked)
		return msb_err_wrap(err, "connecting to the %s VM's agent", what);
	int rc = -1;
	if (asprintf(&line, "snapshot %s", tmp) < 0) {
		line = NULL;
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	} else if (sandbox_vmm_control(sb->control_path, line, NULL, 0, CONTROL_TIMEOUT_MS, err) <
		   0) {
		msb_err_wrap(err, "saving the %s VM", what);
	} else {
		rc = 0;
	}
	struct msb_err ignored = {0};
	if (sandbox_vmm_control(sb->control_path, "quit", NULL, 0, 30000, &ignored) < 0)
		msb_debug("%s snapshot: quit: %s", what, ignored.msg);
	sandbox_reap(sb, 10000);
	agent_client_free(parked);
	return rc;
}

/* Restore the base `base_dir`, mount the image's root (tmpfs layer), read the
 * programs into the page cache, and snapshot into `tmp`.  Nothing of a
 * sandbox runs in it. */
static int build_warm(struct sandbox *user_sb, const struct sandbox_spec *spec,
		      const char *base_dir, int restore_tmo, const char *tmp, struct msb_err *err)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	int rc = -1;
	sb->img = user_sb->img; /* borrowed: given back before sandbox_free() */
	if (!(sb->name = strdup("warm")) || copy_parts(&sb->parts, &user_sb->parts) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	if (!(sb->run_dir = sandbox_make_run_dir(err)))
		goto out;
	sb->vsock_path = sandbox_path_join(sb->run_dir, "vsock");
	sb->control_path = sandbox_path_join(sb->run_dir, "control");
	sb->console_path = sandbox_path_join(sb->run_dir, "console.log");
	if (!sb->vsock_path || !sb->control_path || !sb->console_path) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	struct sandbox_spec ws = {
		.name = "warm",
		.console_fd = -1,
		.warm_programs = spec->warm_programs,
		.nwarm_programs = spec->nwarm_programs > AGENT_WARM_MAX ? AGENT_WARM_MAX
									: spec->nwarm_programs,
		.warm_path = spec->warm_path,
		.on_spawn = sandbox_cli_watch_pid, /* a Ctrl-C kills this VM like any other */
	};
	struct sandbox_restore r = {.dir = base_dir,
				    .warm_build = true,
				    .disks = 2,
				    .net = true,
				    .fs_slots = SANDBOX_FS_SLOTS,
				    .timeout_ms = restore_tmo};
	bool refused = false;
	uint64_t t0 = sandbox_now_ms();
	if (sandbox_restore_start(sb, &ws, &r, &refused, err) < 0)
		goto out;
	msb_info("warm snapshot: root mounted and programs read after %llu ms; saving",
		 (unsigned long long)(sandbox_now_ms() - t0));
	rc = save_vm(sb, tmp, "warm", err);
out:
	if (rc < 0 && sb->vmm_pid > 0 && sandbox_reap(sb, 0))
		sandbox_vmm_died(sb, err);
	sandbox_cli_watch_pid(NULL, 0);
	sb->img = NULL;
	sandbox_free(sb);
	return rc;
}

static int warm_record(const char *dir, const char *key, const char *base_dir,
		       const struct oci_image *img, const struct sandbox_spec *spec,
		       struct msb_err *err)
{
	char created[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	struct sandbox_snapmeta m = {
		.name = (char *)key,
		.source = (char *)base_dir,
		.image = img->reference,
		.digest = img->manifest_digest,
		.rootfs = img->rootfs_path,
		.rootfs_format = img->rootfs_format,
		.created = created,
		.cpus = spec->cpus ? spec->cpus : 1,
		.memory_mib = spec->memory_mib ? spec->memory_mib : MSB_DEFAULT_MEMORY,
		.disks = 2,
		.net = true,
		.fs_slots = SANDBOX_FS_SLOTS,
	};
	_cleanup_free_ char *path = sandbox_path_join(dir, "meta");
	if (!path)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	return sandbox_snapmeta_write(path, &m, err);
}

struct warm_build {
	struct sandbox *sb;
	const struct sandbox_spec *spec;
	const char *base_dir;
	int restore_tmo;
	const char *key;
};

static int warm_build(void *ctx, const char *tmp, struct msb_err *err)
{
	const struct warm_build *c = ctx;
	fprintf(stderr, "msb: preparing a warm snapshot of %s (first run of this image)...\n",
		c->sb->img->reference);
	if (build_warm(c->sb, c->spec, c->base_dir, c->restore_tmo, tmp, err) < 0 ||
	    !snapshot_complete(tmp))
		return -1;
	return warm_record(tmp, c->key, c->base_dir, c->sb->img, c->spec, err);
}

/* The warm snapshot of sb's image over `base_dir`, built when missing. */
static int warm_ensure(struct sandbox *sb, const struct sandbox_spec *spec, const char *base_dir,
		       int restore_tmo, char **dir, struct msb_err *err)
{
	*dir = NULL;
	const char *slash = strrchr(base_dir, '/');
	const char *base_key = slash ? slash + 1 : base_dir;
	char key[17];
	if (sandbox_warm_key(base_key, sb->img->manifest_digest, sb->img->rootfs_path, key, err) <
	    0)
		return -1;
	_cleanup_free_ char *root = sandbox_warm_root(err);
	if (!root || msb_mkdir_p(root, 0700, err) < 0)
		return -1;
	_cleanup_free_ char *d = sandbox_path_join(root, key);
	if (!d)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	struct warm_build ctx = {sb, spec, base_dir, restore_tmo, key};
	const struct snapshot_build b = {
		.waiting = "another msb is preparing the warm snapshot of this image; waiting for "
			   "it...",
		.what = "preparing the warm snapshot",
		.build = warm_build,
		.ctx = &ctx,
	};
	uint64_t ms = 0;
	int built = snapshot_build_locked(d, &b, &ms, err);
	if (built < 0)
		return -1;
	if (built)
		fprintf(stderr, "msb: warm snapshot ready (%.1f s); later runs of %s restore it\n",
			(double)ms / 1000.0, sb->img->reference);
	*dir = steal_pointer(&d);
	return 0;
}

int sandbox_warm_start(struct sandbox *sb, const struct sandbox_spec *spec, const char *base_dir,
		       int restore_tmo, struct msb_err *err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct msb_err e = {0};
		_cleanup_free_ char *dir = NULL;
		if (warm_ensure(sb, spec, base_dir, restore_tmo, &dir, &e) < 0) {
			if (sandbox_cli_signalled())
				return msb_err_set(err, MSB_EK_STATE, 0, "interrupted");
			msb_warn("the warm snapshot of %s could not be made, so this sandbox "
				 "starts from the base snapshot: %s",
				 sb->img->reference, e.msg);
			return 1;
		}
		struct sandbox_restore r = {.dir = dir,
					    .warm = true,
					    .disks = 2,
					    .net = true,
					    .fs_slots = SANDBOX_FS_SLOTS,
					    .timeout_ms = restore_tmo};
		bool refused = false;
		if (sandbox_restore_start(sb, spec, &r, &refused, &e) == 0)
			return 0;
		sandbox_vm_discard(sb);
		if (sandbox_cli_signalled())
			return msb_err_set(err, MSB_EK_STATE, 0, "interrupted");
		if (refused && attempt == 0) {
			msb_warn("msb-vmm refused the warm snapshot of %s (%s); rebuilding it",
				 sb->img->reference, e.msg);
			struct msb_err e2 = {0};
			if (sandbox_base_discard(dir, &e2) < 0)
				msb_warn("%s", e2.msg);
			continue;
		}
		msb_warn("restoring the warm snapshot of %s failed, so this sandbox starts from "
			 "the base snapshot: %s",
			 sb->img->reference, e.msg);
		return 1;
	}
	return 1;
}
