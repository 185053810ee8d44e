/* Pruning snapshots nobody can use any more: base snapshots built from a kernel,
 * initramfs or msb-vmm that changed since (their key can no longer come out of
 * sandbox_base_key()), leftovers of interrupted builds, and, when asked, user
 * snapshots that cannot be restored (unreadable, or their image's root
 * filesystem is gone).
 *
 * Safe against running sandboxes: msb-vmm maps a snapshot's memory MAP_PRIVATE
 * and the kernel keeps an unlinked file's pages while they are mapped.  A base
 * is removed only under its lock (taken without waiting: a base being built or
 * discarded right now is skipped), the lock file last. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "project/menv.h"
#include "sandbox/snapshot.h"
#include "sandbox/vm_int.h"

/* ---- a base snapshot's shape, from msb-vmm's state file (pure) ------------------ */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int sandbox_base_shape_parse(const void *buf, size_t len, unsigned *cpus, unsigned *memory_mib,
			     struct msb_err *err)
{
	/* 32-byte header, then the vm section first (msb-vmm writes it first and
	 * refuses any other order): type, index, length, ncpus, nregions, bytes. */
	const uint8_t *b = buf;
	if (len < SANDBOX_BASE_SHAPE_BYTES)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "the state file is truncated");
	if (memcmp(b, "MSBSNAP\0", 8) != 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "not an msb-vmm state file");
	if (le32(b + 32) != 1 || le32(b + 36) != 0 || le32(b + 40) < 16)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the state file starts without its vm "
				   "section");
	uint32_t n = le32(b + 44);
	uint64_t bytes = (uint64_t)le32(b + 52) | (uint64_t)le32(b + 56) << 32;
	if (n == 0 || n > 255)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "the state file says %u vCPUs", n);
	if (bytes == 0 || bytes % (1u << 20) != 0 || bytes >> 20 > (1u << 20))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the state file's memory size is not a whole number of MiB");
	*cpus = n;
	*memory_mib = (unsigned)(bytes >> 20);
	return 0;
}

static int read_shape(const char *dir, unsigned *cpus, unsigned *mib, struct msb_err *err)
{
	_cleanup_free_ char *p = sandbox_path_join(dir, "state");
	if (!p)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening %s", p);
	uint8_t buf[SANDBOX_BASE_SHAPE_BYTES];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return msb_err_sys(err, "reading %s", p);
	return sandbox_base_shape_parse(buf, (size_t)n, cpus, mib, err);
}

/* ---- the record a base snapshot carries -------------------------------------------- */

