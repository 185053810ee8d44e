/* User snapshots of running sandboxes: msb-vmm saves memory and device state
 * (paused), msb copies the writable layer meanwhile, then the sandbox resumes.
 * Stored in $MICROSANDBOX_HOME/snapshots/user/<NAME>/. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/paths.h"
#include "project/menv.h"
#include "sandbox/snapshot.h"
#include "sandbox/usersnap.h"
#include "sandbox/vm_int.h"

#define SNAPSHOT_TIMEOUT_MS (600 * 1000)
#define PARK_TIMEOUT_MS	    (60 * 1000)

int sandbox_vmm_control_path(pid_t pid, char **out, struct msb_err *err)
{
	*out = NULL;
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)pid);
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_set(err, MSB_EK_STATE, errno,
				   "no process %d (is the sandbox running?)", (int)pid);
	char buf[16384];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	buf[len] = '\0';
	/* argv: NUL-separated.  argv[0] must be msb-vmm's. */
	const char *a0 = buf;
	const char *slash = strrchr(a0, '/');
	if (len == 0 || strcmp(slash ? slash + 1 : a0, "msb-vmm") != 0)
		return msb_err_set(err, MSB_EK_STATE, 0, "process %d is not msb-vmm", (int)pid);
	for (size_t off = 0; off < len;) {
		const char *arg = buf + off;
		size_t al = strlen(arg);
		off += al + 1;
		if (strcmp(arg, "--control") == 0 && off < len) {
			if (!(*out = strdup(buf + off)))
				return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
			return 0;
		}
	}
	return msb_err_set(err, MSB_EK_STATE, 0,
			   "msb-vmm %d has no control socket (started by an older msb or with "
			   "MSB_NO_SNAPSHOT); restart the sandbox to snapshot it",
			   (int)pid);
}

static void rfc3339_now(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The agent connection the snapshot keeps for the first client of each copy,
 * as the base snapshot does (docs/snapshot.md): opened with PARK, HELLO
 * exchanged, held open while msb-vmm saves.  NULL when that cannot be done:
 * the copies then open their first connection anew (slower, not wrong). */
static struct agent_client *park_for_copies(const char *run_dir)
{
	_cleanup_free_ char *vsock = sandbox_path_join(run_dir, "vsock");
	struct msb_err e = {0};
	if (!vsock) {
		msb_info("snapshot: no parked agent connection (out of memory)");
		return NULL;
	}
	int fd = sandbox_park_connection(vsock, PARK_TIMEOUT_MS, &e);
	struct agent_client *c = fd >= 0 ? agent_client_from_fd(fd, PARK_TIMEOUT_MS, &e) : NULL;
	if (!c)
		msb_info("snapshot: no parked agent connection (%s); each copy's first request "
			 "connects anew",
			 e.msg);
	return c;
}

int sandbox_snapshot_create(const char *name, pid_t vmm_pid, const char *source,
			    struct sandbox_snapshot_info *info, struct msb_err *err)
{
	memset(info, 0, sizeof(*info));
	if (sandbox_snapshot_name_check(name, err) < 0)
		return -1;
	_cleanup_free_ char *root = sandbox_user_root(err);
	if (!root || msb_mkdir_p(root, 0700, err) < 0)
		return -1;
	_cleanup_free_ char *dir = sandbox_path_join(root, name);
	_cleanup_free_ char *tmp = NULL;
	if (!dir || asprintf(&tmp, "%s/.%s.tmp-%d", root, name, (int)getpid()) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	if (access(dir, F_OK) == 0)
		return msb_err_set(err, MSB_EK_EXISTS, 0,
				   "snapshot '%s' exists; remove it first (msb snapshot rm %s)",
				   name, name);
	_cleanup_free_ char *ctl = NULL;
	if (sandbox_vmm_control_path(vmm_pid, &ctl, err) < 0)
		return -1;
	char rd[PATH_MAX];
	snprintf(rd, sizeof(rd), "%s", ctl);
	const char *run_dir = dirname(rd);
	_cleanup_free_ char *run_meta = sandbox_path_join(run_dir, "sandbox.meta");
	struct sandbox_snapmeta run = {0};
	if (!run_meta)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	if (sandbox_snapmeta_read(run_meta, &run, err) < 0) {
		if (err->kind == MSB_EK_NOT_FOUND) /* written once the guest is ready */
			return msb_err_set(err, MSB_EK_STATE, 0,
					   "the sandbox of msb-vmm %d is still starting; try again "
					   "once it runs",
					   (int)vmm_pid);
		return msb_err_wrap(err, "reading what the sandbox runs");
	}
	if (run.volumes) {
		sandbox_snapmeta_clear(&run);
		/* The guest holds files of host directories open through msb-vmm's
		 * descriptors: no snapshot can carry those. */
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "the sandbox has volumes (host directories) mounted, and a "
				   "snapshot cannot hold them; snapshot a sandbox started "
				   "without -v/volumes");
	}
	struct msb_err ignored = {0};
	if (access(tmp, F_OK) == 0)
		msb_remove_tree(tmp, &ignored);
	if (mkdir(tmp, 0700) < 0) {
		sandbox_snapmeta_clear(&run);
		return msb_err_sys(err, "creating %s", tmp);
	}
	struct agent_client *parked = park_for_copies(run_dir);
	info->parked = parked != NULL;
	uint64_t t0 = sandbox_now_ms();
	_cleanup_free_ char *line = NULL, *mp = NULL;
	int rc = -1;
	if (asprintf(&line, "snapshot %s", tmp) < 0) {
		line = NULL;
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	/* msb-vmm pauses the VM and leaves it paused: the writable layer is copied
	 * in the state the snapshot's memory expects. */
	if (sandbox_vmm_control(ctl, line, NULL, 0, SNAPSHOT_TIMEOUT_MS, err) < 0) {
		msb_err_wrap(err, "saving the sandbox's memory and devices");
		sandbox_vmm_control(ctl, "resume", NULL, 0, 30000, &ignored);
		goto out;
	}
	info->how = "none (tmpfs in guest memory)";
	int copied = 0;
	if (run.rw_disk) {
		_cleanup_free_ char *dst = sandbox_path_join(tmp, "rw.ext4");
		copied = dst ? sandbox_copy_file(run.rw_disk, dst, &info->how, err)
			     : msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		if (copied < 0)
			msb_err_wrap(err, "copying the writable layer");
	}
	struct msb_err rerr = {0};
	int resumed = sandbox_vmm_control(ctl, "resume", NULL, 0, 30000, &rerr);
	/* The snapshot holds the parked connection; the running sandbox's agent
	 * sees this one end. */
	agent_client_free(parked);
	parked = NULL;
	if (copied < 0)
		goto out;
	if (resumed < 0)
		msb_warn("resuming the sandbox after the snapshot: %s", rerr.msg);
	info->paused_ms = sandbox_now_ms() - t0;
	char created[32];
	rfc3339_now(created);
	struct sandbox_snapmeta m = {
		.name = (char *)name,
		.source = (char *)(source ? source : run.name),
		.image = run.image,
		.rootfs = run.rootfs,
		.rootfs_format = run.rootfs_format,
		.created = created,
		.cpus = run.cpus,
		.memory_mib = run.memory_mib,
		.disks = run.disks,
		.rw = run.rw_disk != NULL,
		.net = run.net,
		.fs_slots = run.fs_slots,
	};
	mp = sandbox_path_join(tmp, "meta");
	if (!mp || sandbox_snapmeta_write(mp, &m, err) < 0)
		goto out;
	if (rename(tmp, dir) < 0) {
		msb_err_set(err,
			    errno == EEXIST || errno == ENOTEMPTY ? MSB_EK_EXISTS : MSB_EK_SYSTEM,
			    errno, "renaming %s to %s", tmp, dir);
		goto out;
	}
	info->memory_mib = run.memory_mib;
	info->rw = run.rw_disk != NULL;
	if (info->parked)
		msb_info("snapshot '%s': an agent connection is parked in it for the first request "
			 "of each copy",
			 name);
	rc = 0;
out:
	agent_client_free(parked);
	if (rc < 0)
		msb_remove_tree(tmp, &ignored);
	sandbox_snapmeta_clear(&run);
	return rc < 0 ? msb_err_wrap(err, "snapshot '%s'", name) : 0;
}

int sandbox_snapshot_remove(const char *name, struct msb_err *err)
{
	_cleanup_free_ char *dir = NULL;
	if (sandbox_snapshot_name_check(name, err) < 0)
		return -1;
	_cleanup_free_ char *root = sandbox_user_root(err);
	if (!root || !(dir = sandbox_path_join(root, name)))
		return -1;
	if (access(dir, F_OK) != 0)
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "no snapshot '%s'; `msb snapshot ls` lists them", name);
	/* Running restores keep their memory: msb-vmm mapped the file, and the
	 * kernel keeps an unlinked file's pages while they are mapped. */
	return msb_remove_tree(dir, err);
}

int sandbox_snapshot_spec(const char *name, struct sandbox_spec *spec, char **dir,
			  struct sandbox_snapmeta *m, struct msb_err *err)
{
	if (sandbox_user_snapshot_open(name, dir, m, err) < 0)
		return -1;
	if (!m->image || !m->rootfs || !m->cpus || !m->memory_mib) {
		sandbox_snapmeta_clear(m);
		free(*dir);
		*dir = NULL;
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "snapshot '%s' lacks its image, cpus or memory in its metadata; "
				   "remove it (msb snapshot rm %s)",
				   name, name);
	}
	spec->image = m->image;
	spec->cpus = m->cpus;
	spec->memory_mib = m->memory_mib;
	spec->snapshot_dir = *dir;
	spec->snapshot_disks = m->disks;
	spec->snapshot_rw = m->rw;
	spec->snapshot_net = m->net;
	spec->snapshot_fs_slots = m->fs_slots;
	spec->snapshot_rootfs = m->rootfs;
	return 0;
}