int sandbox_base_record(const char *dir, const char *key, const struct sandbox_parts *p,
			unsigned cpus, unsigned memory_mib, struct msb_err *err)
{
	char created[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	struct sandbox_snapmeta m = {
		.name = (char *)key,
		.created = created,
		.kernel = p->kernel,
		.initrd = p->initrd,
		.vmm = p->vmm,
		.cmdline = p->base_cmdline,
		.cpus = cpus,
		.memory_mib = memory_mib,
		.disks = 2,
	};
	_cleanup_free_ char *path = sandbox_path_join(dir, "meta");
	if (!path)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	return sandbox_snapmeta_write(path, &m, err);
}

/* ---- verdicts ----------------------------------------------------------------------- */

static bool is_file(const char *dir, const char *name)
{
	_cleanup_free_ char *p = sandbox_path_join(dir, name);
	struct stat st;
	return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool same_str(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Whether base `key` (its directory `dir`) is stale; why in `why`.  -1: cannot
 * tell (kept). */
static int base_stale(const char *dir, const char *key, const struct sandbox_parts *cur, char *why,
		      size_t whylen)
{
	if (!is_file(dir, "state") || !is_file(dir, "memory")) {
		snprintf(why, whylen, "incomplete: no state or memory file");
		return 1;
	}
	_cleanup_free_ char *mp = sandbox_path_join(dir, "meta");
	struct sandbox_snapmeta m = {0};
	struct msb_err e = {0};
	char k[17];
	int r = 0;
	if (!mp)
		return -1;
	if (sandbox_snapmeta_read(mp, &m, &e) == 0) {
		struct sandbox_parts rec = {.kernel = m.kernel,
					    .initrd = m.initrd,
					    .vmm = m.vmm,
					    .base_cmdline = m.cmdline};
		if (!m.kernel || !m.initrd || !m.vmm || !m.cpus || !m.memory_mib) {
			snprintf(why, whylen, "its record (meta) lacks what it was built from");
			r = 1;
		} else if (sandbox_base_key(&rec, m.cpus, m.memory_mib, k, &e) < 0) {
			snprintf(why, whylen, "what it was built from is gone (%s)", e.msg);
			r = 1;
		} else if (strcmp(k, key) != 0) {
			snprintf(why, whylen,
				 "its kernel, initramfs or msb-vmm changed since it was built");
			r = 1;
		} else if (cur && same_str(cur->kernel, m.kernel) &&
			   same_str(cur->initrd, m.initrd) && same_str(cur->vmm, m.vmm) &&
			   sandbox_base_key(cur, m.cpus, m.memory_mib, k, &e) == 0 &&
			   strcmp(k, key) != 0) {
			snprintf(why, whylen, "the kernel command line changed since it was built");
			r = 1;
		}
		sandbox_snapmeta_clear(&m);
		return r;
	}
	if (e.kind != MSB_EK_NOT_FOUND) {
		snprintf(why, whylen, "its record is unreadable (%s)", e.msg);
		return 1;
	}
	/* Made before bases carried a record: judged against the current parts. */
	if (!cur)
		return -1;
	unsigned cpus = 0, mib = 0;
	msb_err_clear(&e);
	if (read_shape(dir, &cpus, &mib, &e) < 0) {
		snprintf(why, whylen, "its state file is unreadable (%s)", e.msg);
		return 1;
	}
	if (sandbox_base_key(cur, cpus, mib, k, &e) < 0)
		return -1;
	if (strcmp(k, key) != 0) {
		snprintf(why, whylen,
			 "not built from the current kernel, initramfs and msb-vmm (an older msb "
			 "made it)");
		return 1;
	}
	return 0;
}

/* Whether user snapshot `name` can no longer be restored. */
static bool user_stale(const char *name, char *why, size_t whylen)
{
	_cleanup_free_ char *dir = NULL;
	struct sandbox_snapmeta m = {0};
	struct msb_err e = {0};
	if (sandbox_user_snapshot_open(name, &dir, &m, &e) < 0) {
		snprintf(why, whylen, "unreadable: %s", e.msg);
		return true;
	}
	bool stale = true;
	struct stat st;
	if (!is_file(dir, "state") || !is_file(dir, "memory"))
		snprintf(why, whylen, "incomplete: no state or memory file");
	else if (!m.image || !m.rootfs)
		snprintf(why, whylen, "its metadata names no image");
	else if (stat(m.rootfs, &st) < 0)
		snprintf(why, whylen, "the root filesystem of %s it ran on is gone", m.image);
	else
		stale = false;
	sandbox_snapmeta_clear(&m);
	return stale;
}

/* Whether warm snapshot `key` (in `dir`) can no longer be used: its base or
 * its image's root filesystem is gone or changed. */
static bool warm_stale(const char *dir, const char *key, char *why, size_t whylen)
{
	if (!is_file(dir, "state") || !is_file(dir, "memory")) {
		snprintf(why, whylen, "incomplete: no state or memory file");
		return true;
	}
	_cleanup_free_ char *mp = sandbox_path_join(dir, "meta");
	struct sandbox_snapmeta m = {0};
	struct msb_err e = {0};
	if (!mp)
		return false;
	if (sandbox_snapmeta_read(mp, &m, &e) < 0) {
		snprintf(why, whylen, "its record is unreadable (%s)", e.msg);
		return true;
	}
	bool stale = true;
	char k[17];
	const char *slash = m.source ? strrchr(m.source, '/') : NULL;
	if (!m.source || !m.rootfs || !m.digest || !slash)
		snprintf(why, whylen, "its record (meta) lacks its base or image");
	else if (!is_file(m.source, "state") || !is_file(m.source, "memory"))
		snprintf(why, whylen, "its base snapshot is gone");
	else if (sandbox_warm_key(slash + 1, m.digest, m.rootfs, k, &e) < 0)
		snprintf(why, whylen, "the root filesystem of %s is gone",
			 m.image ? m.image : "its image");
	else if (strcmp(k, key) != 0)
		snprintf(why, whylen, "the root filesystem of %s changed",
			 m.image ? m.image : "its image");
	else
		stale = false;
	sandbox_snapmeta_clear(&m);
	return stale;
}

/* ---- removal ------------------------------------------------------------------------- */

static bool pid_alive(long pid)
{
	return pid > 0 && pid <= 1 << 30 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* "<anything>.tmp-<pid>": the pid, else 0. */
static long tmp_pid(const char *name)
{
	const char *t = strstr(name, ".tmp-");
	if (!t)
		return 0;
	char *end = NULL;
	long pid = strtol(t + 5, &end, 10);
	return *end ? 0 : pid;
}

static bool is_key(const char *name)
{
	if (strlen(name) != 16)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return false;
	return true;
}

static int remove_one(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
		      const char *path, const char *kind, const char *name, const char *why)
{
	uint64_t bytes;
	(void)msb_tree_usage(path, &bytes); /* 0 when it cannot be walked */
	if (!o->dry_run) {
		struct msb_err e = {0};
		if (msb_remove_tree(path, &e) < 0) {
			msb_warn("removing %s: %s", path, e.msg);
			t->failed++;
			return -1;
		}
	}
	t->removed++;
	t->bytes += bytes;
	if (o->report)
		o->report(o->ctx, kind, name, why, bytes);
	return 0;
}

static int lock_free(const char *lock)
{
	int fd = open(lock, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -2 : -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void prune_base_entry(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
			     const char *root, const char *name)
{
	_cleanup_free_ char *path = sandbox_path_join(root, name);
	if (!path)
		return;
	char why[512];
	long pid = tmp_pid(name);
	if (pid) {
		if (pid_alive(pid))
			return; /* a build in progress */
		snprintf(why, sizeof(why), "left by an interrupted build (process %ld)", pid);
		remove_one(o, t, path, "base", name, why);
		return;
	}
	size_t nl = strlen(name);
	bool lockfile = nl == 21 && strcmp(name + 16, ".lock") == 0;
	char key[17];
	snprintf(key, sizeof(key), "%.16s", name);
	if (!is_key(key) || (!lockfile && nl != 16) || (o->keep && strcmp(key, o->keep) == 0))
		return;
	_cleanup_free_ char *dir = sandbox_path_join(root, key);
	_cleanup_free_ char *lock = NULL;
	if (!dir || asprintf(&lock, "%s.lock", dir) < 0)
		return;
	struct stat st;
	if (lockfile) {
		/* A lock of a base that is gone: removed once nobody holds it. */
		if (stat(dir, &st) == 0)
			return; /* judged with its directory */
		_cleanup_close_ int fd = lock_free(lock);
		if (fd >= 0 && !o->dry_run)
			unlink(lock);
		return;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	int stale = base_stale(dir, key, o->parts, why, sizeof(why));
	if (stale <= 0) {
		t->kept++;
		return;
	}
	_cleanup_close_ int fd = lock_free(lock);
	if (fd == -1) {
		t->busy++; /* being built or discarded now */
		return;
	}
	if (remove_one(o, t, dir, "base", key, why) == 0 && fd >= 0 && !o->dry_run)
		unlink(lock);
}

static void prune_warm_entry(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
			     const char *root, const char *name)
{
	_cleanup_free_ char *path = sandbox_path_join(root, name);
	if (!path)
		return;
	char why[1024];
	long pid = tmp_pid(name);
	if (pid) {
		if (pid_alive(pid))
			return;
		snprintf(why, sizeof(why), "left by an interrupted build (process %ld)", pid);
		remove_one(o, t, path, "warm", name, why);
		return;
	}
	size_t nl = strlen(name);
	bool lockfile = nl == 21 && strcmp(name + 16, ".lock") == 0;
	char key[17];
	snprintf(key, sizeof(key), "%.16s", name);
	if (!is_key(key) || (!lockfile && nl != 16))
		return;
	_cleanup_free_ char *dir = sandbox_path_join(root, key);
	_cleanup_free_ char *lock = NULL;
	if (!dir || asprintf(&lock, "%s.lock", dir) < 0)
		return;
	struct stat st;
	if (lockfile) {
		if (stat(dir, &st) == 0)
			return;
		_cleanup_close_ int fd = lock_free(lock);
		if (fd >= 0 && !o->dry_run)
			unlink(lock);
		return;
	}
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	if (!warm_stale(dir, key, why, sizeof(why))) {
		t->kept_warm++;
		return;
	}
	_cleanup_close_ int fd = lock_free(lock);
	if (fd == -1) {
		t->busy++;
		return;
	}
	if (remove_one(o, t, dir, "warm", key, why) == 0 && fd >= 0 && !o->dry_run)
		unlink(lock);
}

static void prune_user_entry(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
			     const char *root, const char *name)
{
	_cleanup_free_ char *path = sandbox_path_join(root, name);
	if (!path)
		return;
	char why[1024];
	if (name[0] == '.') {
		long pid = tmp_pid(name);
		if (!pid || pid_alive(pid))
			return;
		snprintf(why, sizeof(why),
			 "left by an interrupted `msb snapshot create` (process "
			 "%ld)",
			 pid);
		remove_one(o, t, path, "user", name, why);
		return;
	}
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	if (!user_stale(name, why, sizeof(why))) {
		t->kept_user++;
		return;
	}
	remove_one(o, t, path, "user", name, why);
}

static int sorted_names(const char *root, char ***out, size_t *n, struct msb_err *err);

typedef void prune_entry_fn(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
			    const char *root, const char *name);

/* Each entry of the snapshot directory `root` (NULL: err set), in name order. */
static int prune_dir(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t, char *root,
		     const char *what, prune_entry_fn *entry, struct msb_err *err)
{
	_cleanup_free_ char *r = root;
	if (!r)
		return -1;
	char **names = NULL;
	size_t n = 0;
	if (sorted_names(r, &names, &n, err) < 0)
		return msb_err_wrap(err, "listing the %s snapshots", what);
	for (size_t i = 0; i < n; i++) {
		entry(o, t, r, names[i]);
		free(names[i]);
	}
	free(names);
	return 0;
}

int sandbox_snapshot_prune(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
			   struct msb_err *err)
{
	memset(t, 0, sizeof(*t));
	if (prune_dir(o, t, sandbox_base_root(err), "base", prune_base_entry, err) < 0)
		return -1;
	/* Warm snapshots after the bases: one whose base just went goes too. */
	if (prune_dir(o, t, sandbox_warm_root(err), "warm", prune_warm_entry, err) < 0)
		return -1;
	if (!o->user)
		return 0;
	return prune_dir(o, t, sandbox_user_root(err), "user", prune_user_entry, err);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of `root` but . and .., sorted; none when it does not exist. */
static int sorted_names(const char *root, char ***out, size_t *n, struct msb_err *err)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(root);
	if (!d)
		return errno == ENOENT ? 0 : msb_err_sys(err, "opening %s", root);
	char **v = NULL;
	size_t k = 0;
	int rc = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char **nv = realloc(v, (k + 1) * sizeof(*v));
		if (!nv || !(nv[k] = strdup(e->d_name))) {
			v = nv ? nv : v;
			rc = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
			break;
		}
		v = nv;
		k++;
	}
	closedir(d);
	if (rc < 0) {
		for (size_t i = 0; i < k; i++)
			free(v[i]);
		free(v);
		return -1;
	}
	if (k)
		qsort(v, k, sizeof(*v), by_name);
	*out = v;
	*n = k;
	return 0;
}

/* ---- after a build ------------------------------------------------------------------ */

static void log_removed(void *ctx, const char *kind, const char *name, const char *why,
			uint64_t bytes)
{
	(void)ctx;
	msb_info("removed stale %s snapshot %s (%s): %.1f MiB", kind, name, why,
		 (double)bytes / (1 << 20));
}

void sandbox_base_prune_after_build(const struct sandbox_parts *p, const char *key)
{
	struct sandbox_prune_opts o = {.parts = p, .keep = key, .report = log_removed};
	struct sandbox_prune_totals t;
	struct msb_err e = {0};
	if (sandbox_snapshot_prune(&o, &t, &e) < 0)
		msb_warn("pruning stale base snapshots: %s", e.msg);
	else if (t.removed)
		fprintf(stderr,
			"msb: removed %u stale base snapshot%s (%.1f MiB; `msb snapshot prune` "
			"does this by hand)\n",
			t.removed, t.removed == 1 ? "" : "s", (double)t.bytes / (1 << 20));
}
